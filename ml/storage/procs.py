"""Which process wrote something, and whether it still runs.

A step killed with ``kill -9`` runs no ``finally``: its temporary files stay, and
its row in ``ops.runs`` still says "running". So every such leftover carries the
writer's process id (and, for ``ops.runs``, its host), and the next run removes or
reports what belongs to a process that is gone. A process id is only meaningful
on the host that issued it; on Linux the process's start time also tells a reused
id from the original process.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path

# ".<name>.<pid>.tmp": the temporary file an atomic write renames to <name>
_TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")
# ".<prefix>-<pid>@<host>-<hex>": a staging folder that its writer removes when done
_STAGING_DIR = re.compile(
    r"^\.(?P<prefix>[a-z]+)-(?P<pid>\d+)@(?P<host>[A-Za-z0-9._-]+)-[0-9a-f]+$"
)


def hostname() -> str:
    """This machine's host name, as recorded beside a process id."""
    return socket.gethostname()


def _started_at(pid: int) -> datetime | None:
    """When process ``pid`` started (UTC), from ``/proc`` (None elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    # the command name (field 2) may hold spaces; the fields after ")" are plain
    fields = stat.rsplit(")", 1)[-1].split()
    ticks = int(fields[19])  # field 22: start time in clock ticks after boot
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def process_alive(pid: int, since: datetime | None = None) -> bool:
    """Whether process ``pid`` of this host still runs. With ``since`` (a naive
    UTC time the process is known to have run at), a process that started later
    is another one that reused the id."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    if since is not None:
        started = _started_at(pid)
        # one second of slack: /proc counts in clock ticks, the clock may step
        if (
            started is not None
            and started.timestamp() > since.replace(tzinfo=UTC).timestamp() + 1.0
        ):
            return False
    return True


def safe_hostname() -> str:
    """:func:`hostname` with only the characters a file name may safely hold."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", hostname()) or "host"


def staging_dir(folder: Path, prefix: str, token: str) -> Path:
    """A staging folder in ``folder`` named after this process:
    ``.<prefix>-<pid>@<host>-<token>`` (``token`` in hex), which
    :func:`remove_stale_staging_dirs` removes once the process is gone."""
    return folder / f".{prefix}-{os.getpid()}@{safe_hostname()}-{token}"


def remove_stale_staging_dirs(folder: Path, prefix: str) -> list[Path]:
    """Delete the staging folders ``.<prefix>-<pid>@<host>-<hex>`` in ``folder``
    written on this host by a process that no longer runs (killed before its
    ``finally``); a live process's and other hosts' are left alone. Returns what
    was deleted."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    host = safe_hostname()
    for path in sorted(folder.iterdir()):
        found = _STAGING_DIR.match(path.name)
        if found is None or found["prefix"] != prefix or not path.is_dir():
            continue
        if found["host"] != host or process_alive(int(found["pid"])):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files ``.<name>.<pid>.tmp`` in ``folder`` whose
    writer no longer runs (an atomic write killed before its rename); a live
    process's file is left alone. Returns what was deleted."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        found = _TEMP_FILE.match(path.name)
        if found is None or not path.is_file():
            continue
        if process_alive(int(found["pid"])):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
