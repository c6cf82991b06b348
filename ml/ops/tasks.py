"""The steps of the nightly run, one function per Airflow task.

Each function takes the run's logical date, does its work on that date's partition
only, records itself in ``ops.runs`` with the business-config hash, logs one
structured line with its counts (:func:`log_step`; it shows in the Airflow task
log), and returns a small JSON-able summary (it travels through XCom, so it stays
small).

The retrain steps (:func:`build_training_set` … :func:`promote`) take the training
date (*as_of*) instead and return the summaries ``loopline_retrain`` passes between
its tasks; they record themselves in ``ops.runs`` too, with *as_of* as the run date
and the task's name as the step (:data:`RETRAIN_STEPS`).

Every step may run again for the same date: it replaces what it wrote for that date
(its partition, its ``ops.runs`` row), so an Airflow retry or a cleared task is
safe. :func:`is_data_fault` tells the errors a retry cannot cure (a failed gate, a
partition still missing at the sensor's last look) from transient ones (a warehouse
another process holds); the DAGs fail the former at once.

A step is recorded as ``running`` with its process id and host when it starts
(:func:`step_run`) and replaced by its outcome when it ends, ``failed`` when it
raises. A step killed with ``kill -9`` records nothing more, so its row keeps
saying ``running``; ``loopline status`` then finds that its process is gone.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb

from ml.config.settings import Settings, get_settings, load_business_config
from ml.config.steplog import log_step
from ml.contract.schema import TABLES
from ml.storage.landing_files import list_partition_dates, partition_files
from ml.storage.procs import hostname
from ml.storage.warehouse import connect, ensure_schemas, hold, table_exists

logger = logging.getLogger(__name__)
RUNNING = "running"
# The ops.runs steps of loopline_retrain (run date: the training as_of date); each
# is named after its task, as the training functions name their log lines.
RETRAIN_STEPS = (
    "build_training_set",
    "train_candidates",
    "evaluate",
    "gate",
    "promote",
)
# Errors that say the data (or the state it left) is wrong, not that something was
# briefly unavailable: running the step again on the same inputs fails the same
# way, so the DAGs fail these at once instead of retrying them. By dotted class
# name (a class or any of its bases), so that nothing is imported to match them.
DATA_FAULTS = (
    # a gate failed: nothing past it may run on this data
    "ml.data.validation.errors.GateError",
    # a required partition still missing at the sensor's last look
    "ml.ops.tasks.LandingNotReadyError",
    # the champion's inputs no longer match the feature mart
    "ml.prediction.score.ScoreSchemaError",
    # the run date has no feature snapshot to decide on
    "ml.decision.decide_step.DecideError",
    # the log holds too few days to train on
    "ml.prediction.training.HistoryTooShortError",
)


class LandingNotReadyError(RuntimeError):
    """A partition that is due for the run date has not landed (or is empty)."""


def is_data_fault(error: BaseException) -> bool:
    """Whether ``error`` is one of :data:`DATA_FAULTS` (a retry cannot cure it)."""
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(error).__mro__}
    return not names.isdisjoint(DATA_FAULTS)


@dataclass
class StepSummary:
    """What one step did; stored in ``ops.runs.detail`` and returned to XCom."""

    run_date: str
    step: str
    counts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> datetime:
    """The current time, naive UTC (how ``ops.runs`` stores times)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _write_run(
    settings: Settings,
    run_date: date,
    step: str,
    status: str,
    detail: dict[str, Any],
) -> str:
    """Replace the ``ops.runs`` row of (run_date, step); return the config hash.

    The row carries this process's pid and host; a finished step keeps the
    ``started_at`` of its ``running`` row by this process, if there is one.
    """
    config_hash = load_business_config(settings.config_file).config_hash
    pid, host, now = os.getpid(), hostname(), _now()
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        started = con.execute(
            "select started_at from ops.runs where run_date = ? and step = ? "
            "and status = ? and pid = ? and host = ?",
            [run_date, step, RUNNING, pid, host],
        ).fetchone()
        con.execute(
            "delete from ops.runs where run_date = ? and step = ?", [run_date, step]
        )
        con.execute(
            "insert into ops.runs (run_date, step, status, config_hash, detail, pid, "
            "host, started_at, finished_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_date,
                step,
                status,
                config_hash,
                json.dumps(detail, default=str),
                pid,
                host,
                now if status == RUNNING or started is None else started[0],
                None if status == RUNNING else now,
            ],
        )
    return config_hash


