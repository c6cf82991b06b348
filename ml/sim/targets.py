"""The closed loop's targets, measured against the simulator's truth (demo, report).

:func:`measure_targets` checks, over the loop's post-warm-up days:

* **value**: the true incremental value of the contacts the policy actually sent
  (``loopline_executed``: the treated arm, at the daily budget) is at least
  ``min_vs_ranked`` × that of the probability-ranked baseline and at least
  ``min_vs_oracle`` × that of the oracle that knows each action's true average
  uplift (``oracle_average``), at equal budget and capacities
  (:mod:`ml.sim.evaluate`; the clairvoyant per-customer oracle is shown beside it
  as a ceiling no policy on this data can reach);
* **retrain**: after the world's drift event, the retrain trigger fires within
  ``H + 7`` days; and the realized AUC of the last labelled score dates recovers
  to within 0.02 of its level in the two weeks before the drift;
* **uplift**: each action's 95 % interval, pooled over every matured decision date
  (:func:`ml.feedback.uplift.arm_comparison`), contains the true uplift of the
  same decisions (:func:`ml.sim.evaluate.true_uplift_by_action`).

A target that cannot be measured yet (too few days, no drift) is reported with
``met`` None and the reason, never as met.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from ml.config.settings import Settings
from ml.storage.warehouse import connect, table_exists

MIN_VS_RANKED = 1.2
MIN_VS_ORACLE = 0.7
RETRAIN_SLACK_DAYS = 7
AUC_TOLERANCE = 0.02
PRE_DRIFT_DAYS = 14
RECOVERY_DAYS = 7


def drift_day(settings: Settings) -> date | None:
    """The first day of the world's drift event (from its stored config)."""
    path = settings.truth_dir / "state" / "world.json"
    if not path.is_file():
        return None
    world = json.loads(path.read_text())
    config = world.get("config", world)
    drift = config.get("drift")
    start = world.get("start") or world.get("start_date")
    if not drift or start is None:
        return None
    when = drift.get("start")
    if isinstance(when, int):
        return date.fromisoformat(str(start)[:10]) + timedelta(days=when)
    return date.fromisoformat(str(when)[:10]) if when is not None else None


def _target(
    name: str, measured: str, target: str, met: bool | None, detail: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "measured": measured,
        "target": target,
        "met": met,
        "detail": detail,
    }


def value_targets(evaluation: pd.DataFrame, warm_up_end: date) -> list[dict[str, Any]]:
    """The value ratios over the evaluated days after ``warm_up_end``."""
    if evaluation is None or evaluation.empty:
        return [
            _target("value vs probability-ranked", "-", f">= {MIN_VS_RANKED}x", None),
            _target("value vs oracle (average)", "-", f">= {MIN_VS_ORACLE:.0%}", None),
        ]
    days = pd.to_datetime(evaluation["run_date"]).dt.date
    after = evaluation[days > warm_up_end]
    mine = float(after["value_loopline_executed"].sum())
    ranked = float(after["value_probability_ranked"].sum())
    oracle = float(after["value_oracle_average"].sum())
    ceiling = float(after["value_oracle"].sum())
    detail = f"{len(after)} days after {warm_up_end}: policy {mine:,.0f}, "
    detail += f"probability-ranked {ranked:,.0f}, oracle (true average uplift) "
    detail += f"{oracle:,.0f}, clairvoyant per-customer oracle {ceiling:,.0f}"
    vs_ranked = mine / ranked if ranked > 0 else float("nan")
    vs_oracle = mine / oracle if oracle > 0 else float("nan")
    beats_ranked: bool | None
    if np.isfinite(vs_ranked):
        shown_ranked = f"{vs_ranked:.2f}x"
        beats_ranked = bool(vs_ranked >= MIN_VS_RANKED)
    else:
        # a baseline that lost value: any positive policy value beats it
        shown_ranked = f"{mine:,.0f} vs {ranked:,.0f}"
        beats_ranked = bool(mine > 0 and mine > ranked)
    return [
        _target(
            "value vs probability-ranked",
            shown_ranked,
            f">= {MIN_VS_RANKED}x",
            beats_ranked,
            detail,
        ),
        _target(
            "value vs oracle (average)",
            f"{vs_oracle:.0%}" if np.isfinite(vs_oracle) else "oracle <= 0",
            f">= {MIN_VS_ORACLE:.0%}",
            bool(vs_oracle >= MIN_VS_ORACLE) if np.isfinite(vs_oracle) else None,
            detail,
        ),
    ]


