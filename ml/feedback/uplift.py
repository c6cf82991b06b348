"""Measured uplift: the treated arm against the randomized holdout.

The policy's uplift of an action is the share of would-be churners it saves::

    u = (churn_rate_holdout - churn_rate_treated) / churn_rate_holdout
      = 1 - churn_rate_treated / churn_rate_holdout = 1 - RR

where RR is the relative risk of churn, treated against holdout. The holdout is a
random sample of exactly the customers the policy treats, with the action they would
have received (:mod:`ml.decision.engine`), so the comparison within one action is
unbiased.

Two estimators, for two uses:

* :func:`arm_comparison` is the frequentist read-out for the marts and the report:
  per group, retention of each arm, the retention difference with a Newcombe
  (hybrid Wilson score) interval, the uplift with a Katz log interval on the relative
  risk, and the money (incremental value, cost, ROI, expected against realized).
* :func:`posterior_uplift` / :func:`update_parameters` are what the policy learns:
  each action's Beta prior from ``policy.yml`` updated with the holdout evidence by
  precision weighting on the uplift scale, truncated at 0 and matched back to a
  Beta (see :func:`posterior_uplift`).

Uplift figures are never clipped here: a negative estimate (the action does harm)
is information. Only a display may clip the estimate and its interval to [0, 1],
and it should say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import betaincinv, erfcx

# The 97.5% normal quantile (scipy.stats.norm.ppf(0.975)).
Z95 = 1.959963984540054
ARMS = ("treated", "holdout")
OUTCOME_COLUMNS = ("arm", "action", "retained", "realized_spend", "cost", "expected_ev")
ARM_COLUMNS = (
    "n_treated",
    "n_holdout",
    "retention_treated",
    "retention_holdout",
    "retention_diff",
    "retention_diff_low",
    "retention_diff_high",
    "churn_rate_treated",
    "churn_rate_holdout",
    "uplift",
    "uplift_low",
    "uplift_high",
    "spend_treated",
    "spend_holdout",
    "incremental_value",
    "cost",
    "roi",
    "expected_value",
    "realized_net_value",
)
PARAMETER_COLUMNS = (
    "action",
    "segment",
    "n_treated",
    "n_holdout",
    "raw_estimate",
    "prior_mean",
    "posterior_mean",
    "low",
    "high",
    "alpha",
    "beta",
    "effective_n",
)
# Rates in the variance of the raw estimate get z²/2 (about 1.92) pseudo-churners and
# as many pseudo-stayers, as in the Agresti–Coull interval: zero counts give a finite
# variance, tiny arms a conservative one, large arms the plain one.
_SMOOTH = Z95**2 / 2
# Keeps a posterior mean inside (0, 1) when it is moment-matched to a Beta.
_U_EPS = 1e-3


def _wilson(
    successes: npt.ArrayLike, n: npt.ArrayLike, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion, elementwise (NaN where n = 0)."""
    successes = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = successes / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    return centre - half, centre + half


