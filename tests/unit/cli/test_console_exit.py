"""The ``loopline`` console script ends its process without the interpreter's
teardown, but only after every exit step the program needs has run.

``ml.cli.app.leave`` is run in a child process (it ends the process it runs in):
the exit code is the one asked for, unterminated output on both streams arrives,
a non-daemon thread still working is joined, ``atexit`` functions run, and a
logging file handler's buffered records reach the file. The console script
itself is run as a user runs it, for its exit codes and its error lines.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ml.cli.app import exit_code

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
LOOPLINE = Path(sys.executable).parent / "loopline"


def run_leaving(tmp_path: Path, code: int) -> subprocess.CompletedProcess[str]:
    """A child that sets up work for every exit step, then calls leave(code)."""
    script = textwrap.dedent(
        f"""
        import atexit, logging, sys, threading, time
        from pathlib import Path

        out = Path({str(tmp_path)!r})
        atexit.register(lambda: (out / "atexit.txt").write_text("ran"))

        def slow() -> None:
            time.sleep(0.5)
            (out / "thread.txt").write_text("joined")

        threading.Thread(target=slow).start()  # not a daemon: must be joined
        handler = logging.FileHandler(out / "log.txt")
        logging.getLogger("probe").addHandler(handler)
        logging.getLogger("probe").warning("the last record")
        sys.stdout.write("no newline on stdout")
        sys.stderr.write("no newline on stderr")

        from ml.cli.app import leave

        leave({code})
        (out / "after.txt").write_text("leave returned")
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_leave_runs_every_exit_step_then_ends_with_the_code(tmp_path: Path) -> None:
    done = run_leaving(tmp_path, 3)
    assert done.returncode == 3
    assert done.stdout == "no newline on stdout"
    assert done.stderr.endswith("no newline on stderr")
    assert (tmp_path / "thread.txt").read_text() == "joined"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "log.txt").read_text() == "the last record\n"
    assert not (tmp_path / "after.txt").exists()


def test_leave_with_zero_is_success(tmp_path: Path) -> None:
    assert run_leaving(tmp_path, 0).returncode == 0


@pytest.mark.parametrize(
    ("code", "expected"), [(None, 0), (0, 0), (2, 2), (1, 1), ("stopped", 1)]
)
def test_exit_code_is_the_one_sys_exit_would_give(
    code: object, expected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(code) == expected
    printed = capsys.readouterr().err
    assert printed == ("stopped\n" if isinstance(code, str) else "")


def test_the_console_script_keeps_exit_codes_and_error_lines(tmp_path: Path) -> None:
    env = {"LOOPLINE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    helped = subprocess.run(
        [str(LOOPLINE), "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert helped.returncode == 0
    assert "Usage: loopline" in helped.stdout
    assert "run" in helped.stdout
    refused = subprocess.run(
        [str(LOOPLINE), "run", "--date", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "'nope' is not a date" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
