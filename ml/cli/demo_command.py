"""``loopline demo`` (the closed loop) and ``loopline report``.

The demo starts from a fresh ``LOOPLINE_HOME``, simulates a history, rebuilds the
marts, trains and promotes the first model, then lives through the loop one day at
a time with the real DAGs in-process (:mod:`loopline_airflow.closed_loop`): the
world reacts to yesterday's queues, ``loopline_nightly`` decides, and
``loopline_outcomes`` learns and requests a retrain when a rule breaches. Partway
through, one segment of the world drifts. At the end it values every night's plan
against the baselines with the simulator's truth, measures the targets, writes the
HTML report and prints a one-screen summary.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ml.config.settings import HOME_CONFIG, Settings, get_settings, load_business_config


@dataclass(frozen=True)
class DemoPlan:
    """The size of a demo run."""

    customers: int
    history_days: int
    loop_days: int
    drift_after: int
    seed: int
    start: date

    @property
    def history_end(self) -> date:
        return self.start + timedelta(days=self.history_days - 1)

    @property
    def loop_start(self) -> date:
        return self.history_end + timedelta(days=1)

    @property
    def loop_end(self) -> date:
        return self.history_end + timedelta(days=self.loop_days)


def _bootstrap_champion(settings: Settings, result: Any) -> str | None:
    """Promote the first model by the logged manual override when its gate said no
    (a first model has no champion to beat; the gate then only compares it with
    the baseline). Returns the override's reason, or None when it was not needed."""
    from ml.prediction.registry import alias_version, promote

    if alias_version(settings, "champion") is not None:
        return None
    version = getattr(result, "model_version", None)
    if version is None:
        return None
    reason = (
        "demo bootstrap: the first model becomes champion so the loop has a model "
        "policy; its gate verdict is kept on the version"
    )
    promote(settings, str(version), reason=reason)
    return reason


def write_report(
    settings: Settings,
    loop_start: date | None = None,
    loop_end: date | None = None,
    progress: bool = True,
) -> tuple[Path, list[dict[str, Any]]]:
    """Value the loop's nights against the baselines (when the simulator's truth
    exists), measure the targets and write the HTML report. Returns its path and
    the targets."""
    from ml.cli.common import console
    from ml.prediction.registry import champion_metrics
    from ml.report.build import EVALUATION_FILE, build_report
    from ml.sim.evaluate import evaluate_range, true_uplift_by_action, truth_available
    from ml.sim.targets import drift_day, measure_targets
    from ml.storage.warehouse import connect, table_exists

    horizon = load_business_config(settings.config_file).horizon_days
    if not settings.warehouse_path.is_file():
        raise typer.BadParameter(
            f"no warehouse at {settings.warehouse_path}: run the nightly DAG first"
        )
    with connect(settings.warehouse_path, read_only=True) as con:
        if not table_exists(con, "marts", "policy_daily"):
            raise typer.BadParameter("nothing decided yet: run the nightly DAG first")
        first, last = con.execute(
            "select min(run_date), max(run_date) from marts.policy_daily"
        ).fetchall()[0]
    loop_start = loop_start or first
    loop_end = loop_end or last
    evaluation = None
    targets: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    if truth_available(settings):
        with console.status("valuing every night's plan against the baselines"):
            evaluation = evaluate_range(settings, loop_start, loop_end)
        settings.reports_dir.mkdir(parents=True, exist_ok=True)
        evaluation.to_parquet(settings.reports_dir / EVALUATION_FILE)
        targets = measure_targets(settings, evaluation, loop_start, loop_end, horizon)
        drift = drift_day(settings)
        if drift is not None and loop_start <= drift <= loop_end:
            events.append({"date": drift, "kind": "drift", "label": "drift starts"})
    with connect(settings.warehouse_path, read_only=True) as con:
        if table_exists(con, "ops", "retrain_events"):
            for day, reasons in con.execute(
                "select day, reasons from ops.retrain_events where fired order by day"
            ).fetchall():
                codes = ",".join(r.split(":", 1)[0] for r in str(reasons).split(" | "))
                events.append({"date": day, "kind": "retrain", "label": codes})
        if table_exists(con, "marts", "scores"):
            versions = con.execute(
                "select model_version, min(run_date) from marts.scores "
                "group by model_version order by 2"
            ).fetchall()
            for version, day in versions[1:]:
                events.append(
                    {"date": day, "kind": "promotion", "label": f"v{version} scores"}
                )
    champion = champion_metrics(settings)
    path = build_report(
        settings,
        evaluation=evaluation,
        events=events or None,
        targets=targets or None,
        champion_test_auc=champion[1].get("roc_auc") if champion else None,
        true_uplift=(
            partial(true_uplift_by_action, settings)
            if truth_available(settings)
            else None
        ),
    )
    return path, targets


