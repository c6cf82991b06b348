"""The decision engine: EV, contact rules, holdout, review, fallback and baselines."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ml.config.policy import POLICY_CONFIG_FILE, PolicyConfig, load_policy_config
from ml.decision.engine import (
    DECISION_COLUMNS,
    REASON_CODES,
    decide,
    fallback_reasons,
    score_sanity,
    summarize,
)
from ml.decision.value import TrailingSpend, value_at_risk
from ml.sim import baselines

RUN_DATE = date(2024, 6, 1)


@pytest.fixture
def config() -> PolicyConfig:
    """The shipped policy, without holdout or review so each test adds its own."""
    policy = load_policy_config()
    policy.holdout.fraction = 0.0
    policy.review.p_band = (1.0, 1.0)
    policy.review.value_at_risk_threshold = 1e12
    policy.review.ood = False
    return policy


def _customers(n: int, seed: int = 0, **columns: object) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:06d}" for i in range(n)],
            "p_churn": rng.beta(1.5, 4.0, n),
            "value_at_risk": rng.lognormal(4.3, 1.0, n),
            "plan": rng.choice(["basic", "plus", "premium"], n),
            "region": rng.choice(["north", "south", "east"], n),
            "recency_days": rng.integers(0, 90, n),
            "tx_count_180d": rng.integers(0, 12, n),
            "days_since_last_contact_decision": np.full(n, np.nan),
            "contacts_90d_decisions": np.zeros(n, np.int64),
            "ood": np.zeros(n, bool),
        }
    )
    for name, values in columns.items():
        frame[name] = values
    return frame


def _row(frame: pd.DataFrame, customer_id: str) -> pd.Series:
    return frame.set_index("customer_id").loc[customer_id]


# --- configuration and value ------------------------------------------------------


def test_policy_config_is_stamped_with_its_content_hash() -> None:
    policy = load_policy_config()
    expected = hashlib.sha256(POLICY_CONFIG_FILE.read_bytes()).hexdigest()[:16]
    assert policy.policy_version == expected
    assert [a.name for a in policy.actions] == ["call", "voucher", "email"]
    voucher = policy.action("voucher")
    assert voucher.cost == pytest.approx(0.5 + 10.0 * 0.3)
    call = policy.action("call").uplift
    assert (call.alpha, call.beta) == pytest.approx((0.30 * 20, 0.70 * 20))


def test_policy_config_rejects_typos_and_inconsistencies(tmp_path: Path) -> None:
    text = POLICY_CONFIG_FILE.read_text()
    typo = tmp_path / "typo.yml"
    typo.write_text(text.replace("daily_budget:", "daily_budgett:"))
    with pytest.raises(ValidationError):
        load_policy_config(typo)
    no_slots = tmp_path / "no_slots.yml"
    no_slots.write_text(text.replace("  phone: 200\n", ""))
    with pytest.raises(ValidationError, match="no capacity"):
        load_policy_config(no_slots)
    other = tmp_path / "other.yml"
    other.write_text(text.replace("daily_budget: 3000.0", "daily_budget: 10.0"))
    assert (
        load_policy_config(other).policy_version != load_policy_config().policy_version
    )


def test_value_at_risk_blends_trailing_spend_over_the_horizon(
    config: PolicyConfig,
) -> None:
    features = pd.DataFrame(
        {"spend_90d": [90.0, 0.0, None, -5.0], "spend_180d": [360.0, 180.0, 0.0, 0.0]}
    )
    got = value_at_risk(features, config, horizon_days=30)
    # 0.5 * spend_90d * 30/90 + 0.5 * spend_180d * 30/180
    assert got.tolist() == pytest.approx([15.0 + 30.0, 15.0, 0.0, 0.0])

    class Flat:
        def estimate(self, features: pd.DataFrame, horizon_days: int) -> np.ndarray:
            return np.full(len(features), float(horizon_days))

    assert value_at_risk(features, config, 7, estimator=Flat()).tolist() == [7.0] * 4
    recent_only = TrailingSpend(blend_weight=0.0)
    assert recent_only.estimate(features, 90)[0] == pytest.approx(90.0)


# --- expected value ---------------------------------------------------------------


def test_ev_arithmetic_and_best_action(config: PolicyConfig) -> None:
    frame = _customers(3)
    frame["p_churn"] = [0.5, 0.2, 0.05]
    frame["value_at_risk"] = [400.0, 100.0, 40.0]
    out = decide(frame, RUN_DATE, config, "model", "7")
    costs = config.costs()
    for i, row in out.iterrows():
        p, v = frame.loc[i, "p_churn"], frame.loc[i, "value_at_risk"]
        for name, uplift in config.uplift_means().items():
            assert row[f"ev_{name}"] == pytest.approx(p * v * uplift - costs[name])
    # 0.5 * 400: call 0.3 * 200 - 8 = 52 beats voucher 36.5 and e-mail 15.95.
    assert out.loc[0, ["arm", "action"]].tolist() == ["treated", "call"]
    assert out.loc[0, "chosen_ev"] == pytest.approx(52.0)
    assert out.loc[0, "reason_codes"] == "ev_best"
    # 0.2 * 100 = 20: call -2, voucher 0.5, e-mail 1.55 (best).
    assert out.loc[1, "action"] == "email"
    # 0.05 * 40 = 2: only the e-mail (0.16 - 0.05) is positive... and the call is
    # not even eligible below a value at risk of 50.
    assert out.loc[2, "action"] == "email"
    assert list(out.columns) == list(DECISION_COLUMNS)


def test_expected_value_beats_probability(config: PolicyConfig) -> None:
    """The seed's example: 90% x $500 = $450 loses to 30% x $48,000 = $14,400."""
    config.capacity = {"phone": 1, "voucher": 0, "email": 0}
    frame = _customers(2)
    frame["customer_id"] = ["likely", "valuable"]
    frame["p_churn"] = [0.9, 0.3]
    frame["value_at_risk"] = [500.0, 48_000.0]
    out = decide(frame, RUN_DATE, config, "model", "7")
    assert (frame["p_churn"] * frame["value_at_risk"]).tolist() == [450.0, 14_400.0]
    assert _row(out, "valuable")[["arm", "action"]].tolist() == ["treated", "call"]
    assert _row(out, "valuable")["chosen_ev"] == pytest.approx(14_400 * 0.3 - 8.0)
    likely = _row(out, "likely")
    assert likely["arm"] == "none"
    # No slot on any channel: every action this customer could have had was full.
    assert likely["reason_codes"] == "capacity_phone;capacity_voucher;capacity_email"
    assert likely["ev_call"] == pytest.approx(450 * 0.3 - 8.0)

    # Ranking by probability spends the one call on the likely, cheap customer.
    ranked = baselines.probability_ranked(frame, config).set_index("customer_id")
    assert ranked.loc["likely", "action"] == "call"
    assert ranked.loc["valuable", "arm"] == "none"
    policy_ev = baselines.expected_value(out, frame, config)
    ranked_ev = baselines.expected_value(ranked.reset_index(), frame, config)
    assert policy_ev == pytest.approx(14_400 * 0.3 - 8.0)
    assert ranked_ev == pytest.approx(450 * 0.3 - 8.0)


