"""The real Airflow services: backfills, concurrent runs and the Loopline plugin.

One ``loopline airflow`` (api-server, scheduler, dag-processor, triggerer;
LocalExecutor, SQLite metadata) runs for the whole module on a free loopback port,
over a throw-away LOOPLINE_HOME holding a small simulated world (history rebuilt in
bulk, nights left to run). It must print the URL and the login; then everything
goes through the REST API the UI uses, with a JWT from the simple auth manager's
``POST /auth/token``:

- a backfill of ``loopline_nightly`` over three logical dates (``POST
  /api/v2/backfills``) gives the same warehouse and exports as ``dag.test()`` of the
  same dates on a copy of the starting home (``loopline backfill``, in another
  process, while the services start); a second backfill that reprocesses the
  completed runs changes nothing;
- ``loopline_outcomes`` and ``loopline_nightly`` triggered for the same date at
  once both succeed: the outcomes run waits for the nightly ``decide``, and the
  result equals ``dag.test()`` of the two in order; no two warehouse tasks ran at
  the same time;
- the Loopline pages are refused without a login and served with one.

Run alone with ``pytest -m airflow_services``. The fixture's finalizer interrupts
the command (Ctrl-C), which stops every service process and their descendants, and
fails if any process of the tree is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml.config.settings import REPO_ROOT, Settings
from ml.storage.warehouse import connect, ensure_schemas
from tests.e2e.state import decision_rows, differences, state_digest

pytestmark = pytest.mark.airflow_services

START = date(2025, 1, 1)
DAYS = 45
CUSTOMERS = 300
LAST = START + timedelta(days=DAYS - 1)
BACKFILL = [LAST - timedelta(days=3 - i) for i in range(3)]
TOGETHER = LAST
NIGHTLY, OUTCOMES = "loopline_nightly", "loopline_outcomes"
DAGS = (NIGHTLY, OUTCOMES, "loopline_retrain")
# the state a run leaves in LOOPLINE_HOME; airflow/ is each home's own metadata
STATE = ("landing", "warehouse.duckdb", "exports", "gx", "dbt", "truth", "reports")
TIMEOUT = 600


def _wait(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(2)
    raise AssertionError(f"gave up waiting for {what} after {timeout}s")


@dataclass
class Airflow:
    """The running services and an authenticated REST client."""

    url: str
    settings: Settings
    client: httpx.Client
    token: str

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    def send(self, method: str, path: str, body: dict[str, Any]) -> Any:
        response = self.client.request(method, path, json=body)
        assert response.status_code in (200, 201), (path, response.text)
        return response.json()

    def unpause(self, dag_id: str) -> None:
        assert not self.send("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})[
            "is_paused"
        ]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        found = self.get(f"/api/v2/dags/{dag_id}/dagRuns", limit=100)
        return list(found["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        found = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in found["task_instances"]}

    def finished_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            run = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        run: dict[str, Any] = _wait(done, f"{dag_id} {run_id}")
        return run


def _midnight(day: date) -> str:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat()


def _build_world(settings: Settings) -> None:
    from ml.ops.tasks import rebuild
    from ml.sim import load_sim_config, simulate

    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
    config = load_sim_config().model_copy(
        update={"n_customers": CUSTOMERS, "seed": 11, "drift": None}
    )
    simulate(settings, config, start=START, days=DAYS, progress=False, reset=True)
    rebuild(START, BACKFILL[0] - timedelta(days=1), settings=settings)


def _copy_state(source: Settings, target: Settings) -> None:
    target.root.mkdir(parents=True)
    for name in STATE:
        path = source.root / name
        if path.is_dir():
            shutil.copytree(path, target.root / name)
        elif path.exists():
            shutil.copy2(path, target.root / name)


def _child_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return env | {"LOOPLINE_HOME": str(settings.root), "LOOPLINE_THREADS": "1"}


@dataclass
class Launched:
    """``loopline airflow`` running in the background."""

    settings: Settings
    url: str
    command: subprocess.Popen[bytes]
    output: Path

    def printed(self) -> str:
        return self.output.read_text()


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """The home the services serve.

    Not under pytest's basetemp: other pytest sessions on the machine prune old
    basetemp directories, and the services write here for minutes. Kept when a
    test failed (the services' and tasks' logs are under ``airflow/logs``)."""
    failed_before = request.session.testsfailed
    root = Path(tempfile.mkdtemp(prefix="loopline-airflow-services-"))
    yield Settings(home=root / "served")
    if request.session.testsfailed == failed_before:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"\nkept {root} (a test failed)")


@pytest.fixture(scope="module")
def launched(served: Settings) -> Iterator[Launched]:
    """``loopline airflow`` on a free port, as a user starts it, started first so
    that it comes up while the world is built; Ctrl-C at the end.

    The finalizer interrupts the command, which stops its services' process group
    and their descendants, then ends whatever of the process tree (snapshotted
    first) is still alive, and fails the test run if anything was."""
    import psutil
    from loopline_airflow.services import free_port

    port = free_port()
    served.root.mkdir(parents=True)
    output = served.root / "loopline-airflow.out"
    env = _child_env(served) | {
        "LOOPLINE_AIRFLOW_PORT": str(port),
        "LOOPLINE_NIGHTLY_WAIT_POKE_SECONDS": "2",
        "LOOPLINE_NIGHTLY_WAIT_TIMEOUT_SECONDS": str(TIMEOUT),
        # the DAG files do not change during the tests: parse them once
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "COLUMNS": "200",
    }
    with output.open("w") as out:
        command = subprocess.Popen(
            [str(Path(sys.executable).with_name("loopline")), "airflow", "--no-mlflow"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
    try:
        yield Launched(served, f"http://127.0.0.1:{port}", command, output)
    finally:
        tree = [psutil.Process(command.pid), *_descendants(command.pid)]
        command.send_signal(signal.SIGINT)
        try:
            code = command.wait(timeout=120)
        except subprocess.TimeoutExpired:
            code = None
        left = [proc for proc in tree if _alive(proc)]
        for proc in left:
            proc.kill()
        with suppress(ProcessLookupError):
            os.killpg(command.pid, signal.SIGKILL)
        # Ctrl-C stops every service; the command exits 130 (128 + SIGINT)
        assert left == [] and code == 130, (code, left, output.read_text()[-3000:])


@pytest.fixture(scope="module")
def homes(served: Settings, launched: Launched) -> tuple[Settings, Settings]:
    """The served home with its world, and a copy of it for ``dag.test()``."""
    _build_world(served)
    reference = Settings(home=served.root.parent / "reference")
    _copy_state(served, reference)
    return served, reference


@pytest.fixture(scope="module")
def reference(
    homes: tuple[Settings, Settings],
) -> Iterator[Callable[[], dict[str, dict[str, str]]]]:
    """``dag.test()`` of the same dates in another process, running while the
    services come up; call it for its digests."""
    import json

    _, home = homes
    out = home.root / "digests.json"
    log = (home.root / "reference.log").open("w")
    # niced: the services' runs are the test's critical path; the reference has
    # until the end of the second backfill
    process = subprocess.Popen(
        [
            "nice",
            "-n",
            "10",
            sys.executable,
            "-m",
            "tests.e2e.dag_test_reference",
            str(home.root),
            BACKFILL[0].isoformat(),
            BACKFILL[-1].isoformat(),
            TOGETHER.isoformat(),
            str(out),
        ],
        cwd=REPO_ROOT,
        env=_child_env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def digests() -> dict[str, dict[str, str]]:
        code = process.wait(timeout=TIMEOUT)
        log.flush()
        tail = (home.root / "reference.log").read_text()[-3000:]
        assert code == 0, tail
        found: dict[str, dict[str, str]] = json.loads(out.read_text())
        return found

    yield digests
    if process.poll() is None:
        process.kill()
        process.wait()
    log.close()


@pytest.fixture(scope="module")
def airflow(
    launched: Launched,
    homes: tuple[Settings, Settings],
    reference: Callable[[], dict[str, dict[str, str]]],
) -> Iterator[Airflow]:
    """The services, once ``loopline airflow`` says they are up and the DAGs are
    parsed, with a REST client holding the admin's JWT."""
    from loopline_airflow.services import login

    command, url = launched.command, launched.url
    _wait(
        lambda: command.poll() is not None or "Airflow is up" in launched.printed(),
        "loopline airflow",
    )
    printed = launched.printed()
    assert command.poll() is None, printed
    credentials = login(launched.settings)
    assert url in printed
    assert f"sign in as admin with password {credentials.password}" in printed
    response = httpx.post(
        f"{url}/auth/token",
        json={"username": credentials.username, "password": credentials.password},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    token = response.json()["access_token"]
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        api = Airflow(url, launched.settings, client, token)
        _wait(lambda: set(DAGS) <= _parsed(api), "the DAGs to be parsed")
        yield api


def _parsed(airflow: Airflow) -> set[str]:
    return {d["dag_id"] for d in airflow.get("/api/v2/dags", limit=100)["dags"]}


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def backfilled(
    airflow: Airflow, reference: Callable[[], dict[str, dict[str, str]]]
) -> dict[str, Any]:
    """A backfill of the nightly DAG over BACKFILL, through the REST API."""
    airflow.unpause(NIGHTLY)
    return _backfill(airflow, "none")


def _backfill(airflow: Airflow, reprocess: str) -> dict[str, Any]:
    created = airflow.send(
        "POST",
        "/api/v2/backfills",
        {
            "dag_id": NIGHTLY,
            "from_date": _midnight(BACKFILL[0]),
            "to_date": _midnight(BACKFILL[-1]),
            "reprocess_behavior": reprocess,
            # the nights run in order, as the UI's backfill dialog does by default
            "max_active_runs": 1,
        },
    )

    since = datetime.fromisoformat(created["created_at"])

    def ran() -> bool:
        # every night of the backfill has run (again) to an end; the scheduler
        # sets the backfill's completed_at only every 30 s
        runs = _backfill_runs(airflow)
        return sorted(runs) == BACKFILL and all(
            run["state"] in ("success", "failed")
            and run["start_date"] is not None
            and datetime.fromisoformat(run["start_date"]) >= since
            for run in runs.values()
        )

    _wait(ran, f"the runs of backfill {created['id']}")
    return dict(created)


def _wait_completed(airflow: Airflow, backfill_id: int) -> None:
    """Until the scheduler has marked the backfill complete (a DAG has one active
    backfill at a time)."""
    _wait(
        lambda: airflow.get(f"/api/v2/backfills/{backfill_id}")["completed_at"],
        f"backfill {backfill_id} to be marked complete",
    )


def _backfill_runs(airflow: Airflow) -> dict[date, dict[str, Any]]:
    return {
        datetime.fromisoformat(run["logical_date"]).date(): run
        for run in airflow.runs(NIGHTLY)
        if run["run_type"] == "backfill"
    }


def test_the_warehouse_pool_has_one_slot_before_anything_runs(
    airflow: Airflow,
) -> None:
    pool = airflow.get("/api/v2/pools/warehouse")
    assert pool["slots"] == 1
    health = airflow.get("/api/v2/monitor/health")
    for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert health[component]["status"] == "healthy", (component, health)
    config = airflow.get("/api/v2/version")
    assert config["version"].startswith("3.")


def test_loopline_pages_need_an_airflow_login(airflow: Airflow) -> None:
    pages = ("/loopline/", "/loopline/report/", "/loopline/data-docs/index.html")
    with httpx.Client(base_url=airflow.url, timeout=30) as anonymous:
        for page in (*pages, "/loopline/dbt-docs/"):
            assert anonymous.get(page).status_code == 401, page
        forged = anonymous.get(
            "/loopline/", headers={"Authorization": "Bearer not.a.token"}
        )
        assert forged.status_code == 403
        # what the UI does: the JWT in the `_token` cookie it sets at login
        anonymous.cookies.set("_token", airflow.token)
        by_cookie = anonymous.get("/loopline/")
        assert by_cookie.status_code == 200
        assert "GX Data Docs" in by_cookie.text

    index = airflow.client.get("/loopline/")
    assert index.status_code == 200
    for link in ("report/", "data-docs/", "dbt-docs/", airflow.settings.mlflow_ui_url):
        assert f"href='{link}'" in index.text, link
    docs = airflow.client.get("/loopline/data-docs/index.html")
    assert docs.status_code == 200 and "Data Docs" in docs.text
    # not generated yet: a page that says how to generate it
    report = airflow.client.get("/loopline/report/")
    assert report.status_code == 404 and "loopline report" in report.text
    dbt_docs = airflow.client.get("/loopline/dbt-docs/")
    assert dbt_docs.status_code == 404 and "loopline docs" in dbt_docs.text
    # only dbt docs' own files, nothing else of the target directory
    assert airflow.client.get("/loopline/dbt-docs/run_results.json").status_code == 404
    escape = airflow.client.get("/loopline/data-docs/..%2F..%2Fwarehouse.duckdb")
    assert escape.status_code == 404

    plugins = {p["name"]: p for p in airflow.get("/api/v2/plugins")["plugins"]}
    plugin = plugins["loopline"]
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/loopline"]
    [view] = plugin["external_views"]
    assert view["name"] == "Loopline" and view["nav_top_level"] is True
    assert view["href"] == "/loopline/" and view["destination"] == "nav"
    assert airflow.get("/api/v2/plugins/importErrors")["import_errors"] == []


def test_a_backfill_equals_dag_test_and_reprocessing_changes_nothing(
    airflow: Airflow,
    backfilled: dict[str, Any],
    reference: Callable[[], dict[str, dict[str, str]]],
) -> None:
    runs = _backfill_runs(airflow)
    assert sorted(runs) == BACKFILL
    assert {run["state"] for run in runs.values()} == {"success"}, runs
    first = state_digest(airflow.settings)
    assert decision_rows(airflow.settings) > 0

    # the reprocessing backfill runs while the dag.test() reference may still run
    _wait_completed(airflow, backfilled["id"])
    again = _backfill(airflow, "completed")
    assert again["id"] != backfilled["id"]
    runs = _backfill_runs(airflow)
    assert sorted(runs) == BACKFILL
    for day, run in runs.items():
        assert run["state"] == "success", (day, run)
        tries = airflow.task_instances(NIGHTLY, run["dag_run_id"])
        # every task ran a second time...
        assert {ti["try_number"] for ti in tries.values()} == {2}, (day, tries)
    # ...and nothing changed: warehouse tables, decisions, export files
    assert differences(state_digest(airflow.settings), first) == []
    # and the backfill equals dag.test() of the same dates
    assert differences(first, reference()["backfill"]) == []


def test_nightly_and_outcomes_of_one_date_at_once(
    airflow: Airflow,
    backfilled: dict[str, Any],
    reference: Callable[[], dict[str, dict[str, str]]],
) -> None:
    airflow.unpause(OUTCOMES)
    started = {}
    # the outcomes run first, so that it has to wait for the nightly decide
    for dag_id in (OUTCOMES, NIGHTLY):
        run = airflow.send(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns",
            {"logical_date": _midnight(TOGETHER)},
        )
        started[dag_id] = run["dag_run_id"]
    finished = {
        dag_id: airflow.finished_run(dag_id, run_id)
        for dag_id, run_id in started.items()
    }
    tasks = {
        dag_id: airflow.task_instances(dag_id, run_id)
        for dag_id, run_id in started.items()
    }
    assert {run["state"] for run in finished.values()} == {"success"}, _failure(
        airflow, tasks
    )
    decided = tasks[NIGHTLY]["decide"]["end_date"]
    assert tasks[OUTCOMES]["check_nightly"]["end_date"] >= decided
    assert tasks[OUTCOMES]["join_outcomes"]["start_date"] >= decided

    assert differences(state_digest(airflow.settings), reference()["loop"]) == []
    _assert_warehouse_tasks_never_overlapped(airflow)


def _failure(airflow: Airflow, tasks: dict[str, dict[str, dict[str, Any]]]) -> str:
    """What a failed run needs to be understood: each task's state and try, and the
    end of the log of every task that did not succeed, and of the scheduler's."""
    lines = []
    logs = airflow.settings.root / "airflow" / "logs"
    for dag_id, found in tasks.items():
        for task_id, ti in found.items():
            lines.append(f"{dag_id}.{task_id}: {ti['state']} try {ti['try_number']}")
            if ti["state"] in ("success", "skipped"):
                continue
            run = f"dag_id={dag_id}/run_id={ti['dag_run_id']}/task_id={task_id}"
            for path in sorted(logs.glob(f"{run}/*")):
                lines.append(f"--- {path}")
                lines.extend(path.read_text(errors="replace")[-4000:].splitlines())
    for path in sorted((logs / "services").glob("*.log")):
        lines.append(f"--- {path}")
        lines.extend(path.read_text(errors="replace")[-3000:].splitlines())
    return "\n".join(lines)


def _assert_warehouse_tasks_never_overlapped(airflow: Airflow) -> None:
    """The one-slot pool: no two warehouse tasks of any run were running at once.

    The rescheduling sensor is left out: its start date is that of its first poke,
    and it holds the slot only while it pokes."""
    spans = []
    for dag_id in (NIGHTLY, OUTCOMES):
        for run in airflow.runs(dag_id):
            for ti in airflow.task_instances(dag_id, run["dag_run_id"]).values():
                if ti["pool"] == "warehouse" and ti["task_id"] != "check_nightly":
                    spans.append((ti["start_date"], ti["end_date"], dag_id, ti))
    spans.sort(key=lambda span: span[0])
    assert len(spans) > 20
    for before, after in zip(spans, spans[1:], strict=False):
        assert before[1] <= after[0], (before[2:], after[2:])