def print_targets(targets: list[dict[str, Any]]) -> None:
    from ml.cli.common import console

    table = Table("target", "measured", "goal", "met", "detail", title="targets")
    for t in targets:
        met = t["met"]
        mark = "-" if met is None else ("[green]yes" if met else "[red]no")
        table.add_row(t["name"], t["measured"], t["target"], mark, t["detail"])
    console.print(table)


def demo(
    customers: Annotated[int, typer.Option(help="Customers in the world.")] = 20_000,
    history: Annotated[int, typer.Option(help="Days of history first.")] = 365,
    days: Annotated[int, typer.Option(help="Closed-loop days after it.")] = 120,
    drift_after: Annotated[
        int, typer.Option(help="Loop day on which one segment drifts.")
    ] = 10,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2025-01-01",
    horizon: Annotated[
        int | None,
        typer.Option(help="Label horizon H in days (default: config/loopline.yml)."),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(help="A short loop: fewer customers and days, drift included."),
    ] = False,
) -> None:
    """Fresh home → history → first model → the closed loop through the real DAGs
    (simulate, nightly, outcomes, retrain when triggered) → report and summary."""
    from ml.cli.common import console, init_home, parse_date, print_champion, reset_home

    if quick:
        customers, history, days, drift_after, horizon = QUICK
    plan = DemoPlan(customers, history, days, drift_after, seed, parse_date(start))
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    settings = get_settings()
    began = time.perf_counter()
    console.rule(f"Loopline closed-loop demo in {settings.root}")
    reset_home(settings)
    init_home(settings)
    if horizon is not None:
        settings = with_horizon(settings, horizon, QUICK_TRIGGER if quick else None)
        console.print(f"label horizon H = {horizon} days ({settings.config_file})")
    ok = run_demo(settings, plan)
    path, targets = write_report(settings, plan.loop_start, plan.loop_end)
    console.rule("summary")
    print_champion(settings)
    print_targets(targets)
    console.print(f"report: [bold]{path}[/bold]")
    console.print(
        "MLflow UI: "
        f".venv/bin/mlflow ui --backend-store-uri {settings.mlflow_tracking_uri} "
        "--port 5000  (then open http://127.0.0.1:5000)"
    )
    minutes, seconds = divmod(time.perf_counter() - began, 60)
    console.print(f"demo finished in {int(minutes)} min {seconds:.0f} s")
    if not ok:
        raise typer.Exit(1)


# customers, history days, loop days, drift on loop day, horizon
QUICK = (2000, 330, 12, 1, 7)
# With a 7-day horizon the label is "no purchase next week" (about three quarters of
# the base), and the drift moves calibration more than AUC or any population-wide
# PSI within two weeks; the quick demo tightens the calibration rule so that its
# short loop shows the retrain path (the full demo keeps config/loopline.yml).
QUICK_TRIGGER = {"max_ece": 0.06}
# The demo's drift event: from its day on, customers on the basic plan (about half
# of the base) buy far less often and spend less, and their churn hazard rises: a
# shift the nightly feature snapshots show within days. (Milder shifts, such as the
# default of config/sim.yml, stay below the PSI threshold: purchase rates and
# baskets vary so much between customers that a 20-40 % change in one segment
# barely moves the population's distributions.)
DEMO_DRIFT = {
    "column": "plan",
    "value": "basic",
    "hazard_multiplier": 4.0,
    "spend_multiplier": 0.4,
    "rate_multiplier": 0.3,
}


def with_horizon(
    settings: Settings, horizon: int, trigger: dict[str, Any] | None = None
) -> Settings:
    """Settings whose business config is ``config/loopline.yml`` with another label
    horizon, written to ``LOOPLINE_HOME/config/loopline.yml``: by the one path rule
    of :mod:`ml.config.files` every later reader of this home (the in-process DAG
    tasks, ``loopline report``) reads that copy. The retrain cooldown is capped at
    the horizon; ``trigger`` overrides other rules. An explicit
    ``LOOPLINE_CONFIG_FILE`` elsewhere would win over the copy, so it is refused."""
    import yaml

    data = yaml.safe_load(settings.config_file.read_text()) or {}
    data["horizon_days"] = horizon
    # the cooldown between retrains scales with the horizon
    rules = data.setdefault("retrain_trigger", {})
    rules["cooldown_days"] = min(int(rules.get("cooldown_days", 14)), horizon)
    rules.update(trigger or {})
    path = settings.root / HOME_CONFIG  # later commands on this home read it too
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# config/loopline.yml with horizon_days = {horizon} (loopline demo)\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    chosen = get_settings()
    if chosen.config_file.resolve() != path.resolve():
        raise typer.BadParameter(
            f"LOOPLINE_CONFIG_FILE points to {chosen.config_file}; the demo writes "
            f"its own config to {path}: unset LOOPLINE_CONFIG_FILE to run the demo"
        )
    return chosen