def record_run(
    settings: Settings, run_date: date, step: str, status: str, detail: dict[str, Any]
) -> None:
    """Replace the ``ops.runs`` row of (run_date, step) with this outcome, and log
    it (:func:`log_step`)."""
    config_hash = _write_run(settings, run_date, step, status, detail)
    log_step(step, run_date, status, detail, config_hash)


@contextmanager
def step_run(settings: Settings, run_date: date, step: str) -> Iterator[None]:
    """Record ``step`` of ``run_date`` as ``running`` by this process (pid, host,
    start time) for the block; when the block raises, record it as ``failed``
    with the error (when even that cannot be written, for example because
    another process holds the warehouse, the error itself still stands). The
    block records the success itself, with its counts."""
    _write_run(settings, run_date, step, RUNNING, {})
    try:
        yield
    except BaseException as exc:
        try:
            record_run(settings, run_date, step, "failed", {"error": str(exc)})
        except Exception:
            logger.warning("could not record the failure of %s", step, exc_info=True)
        raise


def look_for_landing(
    run_date: date, settings: Settings | None = None, *, last_look: bool = True
) -> StepSummary | None:
    """One look for the run date's landing partitions: the summary (files per
    table, recorded in ``ops.runs``) once every required table has a non-empty
    partition for ``run_date``.

    Optional tables (action results, review decisions, tickets...) may be absent on
    a given day. A missing required partition is a late partition: while another
    look will come (``last_look`` False, the nightly sensor), this says so in the
    log and returns None; at the last look it raises
    :class:`LandingNotReadyError`, and the date can be cleared and rerun once the
    data lands.
    """
    settings = settings or get_settings()
    cfg = load_business_config(settings.config_file)
    files = {
        table: [p.name for p in partition_files(settings.landing_dir, table, run_date)]
        for table in TABLES
    }
    missing = [t for t in cfg.validation.required_tables if not files[t]]
    if missing:
        where = ", ".join(
            f"{settings.landing_dir / t / ('dt=' + run_date.isoformat())}"
            for t in missing
        )
        if not last_look:
            logger.info(
                "landing partition not ready for %s: required table(s) %s have no "
                "file under %s yet; looking again later",
                run_date,
                ", ".join(missing),
                where,
            )
            return None
        raise LandingNotReadyError(
            f"landing partition not ready for {run_date}: required table(s) "
            f"{', '.join(missing)} have no file under {where}. The partition may be "
            "late: rerun this date once it has landed."
        )
    summary = StepSummary(
        run_date.isoformat(), "check_landing", {t: len(f) for t, f in files.items()}
    )
    record_run(settings, run_date, "check_landing", "success", summary.counts)
    return summary


def check_landing(run_date: date, settings: Settings | None = None) -> StepSummary:
    """Check that every required table has a non-empty partition for ``run_date``
    (:func:`look_for_landing` at its last look: a missing partition raises
    :class:`LandingNotReadyError` at once)."""
    summary = look_for_landing(run_date, settings, last_look=True)
    if summary is None:  # a last look returns a summary or raises
        raise AssertionError("unreachable")
    return summary


def validate_landing(run_date: date, settings: Settings | None = None) -> StepSummary:
    """Gate the day's landing partitions with GX; quarantine bad rows; load raw."""
    from ml.data.validation import validate_landing as _validate

    settings = settings or get_settings()
    with (
        hold(settings.warehouse_path),
        step_run(settings, run_date, "validate_landing"),
    ):
        try:
            report = _validate(settings, run_date, data_docs=False)
        except Exception:
            if settings.data_docs == "nightly":
                render_gate_docs(run_date, settings)
            raise
        counts = report.as_counts()
        record_run(settings, run_date, "validate_landing", "success", counts)
    return StepSummary(run_date.isoformat(), "validate_landing", counts)


