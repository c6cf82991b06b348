"""Measured uplift: arm comparison arithmetic, interval coverage, Beta shrinkage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml.config.policy import load_policy_config
from ml.feedback.uplift import (
    arm_comparison,
    newcombe_interval,
    posterior_uplift,
    update_parameters,
)

REPLICATIONS = 400
ARM_REPLICATIONS = 250


def _outcomes(
    rng: np.random.Generator,
    n_treated: int,
    n_holdout: int,
    churn_holdout: float,
    uplift: float,
    replications: int = 1,
    **columns: object,
) -> pd.DataFrame:
    """Matured decisions of one action with a known uplift; with ``replications``
    > 1, that many independent experiments told apart by the column ``rep``."""
    churn_treated = churn_holdout * (1.0 - uplift)
    one = np.array(["treated"] * n_treated + ["holdout"] * n_holdout)
    arm = np.tile(one, replications)
    p_churn = np.where(arm == "treated", churn_treated, churn_holdout)
    retained = rng.random(arm.size) >= p_churn
    frame = pd.DataFrame(
        {
            "arm": arm,
            "action": "voucher",
            "retained": retained,
            "realized_spend": np.where(retained, 100.0, 0.0),
            "cost": np.where(arm == "treated", 3.5, 0.0),
            "expected_ev": np.where(arm == "treated", 1.0, 0.0),
            **columns,
        }
    )
    if replications > 1:
        frame["rep"] = np.repeat(np.arange(replications), one.size)
    return frame


def test_arm_comparison_arithmetic_on_a_hand_made_frame() -> None:
    # treated: 4 customers, 3 retained; holdout: 4 customers, 2 retained
    outcomes = pd.DataFrame(
        {
            "arm": ["treated"] * 4 + ["holdout"] * 4 + ["none", "review"],
            "action": ["email"] * 10,
            "retained": [True, True, True, False, True, True, False, False, True, True],
            "realized_spend": [100.0, 50.0, 30.0, 0.0, 80.0, 20.0, 0.0, 0.0, 1e6, 1e6],
            "cost": [2.0] * 4 + [0.0] * 4 + [0.0, 0.0],
            "expected_ev": [5.0] * 4 + [9.0] * 4 + [1e6, 1e6],
        }
    )
    row = arm_comparison(outcomes, by=["action"]).iloc[0]
    assert row["action"] == "email"
    assert (row["n_treated"], row["n_holdout"]) == (4, 4)
    assert row["retention_treated"] == pytest.approx(0.75)
    assert row["retention_holdout"] == pytest.approx(0.5)
    assert row["retention_diff"] == pytest.approx(0.25)
    assert row["retention_diff_low"] < 0.25 < row["retention_diff_high"]
    # churn 0.25 treated, 0.5 holdout: half of the would-be churners saved
    assert row["uplift"] == pytest.approx(0.5)
    assert row["uplift_low"] < 0.5 < row["uplift_high"] < 1.0
    # mean spend 45 treated, 25 holdout, over 4 treated customers
    assert row["spend_treated"] == pytest.approx(45.0)
    assert row["spend_holdout"] == pytest.approx(25.0)
    assert row["incremental_value"] == pytest.approx(80.0)
    assert row["cost"] == pytest.approx(8.0)
    assert row["roi"] == pytest.approx((80.0 - 8.0) / 8.0)
    assert row["expected_value"] == pytest.approx(20.0)
    assert row["realized_net_value"] == pytest.approx(72.0)


def test_arm_comparison_groups_and_missing_arms() -> None:
    outcomes = pd.DataFrame(
        {
            "arm": ["treated", "holdout", "treated", "treated"],
            "action": ["call", "call", "email", "email"],
            "plan": ["basic", "basic", None, None],
            "retained": [True, False, True, False],
            "realized_spend": [10.0, 0.0, 5.0, 0.0],
            "cost": [8.0, 0.0, 0.0, 0.0],
            "expected_ev": [1.0, 0.0, 0.5, 0.5],
        }
    )
    table = arm_comparison(outcomes, by=["action", "plan"])
    assert list(table["action"]) == ["call", "email"]
    email = table.iloc[1]
    assert pd.isna(email["plan"])
    assert email["n_holdout"] == 0
    assert np.isnan(email["uplift"]) and np.isnan(email["uplift_low"])
    assert np.isnan(email["roi"])  # no cost
    overall = arm_comparison(outcomes, by=[])
    assert len(overall) == 1 and overall.iloc[0]["n_treated"] == 3


def test_arm_comparison_rejects_unmatured_rows() -> None:
    outcomes = _outcomes(np.random.default_rng(0), 5, 5, 0.3, 0.2)
    outcomes["retained"] = outcomes["retained"].astype(object)
    outcomes.loc[0, "retained"] = None
    with pytest.raises(ValueError, match="matured"):
        arm_comparison(outcomes, by=["action"])


def test_newcombe_interval_matches_published_example() -> None:
    # Newcombe (1998), example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339
    low, high = newcombe_interval(np.array(56), np.array(70), np.array(48), 80)
    assert float(low) == pytest.approx(0.0524, abs=1e-4)
    assert float(high) == pytest.approx(0.3339, abs=1e-4)


@pytest.mark.parametrize(
    ("n_treated", "n_holdout", "churn_holdout", "uplift"),
    [(1800, 200, 0.30, 0.25), (600, 70, 0.25, 0.08), (1500, 1500, 0.35, 0.30)],
)
def test_uplift_intervals_cover_a_known_effect(
    n_treated: int, n_holdout: int, churn_holdout: float, uplift: float
) -> None:
    rng = np.random.default_rng(7)
    outcomes = _outcomes(
        rng, n_treated, n_holdout, churn_holdout, uplift, ARM_REPLICATIONS
    )
    table = arm_comparison(outcomes, by=["rep"])
    assert len(table) == ARM_REPLICATIONS
    covered = (table["uplift_low"] <= uplift) & (uplift <= table["uplift_high"])
    assert covered.mean() >= 0.91
    diff = churn_holdout * uplift  # retention difference
    covered = (table["retention_diff_low"] <= diff) & (
        diff <= table["retention_diff_high"]
    )
    assert covered.mean() >= 0.91
    # and the intervals are not vacuous: they exclude zero most of the time when
    # the effect is large and well measured
    if n_holdout >= 1000:
        assert (table["uplift_low"] > 0).mean() > 0.9


@pytest.mark.parametrize(
    ("n_treated", "n_holdout", "uplift"),
    [(1800, 200, 0.25), (2000, 500, 0.25), (5000, 5000, 0.30)],
)
def test_posterior_interval_covers_a_known_effect(
    n_treated: int, n_holdout: int, uplift: float
) -> None:
    """With a weak prior the discounted pseudo-counts keep nominal coverage, even
    with a 10% holdout (undiscounted counts cover about 30% of the time there)."""
    rng = np.random.default_rng(11)
    churn_holdout = 0.30
    churned_t = rng.binomial(n_treated, churn_holdout * (1 - uplift), REPLICATIONS)
    churned_h = rng.binomial(n_holdout, churn_holdout, REPLICATIONS)
    posteriors = [
        posterior_uplift(n_treated, int(t), n_holdout, int(h), 1.0, 1.0)
        for t, h in zip(churned_t, churned_h, strict=True)
    ]
    coverage = np.mean([p.low <= uplift <= p.high for p in posteriors])
    assert coverage >= 0.90
    width = np.mean([p.high - p.low for p in posteriors])
    assert width < 0.5


@pytest.mark.parametrize("uplift", [0.013, -0.03])
def test_a_wrong_prior_comes_down_to_a_small_or_harmful_effect(uplift: float) -> None:
    """The e-mail case of the closed loop: a prior of 0.08 (strength 20) and a true
    effect near zero or harmful, measured on 80 000 treated and 8 800 held out. The
    posterior must leave the prior for the data, and cover a non-negative truth."""
    rng = np.random.default_rng(5)
    n_treated, n_holdout, churn_holdout = 80_000, 8_800, 0.30
    churned_t = rng.binomial(n_treated, churn_holdout * (1 - uplift), REPLICATIONS)
    churned_h = rng.binomial(n_holdout, churn_holdout, REPLICATIONS)
    posteriors = [
        posterior_uplift(n_treated, int(t), n_holdout, int(h), 1.6, 18.4)
        for t, h in zip(churned_t, churned_h, strict=True)
    ]
    means = np.array([p.mean for p in posteriors])
    # the data are worth far more than the prior's 20 pseudo-observations
    assert np.median([p.effective_n for p in posteriors]) > 100
    assert np.mean(means) < max(uplift, 0.0) + 0.02
    assert np.all(means >= 0.0)
    if uplift > 0:
        coverage = np.mean([p.low <= uplift <= p.high for p in posteriors])
        assert coverage >= 0.88
    else:
        # harm: the action is worth (almost) nothing to the policy
        assert np.median(means) < 0.01


def test_small_holdout_discounts_the_evidence() -> None:
    big = posterior_uplift(900, 180, 900, 300, 4.0, 16.0)
    small = posterior_uplift(900, 180, 60, 20, 4.0, 16.0)
    # same observed rates (c_t = 0.2, c_h = 1/3: raw uplift 0.4)
    assert big.raw_estimate == pytest.approx(0.4)
    assert small.raw_estimate == pytest.approx(0.4)
    assert small.effective_n < big.effective_n / 3
    assert small.high - small.low > big.high - big.low
    # the small holdout leaves the posterior nearer the prior mean of 0.2
    assert abs(small.mean - 0.2) < abs(big.mean - 0.2)
    # pseudo-counts never exceed the would-be churners
    assert big.effective_n <= 900 * 300 / 900


def test_posterior_shrinks_towards_the_prior_with_little_data() -> None:
    prior_alpha, prior_beta = 0.3 * 20, 0.7 * 20  # mean 0.3, strength 20
    tiny = posterior_uplift(20, 2, 5, 3, prior_alpha, prior_beta)
    raw = 1 - 0.1 / 0.6
    assert tiny.raw_estimate == pytest.approx(raw)
    # a handful of outcomes is worth less than the prior's 20 pseudo-observations:
    # the posterior moves towards the data but stays nearer the prior
    assert tiny.effective_n < 20
    assert 0.3 < tiny.mean < raw
    assert abs(tiny.mean - 0.3) < abs(tiny.mean - raw)
    fewer = posterior_uplift(8, 1, 2, 1, prior_alpha, prior_beta)
    assert abs(fewer.mean - 0.3) < abs(tiny.mean - 0.3)
    lots = posterior_uplift(40_000, 8_000, 40_000, 16_000, prior_alpha, prior_beta)
    assert lots.mean == pytest.approx(0.5, abs=0.01)
    assert lots.low < 0.5 < lots.high
    assert lots.alpha > prior_alpha and lots.beta > prior_beta
    # the interval is the equal-tailed 95% interval of Beta(alpha, beta)
    low, high = stats.beta.ppf([0.025, 0.975], tiny.alpha, tiny.beta)
    assert (tiny.low, tiny.high) == pytest.approx((low, high))
    assert tiny.mean == pytest.approx(stats.beta.mean(tiny.alpha, tiny.beta))


def test_posterior_without_evidence_is_the_prior() -> None:
    for counts in [(0, 0, 0, 0), (100, 10, 0, 0), (100, 10, 50, 0)]:
        post = posterior_uplift(*counts, 2.0, 8.0)
        assert (post.alpha, post.beta, post.effective_n) == (2.0, 8.0, 0.0)
        assert post.mean == pytest.approx(0.2)
        assert post.low < 0.2 < post.high
    assert np.isnan(posterior_uplift(0, 0, 0, 0, 2.0, 8.0).raw_estimate)
    # more treated churners than expected: no saves, pulled below the prior
    harm = posterior_uplift(1000, 400, 1000, 300, 2.0, 8.0)
    assert harm.raw_estimate < 0 and harm.mean < 0.2
    with pytest.raises(ValueError):
        posterior_uplift(10, 11, 10, 1, 1.0, 1.0)


def test_update_parameters_per_action_and_large_segments() -> None:
    rng = np.random.default_rng(3)
    frames = [
        _outcomes(rng, 3000, 3000, 0.3, 0.4, plan="pro"),
        _outcomes(rng, 3000, 3000, 0.3, 0.1, plan="basic"),
        _outcomes(rng, 50, 50, 0.3, 0.1, plan="free"),
    ]
    email = _outcomes(rng, 10, 10, 0.3, 0.0, plan="pro").assign(action="email")
    outcomes = pd.concat([*frames, email], ignore_index=True)
    policy = load_policy_config()
    priors = {a.name: (a.uplift.alpha, a.uplift.beta) for a in policy.actions}
    table = update_parameters(outcomes, priors, segment_column="plan", min_n=200)
    keys = list(zip(table["action"], table["segment"], strict=True))
    assert keys == [
        ("call", None),
        ("email", None),
        ("voucher", None),
        ("voucher", "basic"),
        ("voucher", "pro"),
    ]
    call = table.iloc[0]
    assert call["n_treated"] == 0 and call["posterior_mean"] == pytest.approx(0.30)
    voucher = table.set_index(["action", "segment"], drop=False)
    pro = voucher.loc[("voucher", "pro")]
    basic = voucher.loc[("voucher", "basic")]
    assert pro["low"] < 0.4 < pro["high"]
    assert basic["low"] < 0.1 < basic["high"]
    assert pro["posterior_mean"] > basic["posterior_mean"]
    expected_prior = table["action"].map(policy.uplift_means())
    assert np.allclose(table["prior_mean"], expected_prior)
    # without a segment column: one row per action
    assert list(update_parameters(outcomes, priors, None, 200)["segment"]) == [None] * 3
