"""Airflow 3 as local services: api-server, scheduler, dag-processor, triggerer.

``loopline airflow`` (and ``make airflow``) and the service tests start the same
processes as ``airflow standalone`` does, each with its log file under
``$AIRFLOW_HOME/logs/services/``, configured from the project settings through
:func:`loopline_airflow.runner.airflow_env`: ``AIRFLOW_HOME =
$LOOPLINE_HOME/airflow``, SQLite metadata, this repo's ``dags/`` and ``plugins/``.
On top of that:

- **LocalExecutor on SQLite.** Airflow 3.3 refuses neither: tasks no longer touch
  the metadata database (they talk to the api-server's execution API), and
  ``airflow standalone`` itself forces the LocalExecutor on SQLite. SQLite allows
  one writer at a time, so ``parallelism`` stays small; Loopline's warehouse tasks
  run one at a time anyway (the one-slot ``warehouse`` pool).
- **Simple auth manager with a known user.** ``admin`` (role admin), with a
  generated password in ``$AIRFLOW_HOME/simple_auth_manager_passwords.json``
  (mode 0600, under ``LOOPLINE_HOME``, never in the repo). It is written before the
  api-server starts, so :func:`login` can print it and the tests can use it.
- **Loopback only** (``[api] host``), one api-server worker; the scheduler's and
  the triggerer's log servers listen on ``127.0.0.1`` (``loopline_airflow.launch``).
- **A warm scheduler, a serialized api-server** (``loopline_airflow.launch``):
  the scheduler imports the tasks' libraries first, which every task process then
  inherits; the api-server takes SQLite's write lock before a savepoint, so that
  creating a backfill does not fail halfway while the other services commit.
- **No calendar schedule unless asked** (``[scheduler] use_job_schedule``): a local
  world (the simulated one) lives in the past, and the @daily schedule would start
  runs for today's calendar date. Runs come from triggers and backfills.
  ``schedule=True`` turns the schedule on, and with it the asset-triggered runs
  (``loopline_retrain`` on ``retrain_requested``), which Airflow ties to the same
  switch.

Before any service starts, :func:`prepare` creates the metadata database and the
one-slot ``warehouse`` pool in a separate process (Airflow reads its configuration
once per process, and the caller may already have imported it for another home).

:class:`AirflowServices` puts every process in one new process group and
:meth:`AirflowServices.stop` ends that group and every descendant: task processes
put themselves in process groups of their own, so they are found through the
process tree (snapshotted before any signal) rather than the group alone.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from loopline_airflow.launch import LOG_SERVER_HOST
from loopline_airflow.runner import airflow_env
from ml.config.settings import Settings

SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
ADMIN_USER = "admin"
# SQLite's busy timeout for Airflow's metadata connections ([database]
# sql_alchemy_connect_args names this dict), for the waits on the write lock
# (loopline_airflow.launch makes the api-server take it early when it creates a
# backfill); Python's default is 5 s.
SQLITE_CONNECT_ARGS: dict[str, object] = {"timeout": 60}
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
PASSWORDS_FILE = "simple_auth_manager_passwords.json"
SCHEDULER_IDLE_SLEEP = 0.25


@dataclass(frozen=True)
class Login:
    """How to sign in to the local Airflow (simple auth manager)."""

    username: str
    password: str
    passwords_file: Path


def passwords_file(settings: Settings) -> Path:
    return settings.airflow_home / PASSWORDS_FILE


def base_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def services_env(
    settings: Settings,
    host: str,
    port: int,
    schedule: bool = False,
    log_level: str = "INFO",
    log_server_ports: tuple[int, int] = (8793, 8794),
) -> dict[str, str]:
    """The Airflow configuration of every service process (environment variables).

    ``log_server_ports`` are where the scheduler and the triggerer serve the logs of
    running tasks (Airflow's defaults unless given)."""
    url = base_url(host, port)
    worker_logs, trigger_logs = log_server_ports
    return (
        settings_env(settings)
        | airflow_env(settings, log_level)
        | {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # Warehouse tasks run one at a time (the pool); two workers leave room for
            # a task outside it (training) and keep memory low.
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                passwords_file(settings)
            ),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": (
                "loopline_airflow.services.SQLITE_CONNECT_ARGS"
            ),
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            # A task's first call to the execution API can wait for the api-server's
            # first use of it (35 s measured on a busy 2-core machine); Airflow's 5 s
            # default then fails the task before it starts.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "120",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(schedule),
            # A nightly run is a chain of seven short tasks; with Airflow's 1 s idle
            # sleep the scheduler notices a finished task and queues the next one
            # about 2 s later. A quarter second keeps that gap short for one local
            # scheduler on SQLite.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": str(SCHEDULER_IDLE_SLEEP),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
            # the log servers listen on loopback only, and every process names
            # loopback as its host, where the api-server asks for running logs
            # (loopline_airflow.launch)
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": (
                "loopline_airflow.launch.loopback_hostname"
            ),
            # the components' own logs go to files; no colour codes in them
            "NO_COLOR": "1",
        }
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as ``LOOPLINE_*`` variables, so the service processes (and the
    tasks they run) see the same settings as the caller."""
    values = settings.model_dump(exclude={"home"}, exclude_none=True)
    return {f"LOOPLINE_{name.upper()}": str(value) for name, value in values.items()}


def login(settings: Settings) -> Login:
    """The admin login; creates its password (0600 file) when there is none yet."""
    path = passwords_file(settings)
    passwords: dict[str, str] = {}
    if path.exists() and path.read_text().strip():
        passwords = json.loads(path.read_text())
    if ADMIN_USER not in passwords:
        passwords[ADMIN_USER] = secrets.token_urlsafe(18)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(passwords) + "\n")
    return Login(ADMIN_USER, passwords[ADMIN_USER], path)


def prepare(settings: Settings, env: Mapping[str, str]) -> None:
    """Create the metadata database and the ``warehouse`` pool (one slot), in a
    fresh process configured like the services."""
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "loopline_airflow.services", "prepare"],
        env=_process_env(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            "preparing Airflow's metadata failed:\n" + done.stdout + done.stderr
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def _port_or_free(host: str, port: int) -> int:
    return free_port(host) if port_in_use(host, port) else port


def _process_env(env: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment, then ``env`` over it; the venv's ``bin`` first on
    PATH (Airflow starts ``airflow`` subprocesses).

    The caller's ``AIRFLOW__SECTION__KEY`` options pass through (say,
    ``AIRFLOW__CORE__DEFAULT_TIMEZONE``) unless ``env`` sets the same option; its
    other ``AIRFLOW*`` variables (``AIRFLOW_HOME``, ``AIRFLOW_CONFIG``…) do not:
    the home comes from the settings."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIRFLOW") or k.startswith("AIRFLOW__")
    }
    bin_dir = str(Path(sys.executable).parent)
    base["PATH"] = os.pathsep.join([bin_dir, base.get("PATH", "")])
    return base | dict(env)


@dataclass
class AirflowServices:
    """Running Airflow service processes, in one process group."""

    settings: Settings
    host: str
    port: int
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)

    @property
    def pgid(self) -> int | None:
        first = next(iter(self.processes.values()), None)
        return first.pid if first is not None else None

    def log_file(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    def start(self, components: Iterable[str], env: Mapping[str, str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        full_env = _process_env(env)
        airflow = str(Path(sys.executable).with_name("airflow"))
        for component in components:
            if component in ("api-server", "scheduler", "triggerer"):
                # `airflow <component>` with additions (loopline_airflow.launch)
                command = [sys.executable, "-m", "loopline_airflow.launch", component]
            elif component in COMPONENTS:
                command = [airflow, component]
            else:
                command = _extra_command(self.settings, component)
            log = self.log_file(component).open("ab")
            self._logs.append(log)
            # The first process leads a new group; the others join it.
            self.processes[component] = subprocess.Popen(
                command,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                process_group=self.pgid or 0,
            )

    def failed(self) -> dict[str, int]:
        """Components that exited, with their exit codes."""
        return {
            name: code
            for name, proc in self.processes.items()
            if (code := proc.poll()) is not None
        }

    def wait_until_ready(
        self, timeout: float = 180, dags: Iterable[str] = (), token: str | None = None
    ) -> None:
        """Wait until every component reports healthy (``/api/v2/monitor/health``)
        and, given a token, until ``dags`` are parsed."""
        deadline = time.monotonic() + timeout
        wanted = {
            "scheduler": "scheduler" in self.processes,
            "dag_processor": "dag-processor" in self.processes,
            "triggerer": "triggerer" in self.processes,
        }
        missing: list[str] = ["api-server"]
        while time.monotonic() < deadline:
            if failed := self.failed():
                raise RuntimeError(
                    f"Airflow component(s) exited: {failed}; see {self.log_dir}"
                )
            missing = self._not_ready(wanted, set(dags), token)
            if not missing:
                return
            time.sleep(1)
        raise TimeoutError(
            f"Airflow not ready after {timeout:.0f}s (waiting for "
            f"{', '.join(missing)}); see {self.log_dir}"
        )

    def _not_ready(
        self, wanted: dict[str, bool], dags: set[str], token: str | None
    ) -> list[str]:
        try:
            health = _get_json(f"{self.url}/api/v2/monitor/health")
        except (OSError, ValueError):
            return ["api-server"]
        missing = [
            name
            for name, needed in wanted.items()
            if needed and (health.get(name) or {}).get("status") != "healthy"
        ]
        if dags and token and not missing:
            found = _get_json(f"{self.url}/api/v2/dags?limit=100", token)
            parsed = {d["dag_id"] for d in found.get("dags", [])}
            missing = sorted(dags - parsed)
        return missing

    def process_tree(self) -> list[Any]:
        """The live service processes and all their descendants (psutil)."""
        return _process_tree(self.processes.values(), self.pgid)

    def stop(self, timeout: float = 10) -> list[int]:
        """End every service process and its descendants; returns the pids that
        had to be killed (SIGKILL) after ``timeout`` seconds of SIGTERM."""
        import psutil

        killed: list[int] = []
        pgid = self.pgid
        roots = {proc.pid for proc in self.processes.values()}
        for attempt in range(3):
            tree = _process_tree(self.processes.values(), pgid)
            if not tree:
                break
            # First each service alone: a service stops its own children (the
            # triggerer, whose trigger runner was also signalled, waited the whole
            # timeout for it); then whatever is left.
            for proc in tree:
                if attempt == 0 and proc.pid not in roots:
                    continue
                with _no_such_process():
                    proc.send_signal(signal.SIGTERM)
            _, alive = psutil.wait_procs(tree, timeout=timeout)
            for proc in alive:
                with _no_such_process():
                    proc.kill()
                    killed.append(proc.pid)
            psutil.wait_procs(alive, timeout=5)
        if pgid is not None:
            with _no_such_process():
                os.killpg(pgid, signal.SIGKILL)
        for proc in self.processes.values():
            with _no_such_process():
                proc.wait(timeout=5)
        for log in self._logs:
            log.close()
        return killed

    def __enter__(self) -> AirflowServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_services(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    components: Iterable[str] = COMPONENTS,
    schedule: bool = False,
    log_server_ports: tuple[int, int] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> AirflowServices:
    """Prepare the metadata, then start ``components``; returns at once (see
    :meth:`AirflowServices.wait_until_ready`). ``mlflow`` is an extra component:
    the MLflow UI on ``settings.mlflow_ui_url``. The log servers take Airflow's
    ports (8793, 8794) on loopback when nobody listens there, else free ones."""
    host = host or settings.airflow_host
    port = port or settings.airflow_port
    if log_server_ports is None:
        log_server_ports = (
            _port_or_free(LOG_SERVER_HOST, 8793),
            _port_or_free(LOG_SERVER_HOST, 8794),
        )
    env = services_env(
        settings, host, port, schedule, log_server_ports=log_server_ports
    ) | dict(extra_env or {})
    login(settings)
    prepare(settings, env)
    services = AirflowServices(
        settings, host, port, settings.airflow_home / "logs" / "services"
    )
    try:
        services.start(components, env)
    except BaseException:
        services.stop()
        raise
    return services


def _extra_command(settings: Settings, component: str) -> list[str]:
    if component != "mlflow":
        raise ValueError(f"unknown component {component!r}")
    from urllib.parse import urlsplit

    where = urlsplit(settings.mlflow_ui_url)
    return [
        str(Path(sys.executable).with_name("mlflow")),
        "ui",
        "--backend-store-uri",
        settings.mlflow_tracking_uri,
        "--host",
        where.hostname or "127.0.0.1",
        "--port",
        str(where.port or 5000),
    ]


def _get_json(url: str, token: str | None = None) -> dict[str, Any]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


def _process_tree(
    roots: Iterable[subprocess.Popen[bytes]], pgid: int | None
) -> list[Any]:
    """The live processes of the group and every descendant of the roots."""
    import psutil

    found: dict[int, Any] = {}
    for root in roots:
        with _no_such_process():
            proc = psutil.Process(root.pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = proc
            for child in proc.children(recursive=True):
                found[child.pid] = child
    if pgid is not None:
        for proc in psutil.process_iter():
            with _no_such_process():
                if os.getpgid(proc.pid) == pgid and proc.pid not in found:
                    found[proc.pid] = proc
    return [p for p in found.values() if _alive(p)]


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class _no_such_process:
    """Ignore processes that ended meanwhile."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        import psutil

        return kind is not None and issubclass(
            kind, (ProcessLookupError, psutil.NoSuchProcess, psutil.ZombieProcess)
        )


def _prepare_main() -> None:
    """``python -m loopline_airflow.services prepare``: the environment is already
    the services' configuration."""
    from airflow.configuration import write_default_airflow_configuration_if_needed

    from loopline_airflow.runner import ensure_metadata
    from ml.config.settings import get_settings

    # airflow.cfg with its generated JWT secret and Fernet key, written once here:
    # services that start together would each write one, with different keys.
    write_default_airflow_configuration_if_needed()
    ensure_metadata(get_settings())


if __name__ == "__main__":
    if sys.argv[1:] != ["prepare"]:
        raise SystemExit("usage: python -m loopline_airflow.services prepare")
    _prepare_main()