def render_gate_docs(run_date: date, settings: Settings | None = None) -> int:
    """Render the GX Data Docs pages of the run date's gate results (landing and
    marts) in one pass; return how many results were rendered.

    Rendering once per night costs one pass over the index instead of one per
    gate. The landing gate calls this only when it fails (so the failure can be
    read at once); the mart gate always calls it, after its own suite ran, so its
    pass renders the landing gate's pages too. A rendering error is logged and
    never fails the run.
    """
    from ml.data.validation.context import render_run_docs

    settings = settings or get_settings()
    keep_days = load_business_config(settings.config_file).validation.data_docs_days
    return render_run_docs(settings, run_date, run_date, keep_days)


DATA_DOCS_ENV = "LOOPLINE_DATA_DOCS"


@contextmanager
def deferred_data_docs(settings: Settings, start: date) -> Iterator[None]:
    """Run many nights in this process with their Data Docs rendered once, at the
    end (also when a night fails): the tasks see ``LOOPLINE_DATA_DOCS=deferred``
    (``Settings.data_docs``) inside the block. The pages then cover the results
    of ``start`` up to the last run date recorded, within the docs' keep window.
    """
    previous = os.environ.get(DATA_DOCS_ENV)
    os.environ[DATA_DOCS_ENV] = "deferred"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(DATA_DOCS_ENV, None)
        else:
            os.environ[DATA_DOCS_ENV] = previous
        render_deferred_docs(settings, start)


def render_deferred_docs(settings: Settings, start: date) -> int:
    """Render, in one pass, the Data Docs pages of every gate result from
    ``start`` to the last run date in ``ops.runs``, within the docs' keep window;
    return how many results were rendered (0 when nothing ran)."""
    from ml.data.validation.context import render_nights_docs

    if not settings.warehouse_path.is_file():
        return 0
    with (
        suppress(duckdb.IOException),
        connect(settings.warehouse_path, read_only=True) as con,
    ):
        if not table_exists(con, "ops", "runs"):
            return 0
        row = con.execute(
            "select max(run_date) from ops.runs where run_date >= ?", [start]
        ).fetchone()
    end = row[0] if row else None
    if end is None:
        return 0
    keep_days = load_business_config(settings.config_file).validation.data_docs_days
    first = max(start, end - timedelta(days=keep_days - 1))
    return render_nights_docs(settings, first, end, keep_days)


def build_marts(run_date: date, settings: Settings | None = None) -> StepSummary:
    """One incremental ``dbt build`` for the run date (staging → marts + dbt tests)."""
    from ml.data.dbt import dbt_build

    settings = settings or get_settings()
    with step_run(settings, run_date, "dbt_build"):
        result = dbt_build(settings, start=run_date, end=run_date)
        counts = result.as_counts()
        record_run(settings, run_date, "dbt_build", "success", counts)
    return StepSummary(run_date.isoformat(), "dbt_build", counts)


def validate_marts(run_date: date, settings: Settings | None = None) -> StepSummary:
    """Gate the feature snapshot of the run date (volume, nulls, ranges)."""
    from ml.data.validation import validate_marts as _validate

    settings = settings or get_settings()
    with hold(settings.warehouse_path), step_run(settings, run_date, "validate_marts"):
        try:
            report = _validate(settings, run_date, data_docs=False)
        finally:
            # the night's landing and mart results, rendered in one pass (or at
            # the end of a many-night command: render_deferred_docs)
            if settings.data_docs == "nightly":
                render_gate_docs(run_date, settings)
        counts = report.as_counts()
        record_run(settings, run_date, "validate_marts", "success", counts)
    return StepSummary(run_date.isoformat(), "validate_marts", counts)


