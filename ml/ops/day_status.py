"""One day of the loop at a glance, read from ``ops.runs`` and the marts.

:func:`day_status` gathers what the closed-loop demo prints per simulated day:
the landing gate's verdict, the champion that scored, the queue sizes, the
realized AUC of the decisions that matured that day, and the retrain verdict.
It only reads (read-only connection), so it can run between any two tasks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import duckdb

from ml.config.settings import Settings
from ml.storage.warehouse import connect, table_exists


@dataclass
class DayStatus:
    """The loop's state after the runs of ``day``."""

    day: date
    validation: str = "not run"
    quarantined: int = 0
    policy_mode: str | None = None
    model_version: str | None = None
    queues: dict[str, int] = field(default_factory=dict)
    review: int = 0
    realized_auc: float | None = None
    matured: int = 0
    max_psi: float | None = None
    retrain: str = "-"
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["day"] = self.day.isoformat()
        return data

    def line(self) -> str:
        """One status line for the console."""
        queues = " ".join(f"{k}={v}" for k, v in sorted(self.queues.items()))
        auc = f"{self.realized_auc:.3f}" if self.realized_auc is not None else "-"
        psi = f"{self.max_psi:.2f}" if self.max_psi is not None else "-"
        model = (
            f"v{self.model_version}"
            if self.model_version
            else (self.policy_mode or "-")
        )
        return (
            f"{self.day} gate={self.validation}"
            f"{f' (q{self.quarantined})' if self.quarantined else ''} "
            f"model={model} queues: {queues or '-'}; review={self.review} "
            f"auc={auc} (n={self.matured}) psi={psi} retrain={self.retrain}"
        )


def _run_detail(
    con: duckdb.DuckDBPyConnection, day: date, step: str
) -> tuple[str, dict[str, Any]] | None:
    rows = con.execute(
        "select status, detail from ops.runs where run_date = ? and step = ?",
        [day, step],
    ).fetchall()
    if not rows:
        return None
    status, detail = rows[0]
    return str(status), json.loads(detail) if detail else {}


def day_status(settings: Settings, day: date, horizon_days: int) -> DayStatus:
    """The :class:`DayStatus` of ``day`` (``horizon_days``: the label horizon, so
    the decisions of ``day - H`` matured on ``day``)."""
    from datetime import timedelta

    status = DayStatus(day)
    if not settings.warehouse_path.exists():
        return status
    with connect(settings.warehouse_path, read_only=True) as con:
        if not table_exists(con, "ops", "runs"):
            return status
        gate = _run_detail(con, day, "validate_landing")
        if gate is not None:
            state, detail = gate
            status.validation = "ok" if state == "success" else state
            status.quarantined = int(
                sum(
                    sum((t.get("quarantined") or {}).values())
                    for t in (detail.get("tables") or {}).values()
                    if isinstance(t, dict)
                )
            )
        decided = _run_detail(con, day, "decide")
        if decided is not None:
            _, detail = decided
            status.policy_mode = detail.get("policy_mode")
            status.model_version = detail.get("model_version")
            exports = detail.get("exports") or {}
            status.queues = {
                k.removesuffix(".csv"): int(v)
                for k, v in exports.items()
                if k.endswith(".csv") and k != "review.csv"
            }
            status.review = int((detail.get("arms") or {}).get("review", 0) or 0)
        matured = day - timedelta(days=horizon_days)
        if table_exists(con, "marts", "model_performance"):
            rows = con.execute(
                "select roc_auc, n from marts.model_performance where run_date = ?",
                [matured],
            ).fetchall()
            if rows and rows[0][0] is not None:
                status.realized_auc = float(rows[0][0])
                status.matured = int(rows[0][1] or 0)
        if table_exists(con, "marts", "drift"):
            rows = con.execute(
                "select max(psi) from marts.drift where run_date = ? and psi = psi",
                [day],
            ).fetchall()
            if rows and rows[0][0] is not None:
                status.max_psi = float(rows[0][0])
        if table_exists(con, "ops", "retrain_events"):
            rows = con.execute(
                "select fired, reasons from ops.retrain_events where day = ?", [day]
            ).fetchall()
            if rows:
                fired, reasons = rows[0]
                status.retrain = (
                    "REQUESTED ("
                    + ",".join(
                        r.split(":", 1)[0] for r in str(reasons).split(" | ") if r
                    )
                    + ")"
                    if fired
                    else "no"
                )
    return status
