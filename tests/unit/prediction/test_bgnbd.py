"""The BG/NBD model (ml.prediction.bgnbd): the published CDNOW fit, recovery of known
parameters from simulated customers, the predictions against the paper and against
a Monte-Carlo simulation of the BG/NBD process, and the input checks."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from ml.prediction import bgnbd
from ml.prediction.bgnbd import BgNbdParams

# Fader, Hardie & Lee (2005), Table / section 5: the BG/NBD fit on the CDNOW
# cohort (2,357 customers, 39 weeks of calibration data, time in weeks).
CDNOW_PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
CDNOW_LOG_LIKELIHOOD = -9582.4
CDNOW = BgNbdParams(**CDNOW_PUBLISHED)


def _cdnow_summary() -> pd.DataFrame:
    """The CDNOW summary shipped in the lifetimes wheel (data only, no code)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the CDNOW data ships with the dev dependency lifetimes (absent)")
    path = (
        Path(spec.submodule_search_locations[0])
        / "datasets"
        / "cdnow_customers_summary.csv"
    )
    if not path.is_file():
        pytest.skip(f"lifetimes is installed but its CDNOW summary is absent: {path}")
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def cdnow_fit() -> BgNbdParams:
    """The fit on the CDNOW summary (weeks), shared by the tests that compare."""
    data = _cdnow_summary()
    return bgnbd.fit_bgnbd(data["frequency"], data["recency"], data["T"])


@dataclasses.dataclass(frozen=True)
class World:
    """Simulated customers: history in (0, T] and what happened in (T, T + t]."""

    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    alive_at_T: np.ndarray
    future_purchases: np.ndarray


def _simulate(
    rng: np.random.Generator,
    params: BgNbdParams,
    T: np.ndarray,
    horizon: float,
) -> World:
    """Customers drawn from the BG/NBD process itself, all at once.

    Each customer gets lambda ~ Gamma(r, rate alpha) and p ~ Beta(a, b), buys at
    Poisson rate lambda from the first purchase at time 0 and drops out right after
    each repeat purchase with probability p; the process runs to T + horizon.
    """
    n = T.size
    rate = rng.gamma(params.r, 1.0 / params.alpha, n)
    dropout = rng.beta(params.a, params.b, n)
    end = T + horizon
    clock = np.zeros(n)
    running = np.ones(n, dtype=bool)
    alive = np.ones(n, dtype=bool)
    frequency = np.zeros(n)
    recency = np.zeros(n)
    future = np.zeros(n)
    while running.any():
        idx = np.flatnonzero(running)
        clock[idx] += rng.exponential(1.0 / np.maximum(rate[idx], 1e-300))
        past_end = clock[idx] > end[idx]
        running[idx[past_end]] = False
        buy = idx[~past_end]
        seen = clock[buy] <= T[buy]
        frequency[buy[seen]] += 1
        recency[buy[seen]] = clock[buy[seen]]
        future[buy[~seen]] += 1
        drops = rng.random(buy.size) < dropout[buy]
        running[buy[drops]] = False
        alive[buy[drops & seen]] = False
    return World(frequency, recency, T, alive, future)


@pytest.fixture(scope="module")
def cdnow_world() -> World:
    """60,000 customers with the CDNOW parameters, T between 27 and 39 weeks (the
    cohort's 12 weeks of first purchases), followed for 39 more weeks."""
    rng = np.random.default_rng(20050101)
    return _simulate(rng, CDNOW, rng.uniform(27.0, 39.0, 60_000), horizon=39.0)


def _groups(world: World) -> list[tuple[str, np.ndarray]]:
    """Customer groups by history: frequency bucket x recency relative to T."""
    x, late = world.frequency, world.recency > world.T / 2
    buckets = {"x=0": x == 0, "x=1": x == 1, "x=2-3": (x >= 2) & (x <= 3)}
    buckets["x>=4"] = x >= 4
    groups = [("x=0", buckets.pop("x=0"))]
    for name, rows in buckets.items():
        groups.append((f"{name}, early last purchase", rows & ~late))
        groups.append((f"{name}, late last purchase", rows & late))
    return groups


# --------------------------------------------------------------------------
# fit


