"""The retrain trigger: configurable rules over the champion's realized history.

:func:`evaluate_trigger` is a pure function of (history, champion test AUC, today's
drift report, today, last retrain, config). It fires when one of three rules
breaches and nothing blocks it:

* **decay**: realized ROC AUC below ``champion_test_auc − auc_drop`` on at least
  ``k`` of the last ``n`` score dates (up to ``today``). Only score dates with at
  least ``min_labels`` matured labels and a defined AUC count; when fewer than ``k``
  of the last ``n`` dates have enough labels there is no decay verdict, and that is
  recorded in ``blocked``.
* **drift**: PSI above ``psi_threshold`` on the score, or on a key feature
  (``psi_features``; empty means any feature). Drift needs no labels, so it is how
  a shift is caught before the horizon has passed.
* **calibration**: ECE above ``max_ece`` on the latest of the last ``n`` score dates
  with enough labels (blocked like decay when there is none).

A retrain less than ``cooldown_days`` ago blocks firing; the rules are still
evaluated, so ``reasons`` and ``evidence`` show what would have fired. Every
string in ``reasons`` and ``blocked`` starts with its rule's code and a colon
(``decay:``, ``drift:``, ``calibration:``; blocked: ``labels:``, ``champion:``,
``cooldown:``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from ml.config.retrain import TriggerConfig as TriggerConfig

if TYPE_CHECKING:
    # pandas loads with the first evaluation
    import pandas as pd

HISTORY_COLUMNS = ("score_date", "roc_auc", "ece", "n_labels")


@dataclass
class TriggerDecision:
    """Whether to request a retrain, why, and what stopped it.

    ``reasons`` lists the breached rules (also when blocked), ``blocked`` what
    withheld a verdict or the firing, ``evidence`` the figures behind both
    (JSON-serializable).
    """

    fire: bool
    reasons: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def reason_codes(self) -> list[str]:
        """The rule codes of ``reasons`` (``decay``, ``drift``, ``calibration``)."""
        return [r.split(":", 1)[0] for r in self.reasons]

    def tags(self) -> dict[str, str]:
        """Short string tags for the retrain run in MLflow."""
        return {
            "trigger.fire": str(self.fire).lower(),
            "trigger.reasons": ",".join(self.reason_codes),
            "trigger.detail": " | ".join(self.reasons)[:5000],
            "trigger.blocked": " | ".join(self.blocked)[:5000],
        }


def _as_date(value: Any) -> date:
    import pandas as pd

    return pd.Timestamp(value).date()


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _window(history: pd.DataFrame, today: date, n: int) -> pd.DataFrame:
    """The last ``n`` score dates up to ``today``, oldest first (one row per date;
    a repeated date keeps its last row)."""
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise KeyError(f"history lacks the column(s) {missing}")
    frame = history.loc[:, list(HISTORY_COLUMNS)].copy()
    frame["score_date"] = [_as_date(v) for v in frame["score_date"]]
    frame = frame[frame["score_date"] <= today]
    frame = frame.drop_duplicates("score_date", keep="last")
    return frame.sort_values("score_date").tail(n).reset_index(drop=True)


def _decay(
    window: pd.DataFrame,
    champion_test_auc: float,
    config: TriggerConfig,
    decision: TriggerDecision,
) -> None:
    threshold = champion_test_auc - config.auc_drop
    labelled = (window["n_labels"].fillna(0) >= config.min_labels) & window[
        "roc_auc"
    ].map(_finite)
    counted = window[labelled]
    below = counted[counted["roc_auc"].astype(float) < threshold]
    decision.evidence["decay"] = {
        "threshold": threshold,
        "champion_test_auc": champion_test_auc,
        "window": [d.isoformat() for d in window["score_date"]],
        "roc_auc": [float(v) if _finite(v) else None for v in window["roc_auc"]],
        "n_labels": [int(v) if _finite(v) else 0 for v in window["n_labels"]],
        "dates_counted": len(counted),
        "dates_below": len(below),
    }
    if not _finite(champion_test_auc):
        decision.blocked.append(
            "champion: no test AUC to compare with, no decay verdict"
        )
        return
    if len(below) >= config.k:
        worst = float(below["roc_auc"].astype(float).min())
        decision.reasons.append(
            f"decay: realized AUC below {threshold:.3f} (champion test AUC "
            f"{champion_test_auc:.3f} - {config.auc_drop}) on {len(below)} of the "
            f"last {len(window)} score dates (lowest {worst:.3f})"
        )
    elif len(counted) < config.k:
        decision.blocked.append(
            f"labels: only {len(counted)} of the last {len(window)} score dates have "
            f">= {config.min_labels} matured labels (decay needs {config.k})"
        )


def _calibration(
    window: pd.DataFrame, config: TriggerConfig, decision: TriggerDecision
) -> None:
    labelled = (window["n_labels"].fillna(0) >= config.min_labels) & window["ece"].map(
        _finite
    )
    if not labelled.any():
        decision.blocked.append(
            f"labels: no recent score date has >= {config.min_labels} matured "
            "labels, no calibration verdict"
        )
        return
    latest = window[labelled].iloc[-1]
    ece = float(latest["ece"])
    day = latest["score_date"].isoformat()
    decision.evidence["calibration"] = {
        "score_date": day,
        "ece": ece,
        "max_ece": config.max_ece,
    }
    if ece > config.max_ece:
        decision.reasons.append(
            f"calibration: ECE {ece:.3f} > {config.max_ece} on score date {day}"
        )


def _drift(
    drift: pd.DataFrame, config: TriggerConfig, decision: TriggerDecision
) -> None:
    missing_columns = [c for c in ("name", "kind", "psi") if c not in drift.columns]
    if missing_columns:
        raise KeyError(f"drift lacks the column(s) {missing_columns}")
    finite = drift[drift["psi"].map(_finite)]
    key = set(config.psi_features)
    is_feature = finite["kind"] == "feature"
    if key:
        is_feature &= finite["name"].isin(key)
    watched = finite[(finite["kind"] == "score") | is_feature]
    present = set(drift.loc[drift["kind"] == "feature", "name"])
    values = [
        (str(name), str(kind), float(value))
        for name, kind, value in watched[["name", "kind", "psi"]].itertuples(
            index=False
        )
    ]
    breached = [v for v in values if v[2] > config.psi_threshold]
    decision.evidence["drift"] = {
        "threshold": config.psi_threshold,
        "psi": {f"{kind}:{name}": value for name, kind, value in values},
        "missing_key_features": sorted(key - present),
    }
    if breached:
        parts = ", ".join(
            f"{kind} {name} {value:.3f}" for name, kind, value in breached
        )
        decision.reasons.append(f"drift: PSI > {config.psi_threshold} on {parts}")


def evaluate_trigger(
    history: pd.DataFrame,
    champion_test_auc: float,
    drift: pd.DataFrame,
    today: date,
    last_retrain: date | None,
    config: TriggerConfig | None = None,
) -> TriggerDecision:
    """Apply the retrain rules (see the module docstring).

    ``history`` has one row per score date of the current champion with
    ``score_date``, ``roc_auc``, ``ece`` and ``n_labels`` (rows after ``today`` are
    ignored); ``drift`` is today's :func:`ml.feedback.realized.drift_report`
    (``name``, ``kind``, ``psi``); ``last_retrain`` is the date of the last retrain
    (None: never).
    """
    config = config or TriggerConfig()
    decision = TriggerDecision(fire=False)
    window = _window(history, today, config.n)
    decision.evidence["today"] = today.isoformat()
    _decay(window, float(champion_test_auc), config, decision)
    _drift(drift, config, decision)
    _calibration(window, config, decision)
    cooling = False
    if last_retrain is not None:
        days = (today - last_retrain).days
        decision.evidence["days_since_retrain"] = days
        cooling = days < config.cooldown_days
        if cooling:
            decision.blocked.append(
                f"cooldown: last retrain on {last_retrain.isoformat()}, {days} days "
                f"ago (< {config.cooldown_days})"
            )
    decision.fire = bool(decision.reasons) and not cooling
    return decision
