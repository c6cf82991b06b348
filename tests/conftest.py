"""Test-session setup.

Airflow reads its configuration once per process, so the embedded Airflow used by the
DAG and end-to-end tests is pointed at a throw-away LOOPLINE_HOME before anything
imports ``airflow``. Training and scoring use one thread per worker.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    from loopline_airflow.runner import airflow_env

    from ml.config import Settings

    home = Path(tempfile.mkdtemp(prefix="loopline-test-"))
    os.environ.update(airflow_env(Settings(home=home)))
    # two xdist workers share two cores: one OpenMP thread each (see model.yml)
    os.environ.setdefault("LOOPLINE_THREADS", "1")
    config.stash[E2E_HOME] = home


E2E_HOME = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def airflow_settings(pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """Settings of the session's embedded-Airflow LOOPLINE_HOME."""
    from ml.config import Settings

    return Settings(home=pytestconfig.stash[E2E_HOME])