def retrain_targets(
    settings: Settings, drift: date | None, horizon: int
) -> list[dict[str, Any]]:
    """Whether a retrain was requested within H + 7 days of the drift, and whether
    the realized AUC came back."""
    deadline = f"<= {horizon + RETRAIN_SLACK_DAYS} days after the drift"
    recovery = f"within {AUC_TOLERANCE} of the pre-drift AUC"
    if drift is None:
        return [
            _target("retrain after drift", "no drift", deadline, None),
            _target("AUC recovery", "no drift", recovery, None),
        ]
    with connect(settings.warehouse_path, read_only=True) as con:
        fired = (
            con.execute(
                "select min(day) from ops.retrain_events where fired and day >= ?",
                [drift],
            ).fetchall()[0][0]
            if table_exists(con, "ops", "retrain_events")
            else None
        )
        perf = (
            con.execute(
                "select run_date, roc_auc, model_version from marts.model_performance "
                "where roc_auc is not null order by run_date"
            ).df()
            if table_exists(con, "marts", "model_performance")
            else pd.DataFrame(columns=["run_date", "roc_auc", "model_version"])
        )
    targets = []
    if fired is None:
        targets.append(_target("retrain after drift", "not requested", deadline, False))
    else:
        lag = (fired - drift).days
        targets.append(
            _target(
                "retrain after drift",
                f"{lag} days (on {fired})",
                deadline,
                lag <= horizon + RETRAIN_SLACK_DAYS,
            )
        )
    days = pd.to_datetime(perf["run_date"]).dt.date
    before = perf[(days < drift) & (days >= drift - timedelta(days=PRE_DRIFT_DAYS))]
    after = perf[days >= (fired or drift)]
    last = after.tail(RECOVERY_DAYS)
    if before.empty or len(last) < RECOVERY_DAYS:
        targets.append(
            _target(
                "AUC recovery",
                f"{len(last)} labelled score dates after the retrain",
                recovery,
                None,
                "needs more nights: labels of a score date mature H days later",
            )
        )
    else:
        pre = float(before["roc_auc"].mean())
        post = float(last["roc_auc"].mean())
        versions = ", ".join(sorted(set(last["model_version"].dropna().astype(str))))
        targets.append(
            _target(
                "AUC recovery",
                f"{post:.3f} vs {pre:.3f} before the drift",
                recovery,
                post >= pre - AUC_TOLERANCE,
                f"last {len(last)} labelled score dates (model {versions})",
            )
        )
    return targets


def uplift_targets(settings: Settings, start: date, end: date) -> list[dict[str, Any]]:
    """Per action: does the pooled 95 % interval contain the true uplift?"""
    from ml.feedback.uplift import arm_comparison
    from ml.sim.evaluate import true_uplift_by_action

    with connect(settings.warehouse_path, read_only=True) as con:
        if not table_exists(con, "marts", "decision_outcomes"):
            return [_target("uplift coverage", "no matured outcomes", "95% CI", None)]
        outcomes = con.execute(
            "select arm, action, retained, realized_spend, cost, expected_ev "
            "from marts.decision_outcomes where run_date between ? and ? "
            "and is_randomized",
            [start, end],
        ).df()
    if outcomes.empty:
        return [_target("uplift coverage", "no matured outcomes", "95% CI", None)]
    measured = arm_comparison(outcomes, ["action"]).set_index("action")
    truth = true_uplift_by_action(settings, start, end).set_index("action")
    targets = []
    for action in measured.index:
        row = measured.loc[action]
        low, high = float(row["uplift_low"]), float(row["uplift_high"])
        true = (
            float(truth.loc[action, "true_uplift"]) if action in truth.index else np.nan
        )
        covered = bool(low <= true <= high) if np.isfinite(true) else None
        targets.append(
            _target(
                f"uplift {action} covered",
                f"{float(row['uplift']):.3f} [{low:.3f}, {high:.3f}]",
                f"contains true {true:.3f}",
                covered,
                f"{int(row['n_treated'])} treated, {int(row['n_holdout'])} held out",
            )
        )
    return targets


def measure_targets(
    settings: Settings,
    evaluation: pd.DataFrame | None,
    loop_start: date,
    loop_end: date,
    horizon: int,
) -> list[dict[str, Any]]:
    """Every target of the closed loop (see the module docstring). The warm-up is
    the first ``horizon`` days of the loop: until then no decision has matured and
    the policy runs on its priors."""
    warm_up_end = loop_start + timedelta(days=horizon - 1)
    return [
        *value_targets(
            evaluation if evaluation is not None else pd.DataFrame(), warm_up_end
        ),
        *retrain_targets(settings, drift_day(settings), horizon),
        *uplift_targets(settings, loop_start, loop_end),
    ]
