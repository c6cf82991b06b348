"""The embedded services' log servers listen on loopback only.

Airflow's triggerer (and scheduler) start a log server bound to every interface;
``loopline_airflow.launch`` makes both start one bound to 127.0.0.1. This starts
the triggerer's own log-server code path (``triggerer_command._serve_logs``) the
way ``python -m loopline_airflow.launch triggerer`` sets it up, and looks at the
sockets the server process listens on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from loopline_airflow.launch import LOG_SERVER_HOST
from loopline_airflow.runner import airflow_env
from loopline_airflow.services import free_port, services_env

from ml.config.settings import Settings

SERVE = """
import sys
from loopline_airflow.launch import serve_logs_on_loopback_only
serve_logs_on_loopback_only()
from airflow.cli.commands.triggerer_command import _serve_logs
with _serve_logs(False):
    print("serving", flush=True)
    sys.stdin.read()
"""


def _listening(root: psutil.Process, port: int) -> list[str]:
    """Addresses the process tree of ``root`` listens on at ``port``."""
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        found += [
            c.laddr.ip
            for c in connections
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]
    return found


def test_the_triggerer_log_server_listens_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        **airflow_env(Settings(home=tmp_path / "home")),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port),
    }
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline() == "serving\n"
        addresses: list[str] = []
        deadline = time.monotonic() + 120
        while not addresses and time.monotonic() < deadline:
            assert server.poll() is None
            addresses = _listening(psutil.Process(server.pid), port)
            time.sleep(0.5)
        assert addresses == [LOG_SERVER_HOST]
        with socket.create_connection((LOG_SERVER_HOST, port), timeout=5):
            pass
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=60)


def test_services_name_loopback_as_their_host(tmp_path: Path) -> None:
    env = services_env(Settings(home=tmp_path / "home"), "127.0.0.1", 18080)
    callable_path = env["AIRFLOW__CORE__HOSTNAME_CALLABLE"]
    module, name = callable_path.rsplit(".", 1)
    import importlib

    assert getattr(importlib.import_module(module), name)() == LOG_SERVER_HOST
