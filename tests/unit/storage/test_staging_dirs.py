"""Staging folders of killed writers are swept; live and foreign ones are kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ml.storage.procs import (
    remove_stale_staging_dirs,
    safe_hostname,
    staging_dir,
)


def _dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


def test_only_a_dead_writers_folder_of_this_host_is_removed(tmp_path: Path) -> None:
    host = safe_hostname()
    mine = staging_dir(tmp_path, "import", "ab12cd34")
    assert mine.name == f".import-{os.getpid()}@{host}-ab12cd34"
    dead = tmp_path / f".import-{_dead_pid()}@{host}-0f0f0f0f"
    elsewhere = tmp_path / f".import-{_dead_pid()}@another-host-0e0e0e0e"
    other_prefix = tmp_path / f".publish-{_dead_pid()}@{host}-0d0d0d0d"
    partition = tmp_path / "dt=2025-01-01"
    for folder in (mine, dead, elsewhere, other_prefix, partition):
        folder.mkdir()
        (folder / "part-0.parquet").write_bytes(b"rows")

    removed = remove_stale_staging_dirs(tmp_path, "import")

    assert removed == [dead]
    assert not dead.exists()
    for kept in (mine, elsewhere, other_prefix, partition):
        assert (kept / "part-0.parquet").is_file()
    assert remove_stale_staging_dirs(tmp_path / "missing", "import") == []