def test_uplift_override_replaces_the_prior(config: PolicyConfig) -> None:
    frame = _customers(200, seed=1)
    out = decide(frame, RUN_DATE, config, "model", "7", uplifts={"call": 0.0})
    assert "call" not in set(out["action"].dropna())
    assert (out["ev_call"] == -config.action("call").cost).all()


def test_no_positive_ev_and_ineligible_are_recorded(config: PolicyConfig) -> None:
    config.action("voucher").eligibility.plans = ["premium"]
    frame = _customers(3)
    frame["plan"] = ["basic", "basic", "premium"]
    frame["p_churn"] = [0.0, 0.9, 0.9]
    frame["value_at_risk"] = [100.0, 30.0, 30.0]
    config.action("email").eligibility.min_value_at_risk = 40.0
    out = decide(frame, RUN_DATE, config, "model", "7")
    assert out["reason_codes"].tolist()[:2] == ["no_positive_ev", "ineligible"]
    # Only premium may get a voucher: 0.9 * 30 * 0.2 - 3.5 = 1.9 > 0.
    assert out.loc[2, "action"] == "voucher"
    assert out["arm"].tolist() == ["none", "none", "treated"]
    assert out["action"].isna().tolist() == [True, True, False]


def test_missing_score_gets_no_action_in_model_mode(config: PolicyConfig) -> None:
    frame = _customers(2)
    frame.loc[0, "p_churn"] = np.nan
    out = decide(frame, RUN_DATE, config, "model", "7")
    assert out.loc[0, "reason_codes"] == "no_score"
    assert out.loc[0, "arm"] == "none"