def test_fit_reproduces_the_published_cdnow_parameters(
    cdnow_fit: BgNbdParams,
) -> None:
    """On the CDNOW summary the fit gives the paper's r, alpha, a, b and LL."""
    data = _cdnow_summary()
    assert len(data) == 2357
    fit = cdnow_fit
    for name, published in CDNOW_PUBLISHED.items():
        assert getattr(fit, name) == pytest.approx(published, abs=6e-4), name
    assert fit.log_likelihood == pytest.approx(CDNOW_LOG_LIKELIHOOD, abs=0.05)
    assert fit.n_customers == 2357
    # the paper's parameters are no better than the fitted ones
    at_published = bgnbd.bgnbd_log_likelihood(
        CDNOW, data["frequency"], data["recency"], data["T"]
    )
    assert at_published <= fit.log_likelihood
    assert at_published == pytest.approx(CDNOW_LOG_LIKELIHOOD, abs=0.1)


def test_weighted_fit_on_grouped_rows_equals_the_fit_on_all_rows(
    cdnow_fit: BgNbdParams,
) -> None:
    """Grouping identical (x, t_x, T) rows with counts as weights changes nothing."""
    data = _cdnow_summary()
    full = cdnow_fit
    grouped = (
        data.groupby(["frequency", "recency", "T"]).size().reset_index(name="count")
    )
    assert len(grouped) < len(data) / 2
    fit = bgnbd.fit_bgnbd(
        grouped["frequency"],
        grouped["recency"],
        grouped["T"],
        weights=grouped["count"],
    )
    assert fit.n_customers == full.n_customers
    assert fit.log_likelihood == pytest.approx(full.log_likelihood, abs=1e-6)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fit, name) == pytest.approx(getattr(full, name), rel=1e-5)


def test_fit_recovers_known_parameters_from_simulated_customers() -> None:
    """5,000 customers drawn from the BG/NBD process with known parameters: the
    purchase-rate parameters come back within 15 %, the less identified dropout
    parameters within 40 %, and the likelihood-ratio statistic of the true
    parameters is within the chi-square(4) range of sampling noise."""
    true = BgNbdParams(r=0.5, alpha=6.0, a=0.7, b=3.0)
    rng = np.random.default_rng(7)
    world = _simulate(rng, true, rng.uniform(26.0, 52.0, 5000), horizon=0.0)
    fit = bgnbd.fit_bgnbd(world.frequency, world.recency, world.T)
    assert fit.r == pytest.approx(true.r, rel=0.15)
    assert fit.alpha == pytest.approx(true.alpha, rel=0.15)
    assert fit.a == pytest.approx(true.a, rel=0.4)
    assert fit.b == pytest.approx(true.b, rel=0.4)
    at_true = bgnbd.bgnbd_log_likelihood(true, world.frequency, world.recency, world.T)
    statistic = 2.0 * (fit.log_likelihood - at_true)
    assert 0.0 <= statistic < stats.chi2.ppf(0.999, df=4)


def test_fit_does_not_depend_on_the_time_unit(cdnow_fit: BgNbdParams) -> None:
    """Days instead of weeks: r, a, b and the predictions are unchanged, alpha is
    7 times larger, and the log-likelihood moves by the Jacobian (x ln 7 for each
    customer's x purchase-time densities)."""
    data = _cdnow_summary()
    weeks = cdnow_fit
    days = bgnbd.fit_bgnbd(data["frequency"], 7 * data["recency"], 7 * data["T"])
    assert days.r == pytest.approx(weeks.r, rel=1e-5)
    assert days.alpha == pytest.approx(7 * weeks.alpha, rel=1e-5)
    assert days.a == pytest.approx(weeks.a, rel=1e-5)
    assert days.b == pytest.approx(weeks.b, rel=1e-5)
    jacobian = data["frequency"].sum() * np.log(7.0)
    assert days.log_likelihood == pytest.approx(
        weeks.log_likelihood - jacobian, abs=1e-5
    )


