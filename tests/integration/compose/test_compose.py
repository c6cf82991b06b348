"""The compose stack is checked statically: there is no Docker engine in CI.

docker-compose.yml, the Dockerfile, .env.example, .dockerignore and the files under
docker/ are read as data and checked against each other, against the repo, against
Loopline's ``Settings`` and against the installed Airflow's configuration reference.
When a Docker Compose v2 binary is on the machine (``docker compose`` or
``docker-compose``; no engine is needed for ``config``), the file is also rendered by
it; that one test is skipped when there is none.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]

CORE_SERVICES = {
    "postgres",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "mlflow",
}
CELERY_SERVICES = {"redis", "airflow-worker"}
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
# Values that must come from .env, never from the YAML.
SECRET_VARS = {
    "POSTGRES_PASSWORD",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW_ADMIN_PASSWORD",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$")
# Names that match SECRET_NAME but hold no secret.
NOT_SECRETS = {
    "AIRFLOW_ADMIN_USERNAME",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
}
# ${NAME}, ${NAME:-default}, ${NAME:?message}; $${...} is an escaped dollar.
INTERPOLATION = re.compile(
    r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}"
)
BARE_DOLLAR = re.compile(r"(?<!\$)\$(?!\{|\$)")
IMAGE = "loopline:local"


@cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _strings(node: Any) -> Iterator[str]:
    """Every string value (and mapping key) of the loaded YAML; comments excluded."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _interpolations() -> list[tuple[str, str | None, str]]:
    """(variable, operator, argument) of every ${...} in the compose file's values."""
    found = []
    for text in _strings(_compose()):
        for match in INTERPOLATION.finditer(text):
            found.append((match.group(1), match.group(2), match.group(3) or ""))
    return found


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=value: {line!r}"
            values[key] = value
    return values