# --- contact rules, capacity and budget over several days -------------------------


def test_contact_rules_block_recent_and_frequent_contacts(config: PolicyConfig) -> None:
    frame = _customers(4)
    frame["p_churn"], frame["value_at_risk"] = 0.8, 500.0
    frame["days_since_last_contact_decision"] = [13.0, 14.0, np.nan, 40.0]
    frame["contacts_90d_decisions"] = [0, 0, 0, 3]
    out = decide(frame, RUN_DATE, config, "model", "7")
    assert out["arm"].tolist() == ["none", "treated", "treated", "none"]
    assert out["reason_codes"].tolist()[0] == "cooldown"
    assert out["reason_codes"].tolist()[3] == "max_contacts"


def test_capacity_budget_and_contact_rules_hold_across_days(
    config: PolicyConfig,
) -> None:
    config.capacity = {"phone": 15, "voucher": 40, "email": 150}
    config.daily_budget = 250.0
    config.contact.cooldown_days = 3
    config.contact.max_contacts_90d = 2
    config.holdout.fraction = 0.1
    config.review.p_band = (0.45, 0.55)
    config.review.max_per_day = 10
    frame = _customers(2000, seed=4)
    history: dict[str, list[date]] = {}
    costs = config.costs()
    for day in range(10):
        run_date = RUN_DATE + timedelta(days=day)
        last = [max(history.get(c, []), default=None) for c in frame["customer_id"]]
        frame["days_since_last_contact_decision"] = [
            np.nan if d is None else (run_date - d).days for d in last
        ]
        frame["contacts_90d_decisions"] = [
            sum((run_date - d).days <= 90 for d in history.get(c, []))
            for c in frame["customer_id"]
        ]
        out = decide(frame, run_date, config, "model", "7")
        treated = out[out["arm"] == "treated"]
        per_action = treated["action"].value_counts()
        for action in config.actions:
            assert per_action.get(action.name, 0) <= config.capacity[action.channel]
        spent = sum(costs[a] * k for a, k in per_action.items())
        assert spent <= config.daily_budget + 1e-9
        assert (out["arm"] == "review").sum() <= config.review.max_per_day
        for customer in treated["customer_id"]:
            before = history.get(customer, [])
            assert all((run_date - d).days >= 3 for d in before)
            assert sum((run_date - d).days <= 90 for d in before) < 2
            history.setdefault(customer, []).append(run_date)
        assert summarize(out, config)["budget_used"] == pytest.approx(spent)
    assert max(len(d) for d in history.values()) == 2  # the cap was reached


# --- holdout ------------------------------------------------------------------------