def test_log_likelihood_gradient_matches_finite_differences() -> None:
    """The analytic gradient the optimiser uses, against central differences."""
    data = _cdnow_summary()
    x = data["frequency"].to_numpy(float)
    t_x, big_t = data["recency"].to_numpy(float), data["T"].to_numpy(float)
    for point in (
        [0.24, 4.4, 0.79, 2.4],
        [1.5, 0.3, 2.0, 0.5],
        [0.05, 40.0, 5.0, 30.0],
    ):
        log_params = np.log(point)

        def total(v: np.ndarray) -> float:
            return float(bgnbd._log_likelihood_terms(v, x, t_x, big_t)[0].sum())

        _, grad = bgnbd._log_likelihood_terms(log_params, x, t_x, big_t)
        numeric = optimize.approx_fprime(log_params, total, 1e-6)
        np.testing.assert_allclose(grad.sum(axis=0), numeric, rtol=1e-4, atol=1e-3)


def test_penalizer_keeps_a_degenerate_fit_finite() -> None:
    """Ten customers, none of whom came back: unpenalised, the log-likelihood
    sum(r ln(alpha / (alpha + T))) goes to its supremum 0 as alpha runs off to
    infinity, and alpha stops at the bound; a small penalizer gives an interior
    fit, with a lower (unpenalised) log-likelihood."""
    zeros = np.zeros(10)
    big_t = np.linspace(10.0, 40.0, 10)
    plain = bgnbd.fit_bgnbd(zeros, zeros, big_t)
    assert np.log(plain.alpha) == pytest.approx(bgnbd.LOG_PARAM_BOUND, abs=1e-6)
    assert plain.log_likelihood == pytest.approx(0.0, abs=1e-6)
    penalized = bgnbd.fit_bgnbd(zeros, zeros, big_t, penalizer=0.01)
    for value in penalized.as_dict().values():
        assert np.isfinite(value)
    for name in ("r", "alpha", "a", "b"):
        assert abs(np.log(getattr(penalized, name))) < bgnbd.LOG_PARAM_BOUND - 1
    assert penalized.log_likelihood < plain.log_likelihood


def test_params_dataclass() -> None:
    params = BgNbdParams(r=0.2, alpha=4.0, a=0.8, b=2.5, log_likelihood=-1.5)
    assert params.as_dict() == {
        "r": 0.2,
        "alpha": 4.0,
        "a": 0.8,
        "b": 2.5,
        "log_likelihood": -1.5,
        "n_customers": 0,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.r = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="parameter b must be > 0"):
        BgNbdParams(r=0.2, alpha=4.0, a=0.8, b=0.0)
    with pytest.raises(ValueError, match="parameter alpha must be > 0"):
        BgNbdParams(r=0.2, alpha=float("nan"), a=0.8, b=1.0)


# --------------------------------------------------------------------------
# predictions


def test_expected_purchases_of_the_papers_example_customer() -> None:
    """FHL 2005: a customer with x = 2, t_x = 30.43, T = 38.86 (weeks) is expected
    to make 1.226 purchases in the next 39 weeks."""
    expected = bgnbd.expected_purchases(CDNOW, 39.0, [2], [30.43], [38.86])
    assert expected.shape == (1,)
    assert expected[0] == pytest.approx(1.226, abs=5e-4)


def test_p_alive_is_one_without_repeat_purchases_and_grows_with_recency() -> None:
    assert np.all(bgnbd.p_alive(CDNOW, [0, 0, 0], [0, 0, 0], [1.0, 20.0, 80.0]) == 1)
    recency = np.linspace(0.5, 38.0, 30)
    for x in (1, 3, 10):
        alive = bgnbd.p_alive(CDNOW, np.full(30, x), recency, np.full(30, 38.0))
        assert np.all(np.diff(alive) > 0)
        assert np.all((alive > 0) & (alive < 1))
    # a purchase at the very end of the window: the odds of dropout are a/(b+x-1)
    at_end = bgnbd.p_alive(CDNOW, [3], [38.0], [38.0])
    assert at_end[0] == pytest.approx(1 / (1 + CDNOW.a / (CDNOW.b + 2)), rel=1e-12)
    # the longer the silence after the last purchase, the lower P(alive)
    silence = bgnbd.p_alive(
        CDNOW, np.full(5, 4), np.full(5, 10.0), [10, 20, 40, 80, 160]
    )
    assert np.all(np.diff(silence) < 0)
    # a very long silence does not overflow: P(alive) goes to 0
    assert bgnbd.p_alive(CDNOW, [200], [1.0], [1e6])[0] == 0.0


