"""End to end: the closed loop, ``loopline demo --quick``, in a fresh process.

The quick demo simulates a small world's history, trains the first model, then lives
through the loop day by day with the real DAGs in-process (simulate → nightly →
outcomes → retrain when requested), with a drift event from its first loop day and a
7-day label horizon. It runs in its own process and ``LOOPLINE_HOME`` because
Airflow and MLflow keep per-process state. The test then reads what the loop left
behind: the retrain request and its reasons, the retrain run's MLflow tags and gate
verdict, the learned policy parameters, the outcome marts, the report, and the
analyst copy the last run published, on which every query of
``docs/analyst_guide.md`` must run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from mlflow.tracking import MlflowClient

from ml.config.settings import REPO_ROOT, Settings
from ml.storage.warehouse import connect

MODEL = "loopline-churn"
SECTIONS = ("summary", "value", "model", "uplift", "drift", "operations", "retrains")
GUIDE = REPO_ROOT / "docs" / "analyst_guide.md"


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    home = tmp_path_factory.mktemp("closed-loop")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "LOOPLINE_"))
    }
    env |= {"LOOPLINE_HOME": str(home), "LOOPLINE_THREADS": "1", "COLUMNS": "200"}
    loopline = Path(sys.executable).with_name("loopline")
    done = subprocess.run(
        [str(loopline), "demo", "--quick"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    # only the demo's own lines: library warnings, MLflow's messages and the
    # in-process tasks' Airflow logs went to logs/loopline.log
    printed = done.stdout + done.stderr
    assert [line for line in printed.splitlines() if "arning" in line] == []
    assert "Traceback" not in printed and "INFO mlflow" not in printed
    assert done.stderr == ""
    settings = Settings(home=home, config_file=home / "config" / "loopline.yml")
    return settings, done.stdout


def test_the_loop_ran_every_day_through_the_real_dags(
    loop: tuple[Settings, str],
) -> None:
    settings, stdout = loop
    with connect(settings.warehouse_path, read_only=True) as con:
        steps = dict(
            con.execute(
                "select step, count(*) from ops.runs where status = 'success' "
                "group by step"
            ).fetchall()
        )
        nights = steps["decide"]
        # one status line per day, the drift, the horizon of the quick demo
        days = con.execute(
            "select count(distinct run_date) from marts.decisions"
        ).fetchall()[0][0]
    assert nights == days >= 12
    # Airflow's start-up ran beside the history phase and succeeded there
    assert "Airflow started in the background" in stdout
    for step in (
        "join_outcomes",
        "drift",
        "learn_policy",
        "retrain_check",
        "publish",
        "publish_outcomes",
    ):
        assert steps[step] == nights, step
    assert stdout.count(" gate=ok ") >= nights
    assert "label horizon H = 7 days" in stdout


def test_a_breach_requested_a_retrain_that_went_through_the_gate(
    loop: tuple[Settings, str],
) -> None:
    settings, _ = loop
    with connect(settings.warehouse_path, read_only=True) as con:
        fired = con.execute(
            "select day, reasons, evidence from ops.retrain_events "
            "where fired order by day"
        ).fetchall()
        quiet = con.execute(
            "select count(*) from ops.retrain_events where not fired"
        ).fetchall()[0][0]
    assert fired, "no retrain was requested"
    assert quiet > 0, "the trigger fired every day"
    day, reasons, evidence = fired[0]
    assert reasons.split(":", 1)[0] in {"decay", "drift", "calibration"}
    assert json.loads(evidence)["today"] == day.isoformat()

    uri = settings.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = sorted(
        client.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version)
    )
    assert len(versions) >= 2, "the retrain registered no new version"
    retrained = versions[1]
    # the retrain's training run carries the trigger's reasons as tags
    run = client.get_run(retrained.run_id)
    assert run.data.tags["trigger.fire"] == "true"
    assert run.data.tags["trigger.day"] == day.isoformat()
    assert run.data.tags["trigger.reasons"]
    # and the new version went through the promotion gate, with a recorded verdict
    assert retrained.tags["gate_decision"] in {"promote", "reject"}
    champion = client.get_model_version_by_alias(MODEL, "champion")
    if retrained.tags["gate_decision"] == "promote":
        assert int(champion.version) >= int(retrained.version)


def test_outcomes_and_learned_parameters(loop: tuple[Settings, str]) -> None:
    settings, _ = loop
    with connect(settings.warehouse_path, read_only=True) as con:
        outcomes = con.execute(
            "select arm, count(*), count(distinct run_date) "
            "from marts.decision_outcomes group by arm"
        ).fetchall()
        arms = {a: (n, d) for a, n, d in outcomes}
        parameters = con.execute(
            "select action, posterior_mean, low, high, n_treated, n_holdout "
            "from marts.policy_parameters where segment is null "
            "qualify row_number() over (partition by action "
            "order by computed_on desc) = 1"
        ).fetchall()
        used = con.execute(
            "select uplift_email from marts.policy_daily order by run_date desc limit 1"
        ).fetchall()[0][0]
        drift = con.execute(
            "select count(*) from marts.drift where kind = 'score'"
        ).fetchall()[0][0]
    assert arms["treated"][0] > 0 and arms["holdout"][0] > 0
    for action, mean, low, high, n_treated, n_holdout in parameters:
        assert low <= mean <= high, action
        assert n_treated >= 0 and n_holdout >= 0
    email = {row[0]: row[1] for row in parameters}["email"]
    # the last decisions used the posterior learned the night before
    assert used == pytest.approx(email, abs=0.02)
    assert drift > 0


def test_the_report_has_its_sections(loop: tuple[Settings, str]) -> None:
    settings, stdout = loop
    report = settings.reports_dir / "loopline_report.html"
    assert report.is_file()
    html = report.read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    assert "data:image/png;base64," in html
    assert str(report) in stdout.replace("\n", "")
    assert "targets" in stdout


def test_status_after_the_loop(loop: tuple[Settings, str]) -> None:
    """``loopline status --json`` reads the loop's Airflow metadata, registry,
    exports and warehouse (in a fresh process, like an operator would)."""
    settings, _ = loop
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "LOOPLINE_"))
    }
    env |= {"LOOPLINE_HOME": str(settings.home)}
    loopline = Path(sys.executable).with_name("loopline")
    done = subprocess.run(
        [str(loopline), "status", "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    status = json.loads(done.stdout)
    with connect(settings.warehouse_path, read_only=True) as con:
        last_day = con.execute("select max(run_date) from marts.decisions").fetchall()
        retrains = con.execute(
            "select count(*) from ops.retrain_events where fired"
        ).fetchall()
    assert status["day"] == last_day[0][0].isoformat()
    runs = status["airflow"]["runs"]
    assert status["airflow"]["available"], status["airflow"]["error"]
    for dag_id in ("loopline_nightly", "loopline_outcomes"):
        assert runs[dag_id]["state"] == "success", dag_id
        assert runs[dag_id]["logical_date"] == status["day"], dag_id
    assert retrains[0][0] > 0 and runs["loopline_retrain"] is not None
    champion = status["champion"]
    assert champion["version"] is not None and champion["age_days"] >= 0
    assert status["queues"]["exported"] is True
    assert set(status["queues"]["rows"]) == {"phone", "voucher", "email", "review"}
    assert status["validation"] and status["last_verdict"] is not None
    # the loop runs loopline_retrain right after each request: none is pending
    assert status["pending_retrain"] is None


def test_the_analyst_copy_is_the_last_run_and_the_guide_runs_on_it(
    loop: tuple[Settings, str],
) -> None:
    settings, _ = loop
    with connect(settings.warehouse_path, read_only=True) as live:
        last = live.execute("select max(run_date) from marts.decisions").fetchone()
        live_counts = {
            f"marts.{name}": live.execute(
                f"select count(*) from marts.{name}"
            ).fetchone()[0]
            for (name,) in live.execute(
                "select table_name from duckdb_tables() where schema_name = 'marts'"
            ).fetchall()
        }
    queries = re.findall(r"```sql\n(.*?)```", GUIDE.read_text(), re.S)
    assert len(queries) == 10
    con = duckdb.connect(str(settings.analytics_path), read_only=True)
    try:
        published = con.execute(
            "select distinct run_date, published_by from ops.publication"
        ).fetchall()
        copied = dict(
            con.execute(
                "select table_name, row_count from ops.publication "
                "where table_name like 'marts.%'"
            ).fetchall()
        )
        for number, query in enumerate(queries, 1):
            rows = con.execute(query).fetchall()
            assert rows, f"query {number} of the analyst guide returned no row"
    finally:
        con.close()
    # the loop's last run published the copy, and nothing wrote the marts after it
    assert last is not None and published == [(last[0], "publish_outcomes")]
    assert copied == live_counts