def test_holdout_is_deterministic_random_and_consumes_nothing(
    config: PolicyConfig,
) -> None:
    config.holdout.fraction = 0.10
    config.capacity = {"phone": 10**9, "voucher": 10**9, "email": 10**9}
    config.daily_budget = 1e12
    frame = _customers(100_000, seed=5)
    frame["p_churn"], frame["value_at_risk"] = 0.6, 400.0
    first = decide(frame, RUN_DATE, config, "model", "7")
    share = (first["arm"] == "holdout").mean()
    assert abs(share - 0.10) < 0.005  # 5 standard deviations at n = 100k
    holdout = first[first["arm"] == "holdout"]
    assert (holdout["action"] == "call").all()
    assert holdout["reason_codes"].eq("ev_best;holdout").all()

    again = decide(frame, RUN_DATE, config, "model", "7")
    pd.testing.assert_frame_equal(first, again)
    shuffled = frame.sample(frac=1.0, random_state=1)
    reordered = decide(shuffled, RUN_DATE, config, "model", "7").loc[first.index]
    pd.testing.assert_frame_equal(first, reordered)

    next_day = decide(frame, RUN_DATE + timedelta(days=1), config, "model", "7")
    both = ((first["arm"] == "holdout") & (next_day["arm"] == "holdout")).mean()
    assert both < 0.02  # a fresh draw each day, not a fixed control group
    config.holdout.salt = "another-salt"
    resalted = decide(frame, RUN_DATE, config, "model", "7")
    assert not resalted["arm"].equals(first["arm"])


def test_holdout_does_not_take_capacity(config: PolicyConfig) -> None:
    config.holdout.fraction = 0.3
    config.capacity = {"phone": 50, "voucher": 0, "email": 0}
    frame = _customers(1000, seed=6)
    frame["p_churn"], frame["value_at_risk"] = 0.7, 600.0
    out = decide(frame, RUN_DATE, config, "model", "7")
    assert (out["arm"] == "treated").sum() == 50
    held = (out["arm"] == "holdout").sum()
    assert 5 < held < 50
    summary = summarize(out, config)
    assert summary["used_phone"] == 50
    assert summary["holdout_call"] == held


# --- reruns -------------------------------------------------------------------------


def test_rerun_gives_an_identical_frame_and_stable_ids(config: PolicyConfig) -> None:
    config.holdout.fraction = 0.1
    config.review.p_band = (0.45, 0.55)
    frame = _customers(5000, seed=7)
    first = decide(frame, RUN_DATE, config, "model", "3")
    pd.testing.assert_frame_equal(first, decide(frame, RUN_DATE, config, "model", "3"))
    row = first.iloc[0]
    action = row["action"] if pd.notna(row["action"]) else "none"
    raw = f"{RUN_DATE}|{row['customer_id']}|{action}"
    assert row["decision_id"] == hashlib.sha256(raw.encode()).hexdigest()[:16]
    assert first["decision_id"].is_unique
    assert set(first["arm"]) <= {"treated", "holdout", "review", "none"}
    codes = {c for text in first["reason_codes"] for c in text.split(";")}
    assert codes <= set(REASON_CODES)
    assert (first["policy_version"] == config.policy_version).all()
    assert (first["model_version"] == "3").all()


# --- review routing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "code"),
    [
        ("p_band", "review_p_band"),
        ("value", "review_high_value"),
        ("ood", "review_ood"),
    ],
)
def test_each_review_rule_routes_to_review(
    config: PolicyConfig, setting: str, code: str
) -> None:
    frame = _customers(3)
    frame["p_churn"] = [0.5, 0.8, 0.8]
    frame["value_at_risk"] = [300.0, 300.0, 300.0]
    flagged = 0
    if setting == "p_band":
        config.review.p_band = (0.45, 0.55)
    elif setting == "value":
        config.review.value_at_risk_threshold = 1000.0
        frame.loc[1, "value_at_risk"] = 5000.0
        flagged = 1
    else:
        config.review.ood = True
        frame["ood"] = [False, False, True]
        flagged = 2
    out = decide(frame, RUN_DATE, config, "model", "7")
    review = out.loc[flagged]
    assert review["arm"] == "review"
    assert review["action"] == "call"  # the action a reviewer is asked to approve
    assert review["reason_codes"] == f"ev_best;{code}"
    others = out.drop(index=flagged)
    assert (others["arm"] == "treated").all()