def newcombe_interval(
    x1: npt.ArrayLike,
    n1: npt.ArrayLike,
    x2: npt.ArrayLike,
    n2: npt.ArrayLike,
    z: float = Z95,
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval of ``x1/n1 - x2/n2`` (his method 10).

    It combines the two Wilson intervals, so it stays inside [-1, 1] and keeps close
    to nominal coverage for small n and for rates near 0 or 1, where the normal
    approximation fails. NaN where either n is 0.
    """
    x1, n1, x2, n2 = (np.asarray(a, dtype=np.float64) for a in (x1, n1, x2, n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = x1 / n1, x2 / n2
    l1, u1 = _wilson(x1, n1, z)
    l2, u2 = _wilson(x2, n2, z)
    diff = p1 - p2
    low = diff - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


def uplift_interval(
    churned_treated: npt.ArrayLike,
    n_treated: npt.ArrayLike,
    churned_holdout: npt.ArrayLike,
    n_holdout: npt.ArrayLike,
    z: float = Z95,
) -> tuple[np.ndarray, np.ndarray]:
    """Interval of ``u = 1 - RR`` from the Katz log interval of the relative risk.

    ``log RR`` is approximately normal with variance ``1/x_t - 1/n_t + 1/x_h -
    1/n_h`` (the delta method on the log scale, which is what makes it behave well
    for a ratio); the bounds map through ``u = 1 - RR``. Small-n guard: where either
    arm has no churner, half a churner and half a stayer are added to both arms
    (Haldane–Anscombe), so the interval stays finite and wide. NaN where either n is
    0. The upper bound is below 1; the lower bound may be negative (harm).
    """
    xt, nt, xh, nh = (
        np.asarray(a, dtype=np.float64)
        for a in (churned_treated, n_treated, churned_holdout, n_holdout)
    )
    zero = (xt == 0) | (xh == 0)
    xt, xh = np.where(zero, xt + 0.5, xt), np.where(zero, xh + 0.5, xh)
    nt, nh = np.where(zero, nt + 1.0, nt), np.where(zero, nh + 1.0, nh)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_rr = np.log((xt / nt) / (xh / nh))
        se = np.sqrt(1.0 / xt - 1.0 / nt + 1.0 / xh - 1.0 / nh)
    empty = (np.asarray(n_treated) == 0) | (np.asarray(n_holdout) == 0)
    low = np.where(empty, np.nan, 1.0 - np.exp(log_rr + z * se))
    high = np.where(empty, np.nan, 1.0 - np.exp(log_rr - z * se))
    return low, high


def raw_uplift(
    churned_treated: npt.ArrayLike,
    n_treated: npt.ArrayLike,
    churned_holdout: npt.ArrayLike,
    n_holdout: npt.ArrayLike,
) -> np.ndarray:
    """``(c_h - c_t) / c_h`` elementwise; NaN where an arm is empty or c_h = 0."""
    xt, nt, xh, nh = (
        np.asarray(a, dtype=np.float64)
        for a in (churned_treated, n_treated, churned_holdout, n_holdout)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ct, ch = xt / nt, xh / nh
        out = (ch - ct) / ch
    return np.where(np.isfinite(out), out, np.nan)


def _check_outcomes(outcomes: pd.DataFrame, by: Sequence[str]) -> None:
    missing = [c for c in (*OUTCOME_COLUMNS, *by) if c not in outcomes.columns]
    if missing:
        raise KeyError(f"outcomes lack the column(s) {missing}")
    if outcomes["retained"].isna().any():
        raise ValueError("outcomes.retained has nulls: pass matured decisions only")


def arm_comparison(outcomes: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Treated against holdout, one row per group of ``by`` (all rows when empty).

    ``outcomes`` has one row per matured decision with ``arm`` ('treated' or
    'holdout'; other arms are ignored), ``action`` (a holdout row carries the action
    it would have received), ``retained`` (bool), ``realized_spend`` over the
    horizon, ``cost`` (0 for the holdout), ``expected_ev`` and the columns in
    ``by``. Null group values form their own group; a missing spend, cost or EV
    counts as 0.

    Columns, besides ``by``:

    * ``n_treated``, ``n_holdout``, ``retention_treated``, ``retention_holdout``;
    * ``retention_diff`` (treated − holdout) with its 95% Newcombe interval
      ``retention_diff_low`` / ``_high``;
    * ``churn_rate_treated``, ``churn_rate_holdout``, ``uplift`` = ``(c_h - c_t) /
      c_h`` with its 95% Katz log interval ``uplift_low`` / ``_high``
      (:func:`uplift_interval`); not clipped (clip to [0, 1] only for display);
    * ``spend_treated``, ``spend_holdout`` (mean realized spend per customer),
      ``incremental_value`` = (mean spend treated − mean spend holdout) × n_treated,
      ``cost`` (sum over the treated), ``roi`` = (incremental_value − cost) / cost
      (NaN when cost is 0);
    * ``expected_value``: the sum of ``expected_ev`` over the treated, what the
      policy expected; EV is net of cost, so it compares with
      ``realized_net_value`` = incremental_value − cost.

    A group without a treated or a holdout row gets NaN for the comparisons.
    """
    by = list(by)
    _check_outcomes(outcomes, by)
    frame = outcomes.loc[outcomes["arm"].isin(ARMS), by]
    arm = outcomes.loc[frame.index, "arm"]
    treated = (arm == "treated").to_numpy()
    holdout = ~treated
    retained = outcomes.loc[frame.index, "retained"].astype(bool).to_numpy()
    spend = outcomes.loc[frame.index, "realized_spend"].to_numpy(dtype=np.float64)
    cost = outcomes.loc[frame.index, "cost"].to_numpy(dtype=np.float64)
    ev = outcomes.loc[frame.index, "expected_ev"].to_numpy(dtype=np.float64)
    parts = pd.DataFrame(
        {
            "n_treated": treated.astype(np.int64),
            "n_holdout": holdout.astype(np.int64),
            "churned_treated": (treated & ~retained).astype(np.int64),
            "churned_holdout": (holdout & ~retained).astype(np.int64),
            "spend_t": np.where(treated, np.nan_to_num(spend), 0.0),
            "spend_h": np.where(holdout, np.nan_to_num(spend), 0.0),
            "cost": np.where(treated, np.nan_to_num(cost), 0.0),
            "expected_value": np.where(treated, np.nan_to_num(ev), 0.0),
        },
        index=frame.index,
    )
    if by:
        sums = (
            pd.concat([frame, parts], axis=1)
            .groupby(by, dropna=False, sort=True)[list(parts.columns)]
            .sum()
            .reset_index()
        )
    else:
        sums = parts.sum().to_frame().T
    return _compare(sums, by)


def _compare(sums: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The ``arm_comparison`` columns from per-group sums."""
    nt = sums["n_treated"].to_numpy(dtype=np.float64)
    nh = sums["n_holdout"].to_numpy(dtype=np.float64)
    xt = sums["churned_treated"].to_numpy(dtype=np.float64)
    xh = sums["churned_holdout"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ct, ch = xt / nt, xh / nh
        spend_t = sums["spend_t"].to_numpy(dtype=np.float64) / nt
        spend_h = sums["spend_h"].to_numpy(dtype=np.float64) / nh
    diff_low, diff_high = newcombe_interval(nt - xt, nt, nh - xh, nh)
    up_low, up_high = uplift_interval(xt, nt, xh, nh)
    cost = sums["cost"].to_numpy(dtype=np.float64)
    incremental = (spend_t - spend_h) * nt
    with np.errstate(divide="ignore", invalid="ignore"):
        roi = np.where(cost > 0, (incremental - cost) / cost, np.nan)
    out = pd.DataFrame(
        {
            "n_treated": nt.astype(np.int64),
            "n_holdout": nh.astype(np.int64),
            "retention_treated": 1.0 - ct,
            "retention_holdout": 1.0 - ch,
            "retention_diff": ch - ct,
            "retention_diff_low": diff_low,
            "retention_diff_high": diff_high,
            "churn_rate_treated": ct,
            "churn_rate_holdout": ch,
            "uplift": raw_uplift(xt, nt, xh, nh),
            "uplift_low": up_low,
            "uplift_high": up_high,
            "spend_treated": spend_t,
            "spend_holdout": spend_h,
            "incremental_value": incremental,
            "cost": cost,
            "roi": roi,
            "expected_value": sums["expected_value"].to_numpy(dtype=np.float64),
            "realized_net_value": incremental - cost,
        }
    )
    return pd.concat([sums[by].reset_index(drop=True), out], axis=1)


@dataclass(frozen=True)
class Posterior:
    """A Beta posterior of an action's uplift and the evidence behind it.

    ``low``/``high`` bound the 95% equal-tailed interval; ``raw_estimate`` is the
    unshrunk ``(c_h - c_t) / c_h`` (NaN without data); ``effective_n`` is the
    evidence's precision in the prior's pseudo-observations (see
    :func:`posterior_uplift`).
    """

    alpha: float
    beta: float
    mean: float
    low: float
    high: float
    n_treated: int
    n_holdout: int
    raw_estimate: float
    effective_n: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _raw_variance(
    n_treated: int, churned_treated: int, n_holdout: int, churned_holdout: int
) -> float:
    """Delta-method variance of ``1 - c_t / c_h`` from smoothed rates."""
    ct = (churned_treated + _SMOOTH) / (n_treated + 2 * _SMOOTH)
    ch = (churned_holdout + _SMOOTH) / (n_holdout + 2 * _SMOOTH)
    return ct * (1 - ct) / (n_treated * ch**2) + ct**2 * (1 - ch) / (n_holdout * ch**3)


def _truncated_at_zero(mean: float, variance: float) -> tuple[float, float]:
    """Mean and variance of ``N(mean, variance)`` truncated below at 0.

    Uses the inverse Mills ratio ``λ = φ(a) / (1 − Φ(a))`` with ``a = −mean / sd``,
    written with ``erfcx`` so it stays exact when 0 is far in either tail::

        E = mean + sd·λ        Var = variance·(1 + a·λ − λ²)
    """
    sd = math.sqrt(variance)
    a = -mean / sd
    mills = math.sqrt(2.0 / math.pi) / float(erfcx(a / math.sqrt(2.0)))
    shrink = max(1.0 + a * mills - mills * mills, 1e-12)
    return mean + sd * mills, variance * shrink


def posterior_uplift(
    n_treated: int,
    churned_treated: int,
    n_holdout: int,
    churned_holdout: int,
    prior_alpha: float,
    prior_beta: float,
) -> Posterior:
    """The Beta prior on uplift updated with one treated/holdout comparison.

    **The evidence** is the raw estimate ``û = 1 − c_t / c_h`` with its
    delta-method sampling variance::

        Var(û) ≈ c_t(1 − c_t) / (n_t c_h²) + c_t² (1 − c_h) / (n_h c_h³)

    (rates smoothed as in Agresti–Coull, z²/2 pseudo-churners and pseudo-stayers
    per arm, so zero counts stay finite and tiny arms count for less). The second
    term is the holdout's share: as ``n_holdout`` shrinks it dominates and the
    posterior stays close to the prior.

    **The update** is the conjugate normal one on the uplift scale: the prior's
    mean and variance and ``û`` are weighted by their precisions, so the posterior
    mean moves from the prior towards ``û`` exactly as far as the evidence's
    precision warrants, whatever the size or sign of the effect. Uplift lives on
    [0, 1] (an action's share of would-be churners saved), so the normal posterior
    is truncated at 0 (:func:`_truncated_at_zero`): evidence of harm pulls the mean
    towards 0, never below it. The result is moment-matched back to a Beta, whose
    equal-tailed interval is reported; :func:`arm_comparison` reports harm
    unclipped.

    Why not Beta–Binomial pseudo-counts ("saves among would-be churners"): they
    overstate the evidence (would-be churners are themselves estimated from the
    holdout), and the discount that corrects them scales with ``u(1 − u)``, so a
    small or negative effect would carry almost no weight and a prior far above
    the truth would never come down.

    ``effective_n`` is the evidence's precision in the prior's pseudo-observations,
    ``m₀(1 − m₀) / Var(û)`` for a prior mean ``m₀``: the posterior mean weighs
    ``û`` by ``effective_n`` against the prior's ``α + β + 1``. In 400 simulated
    comparisons each, churn 0.30 without the action: with a flat prior, 1 800
    treated and 200 held out, u = 0.25, the 95% interval covered the truth 94.5%
    of the time; with a prior of 0.08 (strength 20), 80 000 treated and 8 800 held
    out, u = 0.013, the posterior mean averaged 0.024 and the interval covered the
    truth 90% of the time.

    No treated, no holdout or no holdout churner: no evidence, the prior returns.
    """
    counts = (n_treated, churned_treated, n_holdout, churned_holdout)
    if min(counts) < 0 or churned_treated > n_treated or churned_holdout > n_holdout:
        raise ValueError(f"inconsistent counts {counts}")
    if prior_alpha <= 0 or prior_beta <= 0:
        raise ValueError(f"prior must be positive, got ({prior_alpha}, {prior_beta})")
    raw = float(raw_uplift(churned_treated, n_treated, churned_holdout, n_holdout))
    alpha, beta, effective = float(prior_alpha), float(prior_beta), 0.0
    if n_treated > 0 and n_holdout > 0 and churned_holdout > 0:
        strength = alpha + beta
        prior_mean = alpha / strength
        prior_var = prior_mean * (1.0 - prior_mean) / (strength + 1.0)
        data_var = _raw_variance(*counts)
        precision = 1.0 / prior_var + 1.0 / data_var
        normal_mean = (prior_mean / prior_var + raw / data_var) / precision
        mean, var = _truncated_at_zero(normal_mean, 1.0 / precision)
        mean = min(max(mean, _U_EPS), 1.0 - _U_EPS)
        # a Beta's variance is below mean(1 - mean); keep the match well inside
        var = min(var, 0.5 * mean * (1.0 - mean))
        concentration = mean * (1.0 - mean) / var - 1.0
        alpha, beta = mean * concentration, (1.0 - mean) * concentration
        effective = prior_mean * (1.0 - prior_mean) / data_var
    # betaincinv is what scipy.stats.beta.ppf evaluates, without importing stats
    low, high = betaincinv(alpha, beta, [0.025, 0.975])
    return Posterior(
        alpha=alpha,
        beta=beta,
        mean=alpha / (alpha + beta),
        low=float(low),
        high=float(high),
        n_treated=int(n_treated),
        n_holdout=int(n_holdout),
        raw_estimate=raw,
        effective_n=effective,
    )


def _arm_counts(frame: pd.DataFrame) -> tuple[int, int, int, int]:
    treated = frame["arm"] == "treated"
    holdout = frame["arm"] == "holdout"
    churned = ~frame["retained"].astype(bool)
    return (
        int(treated.sum()),
        int((treated & churned).sum()),
        int(holdout.sum()),
        int((holdout & churned).sum()),
    )


def update_parameters(
    outcomes: pd.DataFrame,
    priors: Mapping[str, tuple[float, float]],
    segment_column: str | None = None,
    min_n: int = 200,
) -> pd.DataFrame:
    """Posterior uplift per action, and per segment where the data allow.

    ``outcomes`` as for :func:`arm_comparison`; ``priors`` maps each action to its
    Beta ``(alpha, beta)`` (``UpliftPrior.alpha``/``.beta`` of ``policy.yml``).
    Every action in ``priors`` gets one row with ``segment`` None, from all its
    outcomes (with no outcomes the prior itself returns, ``effective_n`` 0). With a
    ``segment_column``, a segment value also gets a row when it has at least
    ``min_n`` treated and ``min_n`` holdout outcomes of that action; other segments
    use the action row. Segment rows start from the same policy prior (not from the
    action posterior, which would count their data twice). Segment values are
    strings; rows come sorted by action, then the action row before the segments.
    """
    columns = ["arm", "action", "retained"]
    if segment_column is not None:
        columns.append(segment_column)
    missing = [c for c in columns if c not in outcomes.columns]
    if missing:
        raise KeyError(f"outcomes lack the column(s) {missing}")
    frame = outcomes.loc[outcomes["arm"].isin(ARMS), columns]
    if frame["retained"].isna().any():
        raise ValueError("outcomes.retained has nulls: pass matured decisions only")
    rows: list[dict[str, Any]] = []

    def add(action: str, segment: str | None, part: pd.DataFrame) -> None:
        alpha, beta = priors[action]
        post = posterior_uplift(*_arm_counts(part), alpha, beta)
        rows.append(
            {
                "action": action,
                "segment": segment,
                "n_treated": post.n_treated,
                "n_holdout": post.n_holdout,
                "raw_estimate": post.raw_estimate,
                "prior_mean": alpha / (alpha + beta),
                "posterior_mean": post.mean,
                "low": post.low,
                "high": post.high,
                "alpha": post.alpha,
                "beta": post.beta,
                "effective_n": post.effective_n,
            }
        )

    for action in sorted(priors):
        of_action = frame[frame["action"] == action]
        add(action, None, of_action)
        if segment_column is None or of_action.empty:
            continue
        segments = of_action[segment_column].dropna().astype(str)
        for segment, part in of_action.loc[segments.index].groupby(segments):
            n_t, _, n_h, _ = _arm_counts(part)
            if n_t >= min_n and n_h >= min_n:
                add(action, str(segment), part)
    table = pd.DataFrame(rows, columns=list(PARAMETER_COLUMNS))
    table["segment"] = pd.Series([r["segment"] for r in rows], dtype=object)
    return table
