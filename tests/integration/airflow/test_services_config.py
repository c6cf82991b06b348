"""How ``loopline airflow`` configures the services (no process is started here;
``tests/e2e/test_airflow_services.py`` runs them)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from loopline_airflow.services import (
    SIMPLE_AUTH_MANAGER,
    _process_env,
    login,
    passwords_file,
    services_env,
)

from ml.config.settings import Settings


def test_the_admin_password_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    first = login(settings)
    assert first.username == "admin" and len(first.password) >= 20
    assert first.passwords_file == passwords_file(settings)
    assert stat.S_IMODE(first.passwords_file.stat().st_mode) == 0o600
    assert login(settings) == first
    # the file is the simple auth manager's: {user: password}
    assert json.loads(first.passwords_file.read_text()) == {"admin": first.password}


def test_an_existing_passwords_file_keeps_its_users(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    path = passwords_file(settings)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"analyst": "secret"}))
    credentials = login(settings)
    assert json.loads(path.read_text()) == {
        "analyst": "secret",
        "admin": credentials.password,
    }


@pytest.mark.parametrize("schedule", [False, True])
def test_services_are_local_and_configured_from_the_settings(
    tmp_path: Path, schedule: bool
) -> None:
    settings = Settings(home=tmp_path, nightly_wait_poke_seconds=7)
    env = services_env(
        settings, "127.0.0.1", 18080, schedule, log_server_ports=(18793, 18794)
    )
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == SIMPLE_AUTH_MANAGER
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(
        passwords_file(settings)
    )
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://127.0.0.1:18080/execution/"
    )
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "18793"
    assert env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == str(schedule)
    # the tasks read the same settings as the caller
    assert env["LOOPLINE_HOME"] == str(tmp_path)
    assert env["LOOPLINE_NIGHTLY_WAIT_POKE_SECONDS"] == "7"
    assert Settings(**_settings_from(env)).nightly_wait_poke_seconds == 7


def _settings_from(env: dict[str, str]) -> dict[str, str]:
    return {
        k.removeprefix("LOOPLINE_").lower(): v
        for k, v in env.items()
        if k.startswith("LOOPLINE_")
    }


def test_the_callers_airflow_options_pass_through_but_not_its_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", "/somewhere/else")
    monkeypatch.setenv("AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG", "8")
    monkeypatch.setenv("AIRFLOW__API__HOST", "0.0.0.0")
    env = _process_env(services_env(Settings(home=tmp_path), "127.0.0.1", 18080))
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG"] == "8"
    # what loopline sets wins (loopback only)
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