def test_review_only_for_customers_the_policy_would_act_on(
    config: PolicyConfig,
) -> None:
    config.review.p_band = (0.45, 0.55)
    frame = _customers(1)
    frame["p_churn"], frame["value_at_risk"] = 0.5, 0.5  # every EV is negative
    out = decide(frame, RUN_DATE, config, "model", "7")
    assert out.loc[0, "arm"] == "none"
    assert out.loc[0, "reason_codes"] == "no_positive_ev"


def test_review_cap_keeps_the_highest_ev_and_holds_back_the_rest(
    config: PolicyConfig,
) -> None:
    config.review.value_at_risk_threshold = 1000.0
    config.review.max_per_day = 3
    frame = _customers(6)
    frame["p_churn"] = 0.8
    frame["value_at_risk"] = [2000.0, 6000.0, 3000.0, 5000.0, 4000.0, 100.0]
    out = decide(frame, RUN_DATE, config, "model", "7")
    assert out["arm"].tolist() == [
        "none",
        "review",
        "none",
        "review",
        "review",
        "treated",
    ]
    assert out.loc[0, "reason_codes"] == "review_high_value;review_capacity"
    assert out.loc[0, "action"] is None or pd.isna(out.loc[0, "action"])
    summary = summarize(out, config)
    assert summary["arm_review"] == 3
    assert summary["used_phone"] == 1  # review cases consume no capacity today


# --- fallback -----------------------------------------------------------------------


def test_fallback_mode_uses_the_rule_and_still_respects_the_limits(
    config: PolicyConfig,
) -> None:
    config.capacity["email"] = 3
    config.holdout.fraction = 0.0
    frame = _customers(7)
    frame["p_churn"] = np.nan
    frame["recency_days"] = [30, 30, 30, 30, 30, 10, 30]
    frame["tx_count_180d"] = [5, 5, 5, 5, 5, 9, 1]
    frame["value_at_risk"] = [50.0, 40.0, 30.0, 20.0, 60.0, 99.0, 99.0]
    frame.loc[4, "days_since_last_contact_decision"] = 2.0
    out = decide(frame, RUN_DATE, config, "fallback", None)
    assert (out["policy_mode"] == "fallback").all()
    assert out["model_version"].isna().all()
    # Rule hits 0-4; 4 is in cooldown; 3 e-mail slots go to the highest value.
    assert out["arm"].tolist() == [
        "treated",
        "treated",
        "treated",
        "none",
        "none",
        "none",
        "none",
    ]
    assert set(out.loc[:2, "action"]) == {"email"}
    assert out["reason_codes"].tolist() == [
        "fallback_rule",
        "fallback_rule",
        "fallback_rule",
        "capacity_email",
        "cooldown",
        "no_rule",
        "no_rule",
    ]
    assert out[[f"ev_{a}" for a in ("call", "voucher", "email")]].isna().all().all()
    assert summarize(out, config)["budget_used"] == pytest.approx(3 * 0.05)


def test_fallback_mode_keeps_a_holdout(config: PolicyConfig) -> None:
    config.holdout.fraction = 0.2
    frame = _customers(3000, seed=8)
    frame["recency_days"], frame["tx_count_180d"] = 40, 6
    out = decide(frame.drop(columns="p_churn"), RUN_DATE, config, "fallback", None)
    acted = out[out["arm"].isin(["treated", "holdout"])]
    assert 0.15 < (acted["arm"] == "holdout").mean() < 0.25
    assert (acted["action"] == "email").all()
    assert not (out["arm"] == "review").any()


# --- score sanity -------------------------------------------------------------------


