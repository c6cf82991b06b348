"""The retrain trigger: decay, drift, calibration, too few labels, cooldown."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from pydantic import ValidationError

from ml.feedback.trigger import TriggerConfig, TriggerDecision, evaluate_trigger

TODAY = date(2024, 9, 30)
CHAMPION_AUC = 0.80


def _history(
    aucs: list[float], n_labels: int | list[int] = 2000, ece: float = 0.02
) -> pd.DataFrame:
    """One row per score date, the last one ``len(aucs)`` days before today."""
    days = len(aucs)
    labels = n_labels if isinstance(n_labels, list) else [n_labels] * days
    return pd.DataFrame(
        {
            "score_date": [TODAY - timedelta(days=days - i) for i in range(days)],
            "roc_auc": aucs,
            "ece": [ece] * days,
            "n_labels": labels,
        }
    )


def _drift(score: float = 0.02, **features: float) -> pd.DataFrame:
    rows = [(name, "feature", value) for name, value in features.items()]
    rows.append(("p_churn", "score", score))
    return pd.DataFrame(rows, columns=["name", "kind", "psi"])


HEALTHY = [0.79, 0.80, 0.78, 0.79, 0.80, 0.81]
DECAYED = [0.80, 0.79, 0.72, 0.79, 0.70, 0.71]  # 3 of the last 5 below 0.75


def test_defaults_and_config_validation() -> None:
    config = TriggerConfig()
    assert (config.auc_drop, config.k, config.n) == (0.05, 3, 5)
    assert (config.psi_threshold, config.psi_features) == (0.2, [])
    assert (config.max_ece, config.min_labels, config.cooldown_days) == (0.08, 500, 14)
    assert TriggerConfig.from_mapping(None) == config
    assert TriggerConfig.from_mapping({"k": 2, "psi_features": ["x"]}).k == 2
    with pytest.raises(ValidationError):
        TriggerConfig.from_mapping({"k": 6, "n": 5})
    with pytest.raises(ValidationError):
        TriggerConfig.from_mapping({"auc_dorp": 0.1})


def test_quiet_when_healthy() -> None:
    decision = evaluate_trigger(
        _history(HEALTHY), CHAMPION_AUC, _drift(x=0.05), TODAY, None
    )
    assert isinstance(decision, TriggerDecision)
    assert (decision.fire, decision.reasons, decision.blocked) == (False, [], [])
    assert decision.evidence["decay"]["dates_counted"] == 5
    assert decision.evidence["decay"]["dates_below"] == 0


def test_fires_on_decay() -> None:
    decision = evaluate_trigger(_history(DECAYED), CHAMPION_AUC, _drift(), TODAY, None)
    assert decision.fire
    assert decision.reason_codes == ["decay"]
    assert "3 of the last 5" in decision.reasons[0]
    assert decision.evidence["decay"]["threshold"] == pytest.approx(0.75)
    assert decision.tags()["trigger.reasons"] == "decay"
    # two dates below the threshold are not enough
    two = evaluate_trigger(
        _history(DECAYED[:-1] + [0.79]), CHAMPION_AUC, _drift(), TODAY, None
    )
    assert not two.fire and two.reasons == []


def test_dates_after_today_are_ignored() -> None:
    history = _history(DECAYED)
    decision = evaluate_trigger(
        history, CHAMPION_AUC, _drift(), TODAY - timedelta(days=3), None
    )
    # the last two low AUCs lie after that day: one date below the threshold
    assert not decision.fire
    assert len(decision.evidence["decay"]["window"]) == 4
    assert decision.evidence["decay"]["dates_below"] == 1


def test_fires_on_score_drift_or_key_feature_drift() -> None:
    history = _history(HEALTHY)
    on_score = evaluate_trigger(history, CHAMPION_AUC, _drift(0.35), TODAY, None)
    assert on_score.fire and on_score.reason_codes == ["drift"]
    assert "score p_churn 0.350" in on_score.reasons[0]

    shifted = _drift(spend_90d=0.4, tenure_days=0.01)
    any_feature = evaluate_trigger(history, CHAMPION_AUC, shifted, TODAY, None)
    assert any_feature.fire and "feature spend_90d" in any_feature.reasons[0]

    key_only = TriggerConfig(psi_features=["tenure_days", "recency_days"])
    ignored = evaluate_trigger(history, CHAMPION_AUC, shifted, TODAY, None, key_only)
    assert not ignored.fire
    assert ignored.evidence["drift"]["missing_key_features"] == ["recency_days"]
    key = TriggerConfig(psi_features=["spend_90d"])
    assert evaluate_trigger(history, CHAMPION_AUC, shifted, TODAY, None, key).fire


def test_drift_fires_even_before_labels_mature() -> None:
    decision = evaluate_trigger(
        _history([], n_labels=[]), CHAMPION_AUC, _drift(0.5), TODAY, None
    )
    assert decision.fire and decision.reason_codes == ["drift"]
    assert any(b.startswith("labels:") for b in decision.blocked)


def test_fires_on_calibration() -> None:
    history = _history(HEALTHY, ece=0.12)
    decision = evaluate_trigger(history, CHAMPION_AUC, _drift(), TODAY, None)
    assert decision.fire and decision.reason_codes == ["calibration"]
    assert decision.evidence["calibration"]["ece"] == pytest.approx(0.12)


def test_no_decay_or_calibration_verdict_with_too_few_labels() -> None:
    # every low AUC sits on a date with too few labels: only 2 dates count
    history = _history(DECAYED, n_labels=[2000, 2000, 100, 2000, 100, 100])
    decision = evaluate_trigger(history, CHAMPION_AUC, _drift(), TODAY, None)
    assert not decision.fire and decision.reasons == []
    assert decision.evidence["decay"]["dates_counted"] == 2
    assert decision.blocked == [
        "labels: only 2 of the last 5 score dates have >= 500 matured labels "
        "(decay needs 3)"
    ]
    # calibration is judged on the latest date with enough labels
    assert decision.evidence["calibration"]["score_date"] == "2024-09-27"

    too_few = _history(DECAYED, n_labels=100, ece=0.2)
    decision = evaluate_trigger(too_few, CHAMPION_AUC, _drift(), TODAY, None)
    assert not decision.fire and decision.reasons == []
    assert len(decision.blocked) == 2
    assert all(b.startswith("labels:") for b in decision.blocked)
    assert "calibration verdict" in decision.blocked[1]
    assert decision.tags()["trigger.fire"] == "false"
    # the same history with enough labels fires on both rules
    enough = evaluate_trigger(
        _history(DECAYED, ece=0.2), CHAMPION_AUC, _drift(), TODAY, None
    )
    assert enough.fire and enough.reason_codes == ["decay", "calibration"]


def test_never_fires_during_cooldown() -> None:
    last = TODAY - timedelta(days=5)
    decision = evaluate_trigger(
        _history(DECAYED), CHAMPION_AUC, _drift(0.5), TODAY, last
    )
    assert not decision.fire
    # the breaches are still recorded, with what blocked them
    assert decision.reason_codes == ["decay", "drift"]
    assert decision.blocked == [
        "cooldown: last retrain on 2024-09-25, 5 days ago (< 14)"
    ]
    assert decision.evidence["days_since_retrain"] == 5
    after = evaluate_trigger(
        _history(DECAYED), CHAMPION_AUC, _drift(0.5), TODAY, TODAY - timedelta(14)
    )
    assert after.fire and after.blocked == []


def test_the_shipped_key_features_are_behavioural_feature_columns() -> None:
    from expectations.customer_features import FEATURE_COLUMNS
    from ml.config.settings import load_business_config

    key = load_business_config().retrain_trigger.psi_features
    assert key and set(key) <= set(FEATURE_COLUMNS)
    # calendar- and policy-driven columns move without any drift in the customers
    assert not {"tenure_days", "contacts_90d", "days_since_last_contact"} & set(key)