def score(run_date: date, settings: Settings | None = None) -> StepSummary:
    """Score the run date's feature snapshot with the champion into marts.scores.

    Without a champion nothing is scored, which is recorded plainly; the policy then
    falls back to its rules.
    """
    from ml.prediction.score import score as score_snapshot

    settings = settings or get_settings()
    with hold(settings.warehouse_path), step_run(settings, run_date, "score"):
        counts = score_snapshot(settings, run_date).as_dict()
        record_run(settings, run_date, "score", "success", counts)
    return StepSummary(run_date.isoformat(), "score", counts)


def decide(run_date: date, settings: Settings | None = None) -> StepSummary:
    """Turn the run date's scores into decisions, the review queue and the action
    queue exports (model policy, or the rule fallback when the scores cannot be
    trusted)."""
    from ml.action.exports import export_decided
    from ml.decision.decide_step import decide as decide_run_date

    settings = settings or get_settings()
    with hold(settings.warehouse_path), step_run(settings, run_date, "decide"):
        counts = export_decided(settings, decide_run_date(settings, run_date)).as_dict()
        record_run(settings, run_date, "decide", "success", counts)
    return StepSummary(run_date.isoformat(), "decide", counts)


def publish(
    run_date: date,
    settings: Settings | None = None,
    step: str = "publish",
    full: bool = False,
) -> StepSummary:
    """Write the analyst copy (``analytics.duckdb``) from the warehouse and swap it
    in atomically: the last task of the nightly run. Analysts and ``loopline sql``
    read that copy, never the live warehouse, so they never block a writer. Only
    the partitions that changed are written, unless ``full`` (see
    :mod:`ml.analytics.publish`)."""
    from ml.analytics.publish import publish_analytics

    settings = settings or get_settings()
    # When another process holds the warehouse, not even the start can be
    # recorded: the publish's own error (it cannot read the warehouse) says why.
    with suppress(duckdb.IOException):
        _write_run(settings, run_date, step, RUNNING, {})
    try:
        summary = publish_analytics(settings, run_date, published_by=step, full=full)
    except Exception as exc:
        with suppress(duckdb.IOException):
            record_run(settings, run_date, step, "failed", {"error": str(exc)})
        raise
    counts = summary.as_dict()
    record_run(settings, run_date, step, "success", counts)
    return StepSummary(run_date.isoformat(), step, counts)


def publish_outcomes(run_date: date, settings: Settings | None = None) -> StepSummary:
    """:func:`publish` as the last task of the feedback run, so the analyst copy
    carries that date's outcome, drift and policy-learning marts (recorded as step
    ``publish_outcomes``)."""
    return publish(run_date, settings, step="publish_outcomes")


def nightly_decided(run_date: date, settings: Settings | None = None) -> bool:
    """Whether the nightly ``decide`` of ``run_date`` has succeeded (``ops.runs``).

    The feedback run of ``run_date`` needs that date's decisions and scores; its
    first task waits on this (a sensor that looks again later), and says why it
    waits in the task log.
    """
    settings = settings or get_settings()
    rows: list[tuple[Any, ...]] = []
    if settings.warehouse_path.exists():
        with connect(settings.warehouse_path, read_only=True) as con:
            if table_exists(con, "ops", "runs"):
                rows = con.execute(
                    "select status from ops.runs "
                    "where run_date = ? and step = 'decide'",
                    [run_date],
                ).fetchall()
    if rows and rows[0][0] == "success":
        return True
    logger.info(
        "the nightly run of %s has not decided yet (no successful 'decide' in "
        "ops.runs); run loopline_nightly for this date; looking again later",
        run_date,
    )
    return False


def outcomes(run_date: date, settings: Settings | None = None) -> StepSummary:
    """Join the decisions that mature on ``run_date`` with what happened."""
    from ml.feedback.outcomes import join_outcomes

    settings = settings or get_settings()
    with hold(settings.warehouse_path), step_run(settings, run_date, "join_outcomes"):
        counts = join_outcomes(settings, run_date).as_dict()
        record_run(settings, run_date, "join_outcomes", "success", counts)
    return StepSummary(run_date.isoformat(), "join_outcomes", counts)


