"""Test-session setup.

Airflow reads its configuration once per process, so the embedded Airflow used by the
DAG and end-to-end tests is pointed at a throw-away LOOPLINE_HOME before anything
imports ``airflow``. Training and scoring use one thread per worker.

Each test is marked by its top folder: ``tests/unit`` (one ``ml`` package,
in-process, fast), ``tests/integration`` (dbt, the GX gates, the DAG files, MLflow
training, slow work) and ``tests/e2e`` (full worlds, Airflow runs), so that
``pytest -m unit`` runs the unit tests alone.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    from loopline_airflow.runner import airflow_env

    from ml.config.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="loopline-test-"))
    os.environ.update(airflow_env(Settings(home=home)))
    # two xdist workers share two cores: one OpenMP thread each (see model.yml)
    os.environ.setdefault("LOOPLINE_THREADS", "1")
    config.stash[E2E_HOME] = home


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's Airflow home (each xdist worker has its own)."""
    import shutil

    home = config.stash.get(E2E_HOME, None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


E2E_HOME = pytest.StashKey[Path]()

TESTS_DIR = Path(__file__).resolve().parent
FOLDER_MARKERS = ("unit", "integration", "e2e")
"""The top folders under ``tests/``, each the name of the marker of its tests."""


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test ``unit``, ``integration`` or ``e2e`` by its top folder."""
    for item in items:
        path = Path(item.path).resolve()
        if not path.is_relative_to(TESTS_DIR):
            continue
        top = path.relative_to(TESTS_DIR).parts[0]
        if top in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, top))


@pytest.fixture(scope="session")
def airflow_settings(pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """Settings of the session's embedded-Airflow LOOPLINE_HOME."""
    from ml.config.settings import Settings

    return Settings(home=pytestconfig.stash[E2E_HOME])


@dataclass
class Webhook:
    """A real HTTP server on 127.0.0.1 that records the JSON bodies posted to it
    (a stand-in for a Slack incoming webhook); ``status`` is its reply code."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            # recorded before the reply, so the sender sees it once it returns
            hook.received.append(
                {
                    "path": self.path,
                    "content_type": self.headers["Content-Type"],
                    "json": json.loads(body),
                }
            )
            self.send_response(hook.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_port}/services/T0/B0/token"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
