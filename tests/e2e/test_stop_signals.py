"""``loopline demo`` and ``loopline airflow`` stop on SIGTERM as on Ctrl-C: a
plain line, exit code 143, and no process of theirs left behind.

Both start the real command as a subprocess and send SIGTERM a few seconds in:
the demo while it simulates a small world's history, ``loopline airflow`` once
its services (api-server, scheduler, dag-processor, triggerer) are running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from loopline_airflow.services import free_port

LOOPLINE = str(Path(sys.executable).with_name("loopline"))


def _start(args: list[str], home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "LOOPLINE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("LOOPLINE_DEBUG", None)
    return subprocess.Popen(
        [LOOPLINE, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(check: Callable[[], bool], proc: subprocess.Popen[str], limit: float):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not reached within {limit:.0f} s")


def _terminate(
    proc: subprocess.Popen[str], limit: float
) -> tuple[int, str, str, list[psutil.Process]]:
    """SIGTERM ``proc``; its exit code and output, and the processes of its tree
    (snapshotted before the signal) still alive afterwards."""
    tree = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running {limit:.0f} s after SIGTERM") from None
    _, alive = psutil.wait_procs(tree, timeout=5)
    return proc.returncode, out, err, alive


def test_demo_stops_on_sigterm(tmp_path: Path) -> None:
    proc = _start(
        ["demo", "--customers", "300", "--history", "150", "--days", "2"],
        tmp_path / "home",
    )
    seen: list[str] = []

    def simulating() -> bool:
        assert proc.stdout is not None
        seen.append(proc.stdout.readline())
        return "1/5 simulating" in seen[-1]

    try:
        _wait_for(simulating, proc, 120)
        time.sleep(2)
        code, out, err, alive = _terminate(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 128 + signal.SIGTERM, out + err
    assert err.strip() == "stopped (SIGTERM)"
    assert "Traceback" not in out + err
    assert alive == []


@pytest.mark.airflow_services
def test_airflow_stops_on_sigterm_with_every_service(tmp_path: Path) -> None:
    port = free_port()
    proc = _start(["airflow", "--no-mlflow", "--port", str(port)], tmp_path / "home")
    started: list[psutil.Process] = []

    def services_running() -> bool:
        names = " ".join(
            " ".join(p.cmdline())
            for p in psutil.Process(proc.pid).children(recursive=True)
        )
        found = all(c in names for c in ("api-server", "scheduler", "triggerer"))
        return found and "dag-processor" in names

    try:
        _wait_for(services_running, proc, 300)
        time.sleep(5)
        started = psutil.Process(proc.pid).children(recursive=True)
        code, out, err, alive = _terminate(proc, 90)
    finally:
        if proc.poll() is None:
            proc.kill()
        for leftover in started:
            if leftover.is_running():
                leftover.kill()
    assert code == 128 + signal.SIGTERM, out + err
    assert "stopping Airflow" in out
    assert err.strip() == "stopped (SIGTERM)"
    assert alive == []
