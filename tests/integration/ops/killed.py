"""Run Python in a child process that is killed with SIGKILL part-way.

The child's ``code`` has ``die``, which sends SIGKILL to the child itself, and puts
it where the kill should land: for example in place of ``os.replace`` (the rename
that makes an atomic write visible), so the child dies exactly where a ``kill -9``
between writing and renaming would leave it: temporary files written, no
``finally`` run, nothing cleaned up. The child prints its pid first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

_PRELUDE = """
import os, signal
print(f"pid={os.getpid()}", flush=True)
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
"""


def run_killed(code: str, env: dict[str, str] | None = None) -> int:
    """Run ``code`` in a child that must end killed by SIGKILL; its pid."""
    child = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr)
    return _pid_of(child.stdout)


def _pid_of(stdout: str) -> int:
    """The child prints ``pid=<n>`` first."""
    first = stdout.splitlines()[0]
    assert first.startswith("pid="), stdout
    return int(first[4:])