def test_expected_purchases_sanity() -> None:
    """0 for t = 0; increasing in t and in recency; between P(at least one) and
    E[lambda] t; the hypergeometric form agrees with the quadrature."""
    assert np.all(bgnbd.expected_purchases(CDNOW, 0.0, [0, 2], [0, 5.0], [10, 10]) == 0)
    horizon = np.linspace(1.0, 200.0, 25)
    grow = bgnbd.expected_purchases(
        CDNOW, horizon, np.full(25, 2), np.full(25, 30.43), np.full(25, 38.86)
    )
    assert np.all(np.diff(grow) > 0)
    recency = np.linspace(1.0, 38.0, 25)
    later = bgnbd.expected_purchases(
        CDNOW, 39.0, np.full(25, 5), recency, np.full(25, 38.0)
    )
    assert np.all(np.diff(later) > 0)
    data = _cdnow_summary()
    x = data["frequency"].to_numpy(float)
    t_x, big_t = data["recency"].to_numpy(float), data["T"].to_numpy(float)
    expected = bgnbd.expected_purchases(CDNOW, 39.0, x, t_x, big_t)
    no_purchase = bgnbd.p_no_purchase(CDNOW, 39.0, x, t_x, big_t)
    alive = bgnbd.p_alive(CDNOW, x, t_x, big_t)
    assert np.all(expected >= 1 - no_purchase - 1e-12)  # E[N] >= P(N >= 1)
    assert np.all(expected <= alive * (CDNOW.r + x) * 39.0 / (CDNOW.alpha + big_t))
    for params in (CDNOW, BgNbdParams(r=2.0, alpha=3.0, a=2.5, b=1.5)):
        t = np.full(x.size, 39.0)
        by_hyp2f1 = bgnbd._expected_if_alive_hyp2f1(params, t, x, big_t)
        by_quadrature = bgnbd._expected_if_alive_quadrature(params, t, x, big_t)
        np.testing.assert_allclose(by_hyp2f1, by_quadrature, rtol=1e-8)


# Eq. 10 without P(alive), E[purchases in (T, T+t] | alive], computed with mpmath's
# hyp2f1 at 60 significant digits (a = 1 as 1 + 1e-30): (r, alpha, a, b), x, T, t,
# value. Among them: heavy buyers (x = 300), where scipy's hyp2f1 in the original
# form of eq. 10 overflows to NaN; a = 1 exactly; a concentrated dropout prior
# (a = 20, b = 100), where scipy's hyp2f1 fails and the quadrature takes over; and
# horizons 1e5 times alpha + T.
EQ10_REFERENCE = [
    ((0.243, 4.414, 0.793, 2.426), 50, 40.0, 39.0, 34.09124019335353),
    ((0.243, 4.414, 0.793, 2.426), 300, 40.0, 39.0, 202.4060806679103),
    ((0.243, 4.414, 0.793, 2.426), 300, 1000.0, 100000.0, 2326.7783939047795),
    ((0.243, 4.414, 0.793, 2.426), 5, 1.0, 100000.0, 213.44324612609398),
    ((0.8, 5, 1.0, 2.0), 1, 40.0, 39.0, 1.2252897438386627),
    ((0.8, 5, 1.0, 2.0), 50, 1000.0, 1000.0, 35.309314165391555),
    ((5, 50, 20, 100), 50, 40.0, 1000.0, 8.894736842095295),
    ((5, 50, 20, 100), 300, 1.0, 100000.0, 22.05263157894737),
    ((5, 50, 20, 100), 5, 1000.0, 0.5, 0.00475990993036327),
    ((0.5, 0.1, 0.3, 0.2), 5, 40.0, 100000.0, 1766.9550374440707),
    ((0.5, 0.1, 0.3, 0.2), 0, 1.0, 0.5, 0.19200546906135008),
    ((2.0, 3.0, 2.5, 1.5), 300, 1.0, 39.0, 196.2429643947898),
]