def test_score_sanity_flags_broken_distributions(config: PolicyConfig) -> None:
    rng = np.random.default_rng(9)
    good = rng.beta(1.5, 6.0, 5000)
    assert score_sanity(good, config) == []
    assert score_sanity(good[:10], config)[0].startswith("min_rows")
    with_nan = good.copy()
    with_nan[:200] = np.nan
    assert any(c.startswith("max_nan_share") for c in score_sanity(with_nan, config))
    outside = good.copy()
    outside[:3] = 1.5
    assert any(c.startswith("p_churn_range") for c in score_sanity(outside, config))
    assert any(
        c.startswith("min_std_p_churn")
        for c in score_sanity(np.full(5000, 0.2), config)
    )
    assert any(
        c.startswith("mean_p_churn") for c in score_sanity(np.full(5000, 0.95), config)
    )


def test_fallback_reasons(config: PolicyConfig) -> None:
    good = np.random.default_rng(10).beta(1.5, 6.0, 5000)
    assert fallback_reasons(None, config, champion_age_days=None) == ["no_champion"]
    assert fallback_reasons(good, config, champion_age_days=30) == []
    old = fallback_reasons(good, config, champion_age_days=400)
    assert old and old[0].startswith("champion_age")
    broken = fallback_reasons(
        np.full(5000, 0.2), config, champion_age_days=1, scoring_problem="timeout"
    )
    assert broken[0] == "scoring: timeout"
    assert broken[1].startswith("sanity min_std_p_churn")


# --- summary and baselines ----------------------------------------------------------


def test_summary_counts_match_the_decisions(config: PolicyConfig) -> None:
    config.holdout.fraction = 0.1
    config.review.p_band = (0.45, 0.55)
    frame = _customers(3000, seed=11)
    out = decide(frame, RUN_DATE, config, "model", "7")
    summary = summarize(out, config)
    assert (
        sum(summary[f"arm_{a}"] for a in ("treated", "holdout", "review", "none"))
        == 3000
    )
    treated = out[out["arm"] == "treated"]
    assert summary["expected_value"] == pytest.approx(treated["chosen_ev"].sum())
    for name, channel in (
        ("call", "phone"),
        ("voucher", "voucher"),
        ("email", "email"),
    ):
        assert summary[f"treated_{name}"] == (treated["action"] == name).sum()
        assert summary[f"used_{channel}"] <= summary[f"capacity_{channel}"]
    assert summary["budget_used"] <= summary["budget"]
    assert summary["policy_version"] == config.policy_version


def test_baselines_share_the_plan_shape_and_rank_as_expected(
    config: PolicyConfig,
) -> None:
    frame = _customers(4000, seed=12)
    policy = decide(frame, RUN_DATE, config, "model", "7")
    plans = {
        "probability": baselines.probability_ranked(frame, config),
        "cheapest": baselines.treat_all_cheapest(frame, config),
        "none": baselines.no_action(frame, config),
    }
    for plan in plans.values():
        assert list(plan.columns) == list(baselines.PLAN_COLUMNS)
        assert plan.index.equals(frame.index)
    assert (plans["none"]["arm"] == "none").all()
    assert baselines.expected_value(plans["none"], frame, config) == 0.0
    assert (
        plans["cheapest"]
        .loc[plans["cheapest"]["arm"] == "treated", "action"]
        .eq("email")
        .all()
    )
    assert plans["probability"]["cost"].sum() <= config.daily_budget + 1e-9
    ev = {name: baselines.expected_value(p, frame, config) for name, p in plans.items()}
    policy_ev = baselines.expected_value(policy, frame, config)
    assert policy_ev > ev["probability"]
    assert policy_ev > ev["none"]

    rng = np.random.default_rng(13)
    truth = {a: rng.uniform(0.0, 0.5, len(frame)) for a in ("call", "voucher", "email")}
    oracle = baselines.oracle(frame, config, truth)
    assert baselines.true_value(oracle, frame, config, truth) >= baselines.true_value(
        policy, frame, config, truth
    )