def run_demo(settings: Settings, plan: DemoPlan) -> bool:
    """The demo's steps up to the end of the loop; False when a run failed."""
    from loopline_airflow.closed_loop import LoopDay, run_loop
    from loopline_airflow.runner import Prewarm, configure, send_logs_to

    from ml.cli.common import console, progress_bar
    from ml.cli.error_handling import raise_if_stopped
    from ml.cli.train_commands import print_train_result
    from ml.config.model import load_model_config
    from ml.config.output import active_log
    from ml.ops.day_status import day_status
    from ml.ops.tasks import date_range, deferred_data_docs
    from ml.ops.tasks import rebuild as run_rebuild
    from ml.prediction.train import train
    from ml.sim import load_sim_config, with_row_faults
    from ml.sim import simulate as run_simulation

    configure(settings)
    log = active_log()
    if log is not None:  # Airflow's and the tasks' log lines: to the log file
        send_logs_to(log.open())
    # Airflow's start-up overlaps the history phase (see Prewarm)
    airflow_ready = Prewarm(settings)
    horizon = load_business_config(settings.config_file).horizon_days
    base = load_sim_config()
    drift = (
        base.drift.model_copy(
            update={**DEMO_DRIFT, "start": plan.history_days + plan.drift_after}
        )
        if base.drift is not None
        else None
    )
    config = base.model_copy(
        update={"n_customers": plan.customers, "seed": plan.seed, "drift": drift}
    )
    config = with_row_faults(config, daily_probability=0.05, fraction=0.002)
    console.print(
        f"1/5 simulating {plan.customers:,} customers, {plan.start} → "
        f"{plan.history_end} ({plan.history_days} days of history)"
    )
    run_simulation(
        settings, config, start=plan.start, days=plan.history_days, progress=True
    )
    # training keeps one snapshot a customer every thinning.every_days days, so
    # the history is rebuilt with a snapshot that often: the same examples from a
    # seventh of the feature rows (the loop's nights then add one a day)
    every = load_model_config().thinning.every_days
    console.print(
        f"2/5 rebuilding the marts {plan.start} → {plan.history_end} "
        f"(a feature snapshot every {every} days)"
    )
    with console.status("validating landing and running one dbt build"):
        run_rebuild(plan.start, plan.history_end, every=every, settings=settings)
    console.print(
        f"3/5 training the first model on labels matured by {plan.history_end}"
    )
    with console.status("training, calibrating, logging to MLflow, running the gate"):
        result = train(settings, plan.history_end)
    print_train_result(result)
    override = _bootstrap_champion(settings, result)
    if override:
        console.print(f"   [yellow]{override}[/yellow]")
    drift_on = plan.history_end + timedelta(days=plan.drift_after)
    console.print(
        f"4/5 the closed loop, {plan.loop_start} → {plan.loop_end}: simulate the day "
        "(the world reads yesterday's queues), loopline_nightly, loopline_outcomes, "
        f"loopline_retrain when requested; drift from {drift_on}"
    )
    console.print(f"   {airflow_ready.wait()}")
    ok = True
    with progress_bar() as progress:
        bar = progress.add_task("closed loop", total=plan.loop_days)

        def on_day(day: LoopDay) -> None:
            nonlocal ok
            raise_if_stopped()  # a task run in-process swallows Ctrl-C and SIGTERM
            status = day_status(settings, day.day, horizon)
            line = status.line()
            if day.retrain is not None:
                line += f" → loopline_retrain {'ok' if day.retrain.ok else 'FAILED'}"
            seconds = sum(day.seconds.values())
            failed = [
                str(run.problem)
                for run in (day.nightly, day.outcomes, day.retrain)
                if run is not None and not run.ok
            ]
            if failed:
                ok = False
                line += " [red]FAILED " + "; ".join(failed) + "[/red]"
            progress.console.print(f"{line}  {seconds:4.1f}s")
            progress.advance(bar)

        # the nights' Data Docs are rendered once, after the last night
        with deferred_data_docs(settings, plan.loop_start):
            results = run_loop(
                settings,
                date_range(plan.loop_start, plan.loop_end),
                on_day,
                stop_on_failure=True,
            )
    console.print("5/5 report")
    return ok and len(results) == plan.loop_days


def report(
    start: Annotated[
        str | None, typer.Option(help="First loop day (default: first decision).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last loop day (default: last decision).")
    ] = None,
) -> None:
    """Rebuild reports/loopline_report.html from the warehouse (and, for a
    simulated world, value the plans against the baselines with its truth)."""
    from ml.cli.common import console, parse_date

    settings = get_settings()
    path, targets = write_report(
        settings, parse_date(start) if start else None, parse_date(end) if end else None
    )
    if targets:
        print_targets(targets)
    console.print(f"report: [bold]{path}[/bold]")


def register_commands(app: typer.Typer) -> None:
    """Add ``demo`` and ``report`` to the ``loopline`` app."""
    app.command("demo")(demo)
    app.command("report")(report)