@pytest.mark.parametrize(("params", "x", "T", "t", "reference"), EQ10_REFERENCE)
def test_expected_purchases_matches_high_precision_values(
    params: tuple[float, float, float, float],
    x: int,
    T: float,
    t: float,
    reference: float,
) -> None:
    """Divided by P(alive), expected_purchases is eq. 10's conditional expectation
    given alive; it matches 60-digit values to 1e-6 in every regime above."""
    model = BgNbdParams(*params)
    history = ([x], [T / 2 if x else 0.0], [T])
    expected = bgnbd.expected_purchases(model, t, *history)
    alive = bgnbd.p_alive(model, *history)
    assert np.isfinite(expected[0])
    assert expected[0] / alive[0] == pytest.approx(reference, rel=1e-6)


def test_expected_purchases_is_continuous_through_a_equal_one() -> None:
    """At a = 1 eq. 10 is 0/0 and the quadrature takes over; on both sides the
    hypergeometric form gives nearly the same values."""
    history = ([0, 1, 4, 25], [0.0, 3.0, 20.0, 37.0], [38.0, 38.0, 38.0, 38.0])
    values = [
        bgnbd.expected_purchases(BgNbdParams(0.8, 5.0, a, 2.0), 39.0, *history)
        for a in (1 - 1e-4, 1.0, 1 + 1e-4)
    ]
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values[0], values[1], rtol=1e-3)
    np.testing.assert_allclose(values[2], values[1], rtol=1e-3)


def test_p_no_purchase_sanity() -> None:
    """1 for t = 0, decreasing in t towards 1 - P(alive); the closed form."""
    x, t_x, big_t = [2, 0, 7], [30.43, 0.0, 12.0], [38.86, 38.86, 38.86]
    assert np.all(bgnbd.p_no_purchase(CDNOW, 0.0, x, t_x, big_t) == 1)
    curve = np.array(
        [bgnbd.p_no_purchase(CDNOW, t, x, t_x, big_t) for t in (1, 5, 20, 100, 1000)]
    )
    assert np.all(np.diff(curve, axis=0) < 0)
    floor = 1 - bgnbd.p_alive(CDNOW, x, t_x, big_t)
    assert np.all(curve > floor)
    far = bgnbd.p_no_purchase(CDNOW, 1e40, x, t_x, big_t)
    np.testing.assert_allclose(far, floor, atol=1e-3)
    alive = 1 - floor[0]
    silent = ((CDNOW.alpha + 38.86) / (CDNOW.alpha + 38.86 + 39.0)) ** (CDNOW.r + 2)
    assert bgnbd.p_no_purchase(CDNOW, 39.0, [2], [30.43], [38.86])[0] == pytest.approx(
        1 - alive + alive * silent, rel=1e-12
    )
    # per-customer horizons
    per_customer = bgnbd.p_no_purchase(CDNOW, [1.0, 5.0, 20.0], x, t_x, big_t)
    np.testing.assert_allclose(per_customer, curve[[0, 1, 2], [0, 1, 2]])


@pytest.mark.parametrize("quantity", ["p_alive", "p_no_purchase", "expected_purchases"])
def test_predictions_match_a_simulation_of_the_process(
    cdnow_world: World, quantity: str
) -> None:
    """60,000 customers simulated with the CDNOW parameters: in every group of
    histories (frequency bucket x early or late last purchase) the mean prediction
    equals the simulated outcome (alive at T; no purchase in the next 39 weeks;
    purchases in the next 39 weeks) within 4 standard errors."""
    world = cdnow_world
    history = (world.frequency, world.recency, world.T)
    if quantity == "p_alive":
        predicted = bgnbd.p_alive(CDNOW, *history)
        outcome = world.alive_at_T.astype(float)
    elif quantity == "p_no_purchase":
        predicted = bgnbd.p_no_purchase(CDNOW, 39.0, *history)
        outcome = (world.future_purchases == 0).astype(float)
    else:
        predicted = bgnbd.expected_purchases(CDNOW, 39.0, *history)
        outcome = world.future_purchases
    for name, rows in _groups(world):
        assert rows.sum() >= 500, name
        error = outcome[rows].mean() - predicted[rows].mean()
        standard_error = (outcome[rows] - predicted[rows]).std() / np.sqrt(rows.sum())
        assert abs(error) < 4 * standard_error + 1e-3, (name, error, standard_error)