def drift(run_date: date, settings: Settings | None = None) -> StepSummary:
    """PSI of the run date's features and scores against the model's reference."""
    from ml.feedback.drift import compute_drift

    settings = settings or get_settings()
    with hold(settings.warehouse_path), step_run(settings, run_date, "drift"):
        counts = compute_drift(settings, run_date).as_dict()
        record_run(settings, run_date, "drift", "success", counts)
    return StepSummary(run_date.isoformat(), "drift", counts)


def learn_policy(run_date: date, settings: Settings | None = None) -> StepSummary:
    """Update each action's uplift posterior; the next run's policy uses it."""
    from ml.feedback.learning import update_policy_parameters

    settings = settings or get_settings()
    with hold(settings.warehouse_path), step_run(settings, run_date, "learn_policy"):
        table = update_policy_parameters(settings, run_date)
        action_rows = table[table["segment"].isna()]
        counts = {
            "rows": len(table),
            "changed": int(table["changed"].sum()),
            "posterior_mean": {
                str(a): round(float(m), 4)
                for a, m in zip(
                    action_rows["action"], action_rows["posterior_mean"], strict=True
                )
            },
        }
        record_run(settings, run_date, "learn_policy", "success", counts)
    return StepSummary(run_date.isoformat(), "learn_policy", counts)


def retrain_check(run_date: date, settings: Settings | None = None) -> dict[str, Any]:
    """Apply the retrain rules; the verdict (with MLflow tags) for the DAG."""
    from ml.feedback.retrain_check import check_retrain

    settings = settings or get_settings()
    with hold(settings.warehouse_path), step_run(settings, run_date, "retrain_check"):
        detail = check_retrain(settings, run_date).as_dict()
        record_run(settings, run_date, "retrain_check", "success", detail)
    return detail