def _render(value: str) -> str:
    """Interpolate like compose does, with the values of .env.example."""
    env = _env_example()

    def sub(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if operator in (":-", "-"):
            return argument or ""
        raise AssertionError(f"{name} has no value in .env.example")

    return INTERPOLATION.sub(sub, value)


def _environment(service: str) -> dict[str, str]:
    env = _services()[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: use the mapping form of environment"
    return {key: str(value) for key, value in env.items()}


def _port_specs(service: dict[str, Any]) -> list[str]:
    return [str(port) for port in service.get("ports", [])]


def _named_volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> named volume of a service's short-syntax volume entries."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        if not source.startswith((".", "/")):
            mounts[target] = source
    return mounts


@cache
def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    instructions = []
    current = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, arguments = current.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a continued line"
    return instructions


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in _dockerfile():
        if keyword == "ENV":
            for token in shlex.split(arguments):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def _workdir() -> Path:
    workdirs = [Path(args) for keyword, args in _dockerfile() if keyword == "WORKDIR"]
    assert len(workdirs) == 1
    return workdirs[0]


def _copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context."""
    copies = []
    for keyword, arguments in _dockerfile():
        if keyword in {"COPY", "ADD"}:
            assert keyword == "COPY", "use COPY, not ADD"
            tokens = [t for t in shlex.split(arguments) if not t.startswith("--")]
            assert "--from" not in arguments, "no multi-stage copies expected"
            copies.append((tokens[:-1], tokens[-1]))
    return copies


def _runs() -> list[str]:
    return [args for keyword, args in _dockerfile() if keyword == "RUN"]


@cache
def _lock_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"]}


def _url(value: str) -> SplitResult:
    """A URL of the compose file, interpolated with the values of .env.example."""
    return urlsplit(_render(value))


# user:password@ in a URL, both interpolated
URL_LOGIN = re.compile(r"://(\$\{[^}]+\}):(\$\{[^}]+\})@")


# --- services -------------------------------------------------------------------


def test_service_set_and_celery_profile() -> None:
    services = _services()
    assert set(services) == CORE_SERVICES | CELERY_SERVICES
    for name, service in services.items():
        if name in CELERY_SERVICES:
            assert service.get("profiles") == ["celery"], name
        else:
            assert "profiles" not in service, f"{name} must start without a profile"


def test_loopline_services_run_the_dockerfile_image() -> None:
    services = _services()
    for name in AIRFLOW_SERVICES | {"mlflow"}:
        service = services[name]
        assert service["image"] == IMAGE, name
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
    for name in {"postgres", "redis"}:
        assert "build" not in services[name]
        assert re.fullmatch(r"[a-z]+:[\w.-]+", services[name]["image"]), name


def test_airflow_commands() -> None:
    services = _services()
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == ["airflow", "api-server"]
    assert commands["airflow-scheduler"] == ["airflow", "scheduler"]
    assert commands["airflow-dag-processor"] == ["airflow", "dag-processor"]
    assert commands["airflow-triggerer"] == ["airflow", "triggerer"]
    assert commands["airflow-worker"] == ["airflow", "celery", "worker"]
    assert commands["airflow-init"] == ["bash", "/opt/loopline/docker/airflow-init.sh"]


def test_every_long_running_service_has_a_healthcheck() -> None:
    services = _services()
    for name, service in services.items():
        if name == "airflow-init":
            # one-shot: others wait for it to exit 0, it must not restart
            assert "healthcheck" not in service
            assert service["restart"] == "no"
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert len(check["test"]) > 1, name
        assert check["interval"] and check["timeout"] and check["retries"] > 0, name
        assert service["restart"] == "unless-stopped", name


def test_healthchecks_follow_the_airflow_3_conventions() -> None:
    services = _services()

    def probe(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"][1:])

    assert "http://localhost:8080/api/v2/version" in probe("airflow-apiserver")
    assert "http://localhost:8974/health" in probe("airflow-scheduler")
    # the scheduler serves /health on 8974 only when this is on
    env = _environment("airflow-scheduler")
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    assert "airflow jobs check --job-type DagProcessorJob" in probe(
        "airflow-dag-processor"
    )
    assert "airflow jobs check --job-type TriggererJob" in probe("airflow-triggerer")
    worker = probe("airflow-worker")
    assert "airflow.providers.celery.executors.celery_executor.app" in worker
    assert 'inspect ping -d "celery@$${HOSTNAME}"' in worker
    assert probe("redis") == "redis-cli ping"
    assert "http://localhost:5000/health" in probe("mlflow")
    # postgres is healthy only once both databases exist (checked over TCP)
    postgres = probe("postgres")
    for database in ("airflow", "mlflow"):
        assert f'-h 127.0.0.1 -U "$${{POSTGRES_USER}}" -d {database}' in postgres


def test_depends_on_targets_and_conditions() -> None:
    services = _services()
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for target, rule in depends_on.items():
            assert target in services, f"{name} depends on unknown {target}"
            expected = (
                "service_completed_successfully"
                if target == "airflow-init"
                else "service_healthy"
            )
            assert rule["condition"] == expected, f"{name} -> {target}"
            # a service outside a profile may only softly depend on a profiled one
            if services[target].get("profiles") and not service.get("profiles"):
                assert rule.get("required") is False, f"{name} -> {target}"
    for name in AIRFLOW_SERVICES:
        assert "postgres" in services[name]["depends_on"], name
        if name != "airflow-init":
            assert "airflow-init" in services[name]["depends_on"], name
    assert services["airflow-worker"]["depends_on"].keys() >= {
        "redis",
        "airflow-apiserver",
    }
    assert set(services["mlflow"]["depends_on"]) == {"postgres"}
    assert "depends_on" not in services["postgres"]


# --- environment, secrets, .env.example ------------------------------------------


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    used = {name for name, _, _ in _interpolations()}
    documented = set(_env_example())
    assert used, "expected ${VAR} interpolation in docker-compose.yml"
    assert used - documented == set(), "undocumented in .env.example"
    assert documented - used == set(), "in .env.example but unused"
    # ${VAR} only: a bare $VAR would be interpolated too, and is easy to miss
    for text in _strings(_compose()):
        assert not BARE_DOLLAR.search(text.replace("$$", "")), text


def test_secrets_come_from_env_and_are_required() -> None:
    operators: dict[str, set[str | None]] = {}
    for name, operator, argument in _interpolations():
        operators.setdefault(name, set()).add(operator)
        if operator == ":?":
            assert argument, f"{name}: give ${{{name}:?...}} a message"
    for secret in SECRET_VARS:
        # always ${SECRET:?...}: no default, and compose stops when it is unset
        assert operators.get(secret) == {":?"}, secret
    env = _env_example()
    for secret in SECRET_VARS:
        assert env[secret].startswith("change-me"), f"{secret}: use a placeholder"
    # airflow-init refuses to start on the placeholders
    script = (ROOT / "docker" / "airflow-init.sh").read_text()
    assert "change-me*" in script
    for secret in SECRET_VARS - {"POSTGRES_PASSWORD"}:
        assert secret in script


def test_no_literal_secrets_in_the_compose_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for value in _env_example().values():
        if value.startswith("change-me"):
            assert value not in text
    checked = set()
    for name, service in _services().items():
        for key, value in _environment(name).items():
            if SECRET_NAME.search(key) and key not in NOT_SECRETS:
                assert INTERPOLATION.fullmatch(value), f"{name}: literal {key}"
                checked.add(key)
            if "://" in value and "@" in value:
                login = URL_LOGIN.search(value)
                assert login, f"{name}: {key} has a literal login"
                assert {m.group(1) for m in INTERPOLATION.finditer(login.group(0))} == {
                    "POSTGRES_USER",
                    "POSTGRES_PASSWORD",
                }
                assert _url(value).password == _env_example()["POSTGRES_PASSWORD"]
        for part in service.get("command", []):
            assert "://" not in part or "@" not in part, f"{name}: URL with login"
    assert checked == SECRET_VARS


def test_loopline_env_names_are_settings_fields() -> None:
    from ml.config.settings import Settings

    fields = set(Settings.model_fields)
    seen = set()
    for name in _services():
        for key in _environment(name):
            if key.startswith("LOOPLINE_"):
                seen.add(key)
                field = key.removeprefix("LOOPLINE_").lower()
                assert field in fields, f"{name}: {key} is not a Settings field"
    for key in _env_example():
        if key.startswith("LOOPLINE_"):
            assert key.removeprefix("LOOPLINE_").lower() in fields, key
    for key in _dockerfile_env():
        if key.startswith("LOOPLINE_"):
            assert key.removeprefix("LOOPLINE_").lower() in fields, key
    assert "LOOPLINE_HOME" in seen


def test_tasks_use_the_mlflow_server() -> None:
    """Every Airflow service logs to and loads models from the stack's MLflow
    server; the services that run tasks wait until it is healthy."""
    from ml.config.settings import Settings

    services = _services()
    command = services["mlflow"]["command"]
    port = command[command.index("--port") + 1]
    for name in AIRFLOW_SERVICES:
        uri = _environment(name)["LOOPLINE_MLFLOW_TRACKING_URI"]
        parsed = urlsplit(uri)
        assert (parsed.scheme, parsed.hostname) == ("http", "mlflow"), name
        assert str(parsed.port) == port, name
        # the server accepts that Host header
        allowed = _environment("mlflow")["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
        assert "mlflow:*" in allowed
        assert Settings(mlflow_tracking_uri=uri).mlflow_tracking_uri == uri
    for name in ("airflow-scheduler", "airflow-worker"):
        assert services[name]["depends_on"]["mlflow"] == {
            "condition": "service_healthy"
        }, name


def test_alert_notifiers_are_off_by_default() -> None:
    from ml.config.settings import Settings

    env = _environment("airflow-scheduler")
    rendered = {
        key.removeprefix("LOOPLINE_").lower(): _render(value)
        for key, value in env.items()
        if key.startswith("LOOPLINE_ALERT_")
    }
    assert rendered["alert_slack_webhook"] == rendered["alert_email"] == ""
    settings = Settings(**rendered)  # type: ignore[arg-type]
    assert settings.alert_slack_webhook is None and settings.alert_email is None


def test_loopline_home_is_on_shared_named_volumes() -> None:
    from ml.config.settings import Settings

    services = _services()
    home = _environment("airflow-scheduler")["LOOPLINE_HOME"]
    assert _dockerfile_env()["LOOPLINE_HOME"] == home
    settings = Settings(home=Path(home))
    expected = {
        str(settings.root): "loopline-home",
        str(settings.landing_dir): "loopline-landing",
        str(settings.exports_dir): "loopline-exports",
    }
    for name in AIRFLOW_SERVICES:
        env = _environment(name)
        assert env["LOOPLINE_HOME"] == home, name
        mounts = _named_volume_mounts(services[name])
        for target, volume in expected.items():
            assert mounts.get(target) == volume, f"{name}: {target}"
        # task logs and the login file are shared by every Airflow service
        assert mounts.get("/opt/airflow/logs") == "airflow-logs", name
    # reports/, the warehouse and dbt's target are inside the home volume
    for path in (
        settings.reports_dir,
        settings.warehouse_path,
        settings.dbt_target_dir,
    ):
        assert path.is_relative_to(settings.root)


def test_airflow_settings() -> None:
    env = _environment("airflow-scheduler")
    for name in AIRFLOW_SERVICES:
        assert _environment(name).items() >= env.items(), f"{name}: shared env"
    assert _render(env["AIRFLOW__CORE__EXECUTOR"]) == "LocalExecutor"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
        "postgresql+psycopg2://"
    )
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    execution = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution.hostname == "airflow-apiserver" in _services()
    assert execution.port == 8080 and execution.path == "/execution/"
    # the admin login: airflow-init writes the password file the api-server reads
    users = _render(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"])
    assert users == f"{_env_example()['AIRFLOW_ADMIN_USERNAME']}:admin"
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    mounts = _named_volume_mounts(_services()["airflow-apiserver"])
    assert mounts.get(str(passwords.parent)) == "airflow-auth"
    init_env = _environment("airflow-init")
    assert {"AIRFLOW_ADMIN_USERNAME", "AIRFLOW_ADMIN_PASSWORD"} <= set(init_env)
    assert "AIRFLOW_ADMIN_PASSWORD" not in _environment("airflow-apiserver")


def test_airflow_option_names_exist() -> None:
    """Every AIRFLOW__SECTION__KEY is an option of the locked Airflow's config.

    [celery] belongs to the Celery provider, which only the image installs.
    """
    spec = importlib.util.find_spec("airflow")
    assert spec and spec.origin
    reference = Path(spec.origin).parent / "config_templates" / "config.yml"
    options = yaml.safe_load(reference.read_text())
    names = set(_environment("airflow-scheduler")) | set(_dockerfile_env())
    checked = 0
    for name in names:
        if not name.startswith("AIRFLOW__"):
            continue
        section, key = name.removeprefix("AIRFLOW__").lower().split("__")
        if section == "celery":
            assert key in {"broker_url", "result_backend"}, name
            continue
        assert key in options[section]["options"], f"{name} is not an Airflow option"
        checked += 1
    assert checked >= 10


def test_mlflow_server_uses_postgres_and_a_volume() -> None:
    mlflow = _services()["mlflow"]
    env = _environment("mlflow")
    backend = env["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql+psycopg2://")
    assert _url(backend).hostname == "postgres"
    assert _url(backend).path == "/mlflow"
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"]
    destination = command[command.index("--artifacts-destination") + 1]
    assert _named_volume_mounts(mlflow).get(destination) == "mlflow-artifacts"
    assert "--serve-artifacts" in command
    # the env names the server reads exist in the locked MLflow
    spec = importlib.util.find_spec("mlflow")
    assert spec and spec.origin
    package = Path(spec.origin).parent
    cli = (package / "cli" / "__init__.py").read_text()
    assert 'envvar="MLFLOW_BACKEND_STORE_URI"' in cli
    variables = (package / "environment_variables.py").read_text()
    assert '"MLFLOW_SERVER_ALLOWED_HOSTS"' in variables
    # the Loopline image carries the locked MLflow
    assert "mlflow" in _lock_versions()


def test_published_ports_are_bound_to_localhost() -> None:
    published = {}
    for name, service in _services().items():
        for spec in _port_specs(service):
            assert spec.startswith("127.0.0.1:"), f"{name}: {spec}"
            published[name] = _render(spec)
    assert published == {
        "airflow-apiserver": "127.0.0.1:8080:8080",
        "mlflow": "127.0.0.1:5000:5000",
    }


def test_volumes_are_declared_and_used() -> None:
    compose = _compose()
    declared = set(compose["volumes"])
    used = set()
    for name, service in _services().items():
        for entry in service.get("volumes", []):
            source = entry.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind {source} is missing"
            else:
                assert source in declared, f"{name}: undeclared {source}"
                used.add(source)
    assert declared == used
    assert {"postgres-data", "mlflow-artifacts", "loopline-home"} <= declared


def test_postgres_creates_the_databases_the_services_use() -> None:
    postgres = _services()["postgres"]
    assert (
        "./docker/postgres/init:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    )
    scripts = sorted((ROOT / "docker" / "postgres" / "init").glob("*.sql"))
    assert scripts
    sql = "\n".join(path.read_text() for path in scripts)
    created = set(re.findall(r"(?im)^\s*CREATE DATABASE (\w+);", sql))
    airflow = _environment("airflow-scheduler")
    urls = [
        airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        airflow["AIRFLOW__CELERY__RESULT_BACKEND"],
        _environment("mlflow")["MLFLOW_BACKEND_STORE_URI"],
    ]
    used = {_url(url).path.strip("/") for url in urls}
    assert used == created == {"airflow", "mlflow"}
    for url in urls:
        assert _url(url).hostname == "postgres" and _url(url).port == 5432
    env = _environment("postgres")
    assert env["POSTGRES_USER"].startswith("${POSTGRES_USER:?")


# --- image ------------------------------------------------------------------------


def test_dockerfile_copy_sources_exist() -> None:
    copied: set[str] = set()
    for sources, _ in _copies():
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repo"
            copied.add(source.rstrip("/"))
    required = {"dags", "plugins", "ml", "dbt_project", "expectations", "config"}
    assert required | {"pyproject.toml", "uv.lock", "README.md"} <= copied
    # the init script the compose file runs is in the image at that path
    for sources, destination in _copies():
        if sources == ["docker/airflow-init.sh"]:
            target = _workdir() / destination
            assert str(target) == _services()["airflow-init"]["command"][1]
            break
    else:
        raise AssertionError("docker/airflow-init.sh is not copied")


def test_dockerfile_installs_from_the_lock() -> None:
    runs = _runs()
    syncs = [run for run in runs if "uv sync" in run]
    assert syncs, "the image must install with uv sync"
    for run in syncs:
        assert "--frozen" in run and "--no-dev" in run, run
        # an editable install keeps ml.config.settings.REPO_ROOT at the WORKDIR
        assert "--no-editable" not in run
    assert "--no-install-project" in syncs[0]
    for run in runs:
        assert "uv lock" not in run and "uv add" not in run
        assert "--upgrade" not in run
    # pip installs uv only, pinned to the Makefile's version
    pip = [run for run in runs if re.search(r"(?<!uv )pip install", run)]
    assert len(pip) == 1
    assert '"uv==${UV_VERSION}"' in pip[0]
    args = dict(
        args.split("=", 1) for keyword, args in _dockerfile() if keyword == "ARG"
    )
    makefile = (ROOT / "Makefile").read_text()
    assert f"UV_VERSION ?= {args['UV_VERSION']}" in makefile
    # the deploy extras are constrained by the exported lock
    extras = [run for run in runs if "uv pip install" in run]
    assert len(extras) == 1
    assert "uv export --frozen" in extras[0]
    assert "--constraint /tmp/locked.txt" in extras[0]
    assert "--requirement docker/requirements-deploy.txt" in extras[0]
    # the last sync must not uninstall them
    assert "--inexact" in syncs[-1]
    assert runs.index(syncs[-1]) > runs.index(extras[0])


def test_dockerfile_environment() -> None:
    env = _dockerfile_env()
    workdir = _workdir()
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(workdir / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(workdir / "plugins")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["PATH"].startswith(f"{workdir}/.venv/bin:")
    assert env["AIRFLOW_HOME"] == "/opt/airflow"
    base = [args for keyword, args in _dockerfile() if keyword == "FROM"]
    assert base == ["python:3.11-slim-bookworm"]
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    assert lock["requires-python"] == "==3.11.*"
    users = [args for keyword, args in _dockerfile() if keyword == "USER"]
    assert users == ["loopline"], "the services must not run as root"


def test_deploy_requirements_are_pinned_and_agree_with_the_lock() -> None:
    locked = _lock_versions()
    pins = {}
    for line in (ROOT / "docker" / "requirements-deploy.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([\w.]+)", line)
            assert match, f"not an exact pin: {line!r}"
            pins[match.group(1).lower()] = match.group(2)
    # the Postgres drivers (sync and the api-server's async engine) and Celery
    assert {
        "apache-airflow-providers-postgres",
        "psycopg2-binary",
        "asyncpg",
        "apache-airflow-providers-celery",
        "celery",
        "redis",
    } <= set(pins)
    for name, version in pins.items():
        if name in locked:
            assert locked[name] == version, f"{name}: {version} vs locked"


def test_ignore_files() -> None:
    gitignore = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in gitignore
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".git", ".venv", ".loopline"} <= {p.strip("/") for p in ignored}
    for sources, _ in _copies():
        for source in sources:
            top = source.split("/")[0]
            assert top not in {p.strip("/") for p in ignored}, f"{source} is ignored"


def test_airflow_init_script() -> None:
    from loopline_airflow import WAREHOUSE_POOL

    script = ROOT / "docker" / "airflow-init.sh"
    bash = shutil.which("bash")
    assert bash
    subprocess.run([bash, "-n", str(script)], check=True)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert "airflow db migrate" in text
    assert re.search(rf"airflow pools set {WAREHOUSE_POOL} 1 ", text)
    assert "loopline init" in text
    assert 'os.environ["AIRFLOW_ADMIN_PASSWORD"]' in text
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in text


# --- docker compose itself, when a v2 binary is on the machine ---------------------


def _compose_command() -> list[str] | None:
    candidates = []
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if standalone := shutil.which("docker-compose"):
        candidates.append([standalone])
    for command in candidates:
        try:
            done = subprocess.run(
                [*command, "version"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and re.search(r"\bv?2\.\d+", done.stdout):
            return command
    return None


def _run_compose(
    command: list[str], env_file: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    # a clean environment: compose gives the shell's variables precedence
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        [
            *command,
            "--project-directory",
            str(ROOT),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "--env-file",
            str(env_file),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def test_docker_compose_config_renders(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 binary on this machine")
    example = ROOT / ".env.example"
    for profile, expected in (
        ([], CORE_SERVICES),
        (["--profile", "celery"], CORE_SERVICES | CELERY_SERVICES),
    ):
        done = _run_compose(command, example, *profile, "config", "--format", "json")
        assert done.returncode == 0, done.stderr
        rendered = json.loads(done.stdout)
        assert set(rendered["services"]) == expected
        for name, service in rendered["services"].items():
            for port in service.get("ports", []):
                assert port["host_ip"] == "127.0.0.1", name
        scheduler = rendered["services"]["airflow-scheduler"]["environment"]
        assert scheduler["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
            "postgresql+psycopg2://loopline:change-me-postgres-password"
            "@postgres:5432/airflow"
        )
    # switching the executor is one line of .env
    celery_env = tmp_path / "celery.env"
    celery_env.write_text(
        example.read_text().replace(
            "AIRFLOW__CORE__EXECUTOR=LocalExecutor",
            "AIRFLOW__CORE__EXECUTOR=CeleryExecutor",
        )
    )
    done = _run_compose(
        command, celery_env, "--profile", "celery", "config", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    for name in AIRFLOW_SERVICES:
        env = json.loads(done.stdout)["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
    # without .env the required secrets stop compose with their message
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = _run_compose(command, empty, "config", "--quiet")
    assert done.returncode != 0
    assert "required variable" in done.stderr and "in .env" in done.stderr