def test_simulation_tells_the_no_purchase_score_from_a_naive_one(
    cdnow_world: World,
) -> None:
    """The Monte-Carlo comparison has the power to reject a wrong score: the
    naive P(alive) * exp(-E[lambda] t) + (1 - P(alive)) (plugging in the mean
    rate instead of averaging over the posterior) is far off where the right
    one is not."""
    world = cdnow_world
    history = (world.frequency, world.recency, world.T)
    alive = bgnbd.p_alive(CDNOW, *history)
    mean_rate = (CDNOW.r + world.frequency) / (CDNOW.alpha + world.T)
    naive = 1 - alive + alive * np.exp(-mean_rate * 39.0)
    right = bgnbd.p_no_purchase(CDNOW, 39.0, *history)
    observed = (world.future_purchases == 0).mean()
    standard_error = np.sqrt(observed * (1 - observed) / world.T.size)
    assert abs(right.mean() - observed) < 4 * standard_error
    assert abs(naive.mean() - observed) > 10 * standard_error


# --------------------------------------------------------------------------
# input checks


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "message"),
    [
        ([1, 2], [1.0], [2.0, 3.0], "same length"),
        ([1, -1], [1.0, 0.0], [2.0, 3.0], "frequency must be non-negative"),
        ([1, 2], [1.0, -0.5], [2.0, 3.0], "recency must be non-negative"),
        ([1, 2], [1.0, 2.0], [2.0, -3.0], "T must be non-negative"),
        ([1, 2], [1.0, 4.0], [2.0, 3.0], r"row 1 has recency 4.0 > T 3.0"),
        ([1, 2.5], [1.0, 2.0], [2.0, 3.0], "integer-valued"),
        ([1, 0], [1.0, 2.0], [2.0, 3.0], "recency must be 0 when frequency is 0"),
        ([1, np.nan], [1.0, 2.0], [2.0, 3.0], "frequency must be finite"),
        ([1, 2], [1.0, 2.0], [2.0, np.inf], "T must be finite"),
        ([[1, 2]], [[1.0, 2.0]], [[2.0, 3.0]], "one-dimensional"),
    ],
)
def test_invalid_histories_are_rejected(
    frequency: list[float], recency: list[float], T: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        bgnbd.fit_bgnbd(frequency, recency, T)
    with pytest.raises(ValueError, match=message):
        bgnbd.p_alive(CDNOW, frequency, recency, T)
    with pytest.raises(ValueError, match=message):
        bgnbd.expected_purchases(CDNOW, 10.0, frequency, recency, T)
    with pytest.raises(ValueError, match=message):
        bgnbd.p_no_purchase(CDNOW, 10.0, frequency, recency, T)


def test_invalid_fit_options_and_horizons_are_rejected() -> None:
    history = ([1, 0], [1.0, 0.0], [2.0, 3.0])
    with pytest.raises(ValueError, match="weights must have one value per row"):
        bgnbd.fit_bgnbd(*history, weights=[1.0])
    with pytest.raises(ValueError, match="weights must be non-negative"):
        bgnbd.fit_bgnbd(*history, weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="at least one customer"):
        bgnbd.fit_bgnbd(*history, weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="at least one customer"):
        bgnbd.fit_bgnbd([], [], [])
    with pytest.raises(ValueError, match="penalizer must be finite and >= 0"):
        bgnbd.fit_bgnbd(*history, penalizer=-0.1)
    with pytest.raises(ValueError, match="t must be finite and non-negative"):
        bgnbd.expected_purchases(CDNOW, -1.0, *history)
    with pytest.raises(ValueError, match="t must be finite and non-negative"):
        bgnbd.p_no_purchase(CDNOW, np.nan, *history)
    with pytest.raises(ValueError, match="one value per customer"):
        bgnbd.p_no_purchase(CDNOW, [1.0, 2.0, 3.0], *history)