def _retrain_step(
    settings: Settings, as_of: date, step: str, run: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run one retrain step for ``as_of`` and record it in ``ops.runs``; return its
    summary (what XCom carries to the next task).

    The training functions log their own step line, so the outcome is only
    written here (:func:`step_run` records and logs a failure). The warehouse is
    opened only to write the row, never held: the training reads it itself.
    """
    with step_run(settings, as_of, step):
        summary = run()
        _write_run(settings, as_of, step, "success", summary)
    return summary


def build_training_set(
    requested: str | None,
    logical: str | None,
    run_after: datetime | None,
    trigger: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The first step of a retrain: resolve its training date (*as_of*: the
    ``requested`` date, else the trigger's ``day``, else the ``logical`` date, else
    the day the run was scheduled after; see
    :func:`ml.prediction.training.resolve_as_of`) and write its training set.

    Returns the training set's summary plus ``trigger_tags``, the trigger's
    MLflow tags (empty for a run without one).
    """
    from ml.prediction import training

    settings = settings or get_settings()
    trigger = trigger or {}
    as_of = training.resolve_as_of(
        requested, logical, run_after, triggered_on=trigger.get("day")
    )
    tags = trigger.get("tags") or {}
    return _retrain_step(
        settings,
        as_of,
        "build_training_set",
        lambda: (
            training.build_training_set(settings, as_of).as_dict()
            | {"trigger_tags": tags}
        ),
    )


def _as_of(training_set: dict[str, Any]) -> date:
    return date.fromisoformat(str(training_set["as_of"]))


def train_candidates(
    training_set: dict[str, Any], settings: Settings | None = None
) -> dict[str, Any]:
    """Fit both candidates on the training set of :func:`build_training_set`'s
    summary and log them to a new MLflow run (with the trigger's tags)."""
    from ml.prediction import training

    settings = settings or get_settings()
    return _retrain_step(
        settings,
        _as_of(training_set),
        "train_candidates",
        lambda: training.train_candidates(
            settings, training_set["path"], tags=training_set.get("trigger_tags")
        ).as_dict(),
    )


def evaluate(
    training_set: dict[str, Any],
    candidates: dict[str, Any],
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Test-window metrics, plots and the model card of the candidates' run; the
    model is registered as the challenger."""
    from ml.prediction import training

    settings = settings or get_settings()
    return _retrain_step(
        settings,
        _as_of(training_set),
        "evaluate",
        lambda: training.evaluate(
            settings,
            training_set["path"],
            candidates["run_id"],
            candidates["model_uri"],
            candidates["baseline_uri"],
        ).as_dict(),
    )


def gate(
    training_set: dict[str, Any],
    evaluation: dict[str, Any],
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The challenger against the champion on the same test window; the decision."""
    from ml.prediction import training

    settings = settings or get_settings()
    return _retrain_step(
        settings,
        _as_of(training_set),
        "gate",
        lambda: training.gate(
            settings,
            training_set["path"],
            evaluation["run_id"],
            evaluation["version"],
        ).as_dict(),
    )


def promote(
    training_set: dict[str, Any],
    decision: dict[str, Any],
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Move the champion alias to the gated version if the gate said so."""
    from ml.prediction import training

    settings = settings or get_settings()
    return _retrain_step(
        settings,
        _as_of(training_set),
        "promote",
        lambda: training.promote(settings, decision["version"]).as_dict(),
    )


def first_landed_day(settings: Settings, end: date) -> date | None:
    """The earliest day on or before ``end`` with a landing partition of any table."""
    days = [
        day
        for table in TABLES
        for day in list_partition_dates(settings.landing_dir, table)[:1]
        if day <= end
    ]
    return min(days) if days else None


def rebuild(
    start: date,
    end: date,
    every: int = 1,
    settings: Settings | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Validate and load the landing history up to ``end``, then build the marts'
    snapshots for ``start`` … ``end``.

    This is the bulk path used for warm-up history and imported data: one gate pass
    and one ``dbt build`` (full refresh), instead of one nightly run per day. It
    gives the same rows as the nightly runs would.

    ``start`` is the first feature snapshot, not the first day of data: the gate
    loads every landed day from the first one, so customers who first appeared
    before ``start`` are known to it and the snapshot of ``start`` sees its whole
    look-back, exactly as the nightly run of ``start`` would. The landing history is
    gated a chunk of days at a time (``validate_landing_history``) and the marts
    built a chunk of snapshot dates at a time, so memory follows the chunk; each
    chunk is announced through ``on_stage`` (a progress line).
    """
    from ml.data.dbt import rebuild as dbt_rebuild
    from ml.data.validation import validate_landing_history

    settings = settings or get_settings()
    if end < start:
        raise ValueError(f"end {end} lies before start {start}")
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
    with step_run(settings, end, "rebuild"):
        first = first_landed_day(settings, end)
        load_from = start if first is None else min(start, first)
        landing = validate_landing_history(
            settings,
            load_from,
            end,
            on_chunk=None
            if on_stage is None
            else lambda a, b: on_stage(f"gating and loading landing {a} → {b}"),
        )
        result = dbt_rebuild(
            settings,
            start,
            end,
            every=every,
            on_chunk=None
            if on_stage is None
            else lambda a, b: on_stage(f"dbt build of the snapshots {a} → {b}"),
        )
        detail = {
            "landing": landing.as_counts(),
            "landing_from": load_from.isoformat(),
            "marts": result.as_counts(),
        }
        record_run(settings, end, "rebuild", "success", detail)
    return detail


def date_range(start: date, end: date) -> list[date]:
    """Inclusive list of days from ``start`` to ``end``."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def parse_ds(ds: str | None) -> date:
    """The logical date Airflow passes as ``ds`` (YYYY-MM-DD)."""
    if not ds:
        raise ValueError("the task needs its logical date (ds)")
    return date.fromisoformat(ds)
