"""Evaluation against the simulator's truth, on a hand-made truth and warehouse.

A real simulated world with a trained model costs minutes; the evaluation only needs the
truth files (``truth/customers.parquet``, ``truth/state/world.json``) and the marts that
:func:`ml.decision.decide_step.load_candidates` and the evaluation read, so these are
written by hand with known uplifts and checked against hand computations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.config.policy import PolicyConfig
from ml.config.settings import Settings
from ml.contract.schema import ACTIONS
from ml.decision.decide_step import DDL as DECISION_DDL
from ml.feedback.outcomes import DDL as OUTCOMES_DDL
from ml.sim.evaluate import (
    COUNTERFACTUALS,
    POLICIES,
    ContactLog,
    channel_reach,
    counterfactual_dir,
    evaluate_day,
    evaluate_range,
    evaluation_columns,
    true_uplift_arrays,
    true_uplift_by_action,
    truth_available,
)
from ml.storage.warehouse import connect

DAY = date(2024, 6, 1)
FALLBACK_DAY = DAY + timedelta(days=1)
ANSWER, BOUNCE = 0.5, 0.2
REACH = {"call": ANSWER, "voucher": 1.0, "email": 1.0 - BOUNCE}
N = 40
# spend_90d = 300 and spend_180d = 600 give a value at risk of 100 with H = 30
VALUE_AT_RISK = 100.0


def _policy(**update: object) -> PolicyConfig:
    """A small policy built here, so the test does not depend on policy.yml."""
    data: dict[str, object] = {
        "actions": [
            {
                "name": "call",
                "channel": "phone",
                "unit_cost": 8.0,
                "uplift": {"mean": 0.3},
                "eligibility": {"min_value_at_risk": 50.0},
            },
            {
                "name": "voucher",
                "channel": "voucher",
                "unit_cost": 0.5,
                "redeem_cost": 10.0,
                "redeem_rate": 0.3,
                "uplift": {"mean": 0.2},
                "eligibility": {"min_value_at_risk": 20.0},
            },
            {
                "name": "email",
                "channel": "email",
                "unit_cost": 0.05,
                "uplift": {"mean": 0.08},
            },
        ],
        "capacity": {"phone": 5, "voucher": 10, "email": 100},
        "daily_budget": 1000.0,
        "policy_version": "test",
    }
    data.update(update)
    return PolicyConfig.model_validate(data)


def _ids(n: int) -> list[str]:
    return [f"C{i:08d}" for i in range(1, n + 1)]


def _write_truth(settings: Settings, uplift: dict[str, np.ndarray]) -> None:
    truth = settings.truth_dir
    (truth / "state").mkdir(parents=True, exist_ok=True)
    n = len(next(iter(uplift.values())))
    frame = pd.DataFrame({"customer_id": _ids(n)})
    for action in ACTIONS:
        frame[f"response_{action}"] = np.where(
            uplift[action] > 0,
            "persuadable",
            np.where(uplift[action] < 0, "sleeping_dog", "sure_thing"),
        )
    for action in ACTIONS:
        frame[f"uplift_{action}"] = uplift[action]
    frame.to_parquet(truth / "customers.parquet", index=False)
    world = {
        "version": 1,
        "start": "2023-01-01",
        "next_day": "2024-07-01",
        "config": {
            "seed": 1,
            "actions": {"call_answer_rate": ANSWER, "email_bounce_rate": BOUNCE},
        },
    }
    (truth / "state" / "world.json").write_text(json.dumps(world))


def _settings(tmp_path: Path) -> Settings:
    config_file = tmp_path / "loopline.yml"
    config_file.write_text("horizon_days: 30\n")
    return Settings(home=tmp_path / "home", config_file=config_file)


def _write_warehouse(
    settings: Settings, p_churn: np.ndarray, decisions: pd.DataFrame
) -> None:
    """Feature snapshots of DAY (scored) and FALLBACK_DAY (not scored), the scores
    and the decisions."""
    _write_nights(settings, p_churn, [DAY], decisions, unscored=[FALLBACK_DAY])


def _write_nights(
    settings: Settings,
    p_churn: np.ndarray,
    nights: list[date],
    decisions: pd.DataFrame,
    unscored: list[date] | None = None,
) -> None:
    """Feature snapshots of ``nights`` and ``unscored``, scores of ``nights`` only
    (every night the same ``p_churn``), and the decisions."""
    settings.root.mkdir(parents=True, exist_ok=True)
    ids = _ids(len(p_churn))
    days = [*nights, *(unscored or [])]
    features = pd.DataFrame(
        {
            "customer_id": ids * len(days),
            "as_of_date": [day for day in days for _ in ids],
            "plan": "basic",
            "region": "north",
            "recency_days": 10,
            "tx_count_180d": 5,
            "spend_90d": 300.0,
            "spend_180d": 600.0,
        }
    )
    scores = pd.DataFrame(
        {
            "run_date": [night for night in nights for _ in ids],
            "customer_id": ids * len(nights),
            "p_churn": np.tile(p_churn, len(nights)),
            "model_version": "3",
            "model_alias": "champion",
        }
    )
    with connect(settings.warehouse_path) as con:
        con.execute(DECISION_DDL)
        con.register("_features", features)
        con.register("_scores", scores)
        con.register("_decisions", decisions)
        con.execute("create table marts.customer_features as select * from _features")
        con.execute("create table marts.scores as select * from _scores")
        if not decisions.empty:
            con.execute("insert into marts.decisions by name select * from _decisions")


def _decision_rows(
    day: date, rows: list[tuple[str, str, str | None, float]]
) -> pd.DataFrame:
    """marts.decisions rows from (customer_id, arm, action, p_churn)."""
    frame = pd.DataFrame(rows, columns=["customer_id", "arm", "action", "p_churn"])
    return frame.assign(
        decision_id=[f"d{day:%m%d}{i:04d}" for i in range(len(frame))],
        run_date=day,
        value_at_risk=VALUE_AT_RISK,
        chosen_ev=0.0,
        reason_codes="",
        policy_version="test",
        model_version="3",
        policy_mode="model",
    )


def test_true_uplift_arrays_weight_uplift_by_reach(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    uplift = {
        "call": np.array([0.4, -0.2, 0.0]),
        "voucher": np.array([0.1, 0.3, -0.5]),
        "email": np.array([0.05, 0.0, 0.25]),
    }
    assert not truth_available(settings)
    _write_truth(settings, uplift)
    assert truth_available(settings)
    assert channel_reach(settings) == pytest.approx(REACH)
    ids = ["C00000003", "C00000001", "X-unknown", "C00000002"]
    arrays = true_uplift_arrays(settings, ids)
    assert set(arrays) == set(ACTIONS)
    order = [2, 0, None, 1]
    for action in ACTIONS:
        expected = [
            0.0 if i is None else REACH[action] * uplift[action][i] for i in order
        ]
        assert arrays[action] == pytest.approx(expected)
    assert true_uplift_arrays(settings, [])["call"].shape == (0,)


def _write_pairs(
    settings: Settings, rows: list[tuple[str, int | None, int | None]]
) -> None:
    """Counterfactual pairs (decision_id, first purchase contacted, untreated)."""
    frame = pd.DataFrame(
        rows,
        columns=["decision_id", "first_purchase_contacted", "first_purchase_untreated"],
    ).astype({"first_purchase_contacted": "Int32", "first_purchase_untreated": "Int32"})
    folder = counterfactual_dir(settings) / f"dt={DAY + timedelta(days=1)}"
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "part-0000.parquet", index=False)


def _write_outcomes(
    settings: Settings, rows: list[tuple[str, date, str, str, bool]]
) -> None:
    """marts.decision_outcomes rows from (decision_id, run_date, arm, action,
    is_randomized)."""
    frame = pd.DataFrame(
        rows, columns=["decision_id", "run_date", "arm", "action", "is_randomized"]
    )
    settings.root.mkdir(parents=True, exist_ok=True)
    with connect(settings.warehouse_path) as con:
        con.execute("create schema if not exists marts")
        con.execute(OUTCOMES_DDL)
        con.register("_outcomes", frame)
        con.execute(
            "insert into marts.decision_outcomes by name select *, "
            "run_date + 30 as matured_on, 'C00000001' as customer_id, "
            "true as retained, false as overridden from _outcomes"
        )


def test_true_uplift_by_action_compares_the_pairs_of_the_treated_arm(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    later = DAY + timedelta(days=5)
    _write_outcomes(
        settings,
        [
            ("c1", DAY, "treated", "call", True),
            ("c2", DAY, "treated", "call", True),
            ("c3", DAY, "treated", "call", True),
            ("c4", DAY, "treated", "call", True),
            ("c5", DAY, "holdout", "call", True),  # held out: never delivered
            ("c6", DAY, "treated", "call", False),  # a person's decision
            ("c7", later, "treated", "call", True),  # outside the range
            ("e1", DAY, "treated", "email", True),
            ("e2", DAY, "treated", "email", True),
            ("e3", DAY, "treated", "email", True),
            ("v1", DAY, "treated", "voucher", True),  # no pair
        ],
    )
    assert true_uplift_by_action(settings, DAY, DAY).empty  # no pairs yet
    _write_pairs(
        settings,
        [
            # call: 1 of 4 contacted copies churned, 2 of 4 untreated ones
            ("c1", None, None),
            ("c2", 3, None),
            ("c3", 1, 20),
            ("c4", 12, 2),
            ("c5", None, None),
            ("c6", None, None),
            ("c7", None, 5),
            # e-mail pushes one customer away: 2 of 3 against 1 of 3
            ("e1", None, None),
            ("e2", None, 4),
            ("e3", 9, 9),
        ],
    )
    result = true_uplift_by_action(settings, DAY, DAY)
    assert list(result.columns) == [
        "action",
        "n",
        "churn_contacted",
        "churn_untreated",
        "true_uplift",
    ]
    by_action = result.set_index("action")
    assert list(by_action.index) == ["call", "email"]  # in ACTIONS order, no voucher
    assert by_action.loc["call", "n"] == 4
    assert by_action.loc["call", "churn_contacted"] == pytest.approx(0.25)
    assert by_action.loc["call", "churn_untreated"] == pytest.approx(0.5)
    assert by_action.loc["call", "true_uplift"] == pytest.approx(0.5)
    assert by_action.loc["email", "true_uplift"] == pytest.approx(1 - 2 / 1)
    # the later date joins when the range covers it: 2 of 5 against 2 of 5
    wider = true_uplift_by_action(settings, DAY, later).set_index("action")
    assert wider.loc["call", "n"] == 5
    assert wider.loc["call", "true_uplift"] == pytest.approx(0.0)


@dataclass
class Case:
    settings: Settings
    policy: PolicyConfig
    uplift: dict[str, np.ndarray]
    p: np.ndarray


@pytest.fixture
def case(tmp_path: Path) -> Case:
    """40 customers with known uplifts and a mediocre hand-made policy plan."""
    rng = np.random.default_rng(7)
    kinds = rng.choice([0.6, 0.0, -0.4], size=(N, len(ACTIONS)), p=[0.4, 0.4, 0.2])
    uplift = {a: kinds[:, k] * [1.0, 0.8, 0.5][k] for k, a in enumerate(ACTIONS)}
    p = rng.uniform(0.05, 0.9, size=N)
    settings = _settings(tmp_path)
    _write_truth(settings, uplift)
    ids = _ids(N)
    rows: list[tuple[str, str, str | None, float]] = []
    for i, cid in enumerate(ids):
        if i < 4:
            rows.append((cid, "treated", "call", p[i]))
        elif i == 4:
            rows.append((cid, "holdout", "call", p[i]))
        elif i < 13:
            rows.append((cid, "treated", "voucher", p[i]))
        elif i < 30:
            rows.append((cid, "treated", "email", p[i]))
        elif i < 32:
            rows.append((cid, "review", "call", p[i]))
        else:
            rows.append((cid, "none", None, p[i]))
    _write_warehouse(settings, p, _decision_rows(DAY, rows))
    return Case(settings, _policy(), uplift, p)


def _hand_value(
    ids: list[int],
    action: str,
    p: np.ndarray,
    uplift: dict[str, np.ndarray],
    policy: PolicyConfig,
) -> float:
    cost = policy.costs()[action]
    return float(
        sum(
            p[i] * VALUE_AT_RISK * REACH[action] * uplift[action][i] - cost for i in ids
        )
    )


def test_evaluate_day_values_every_plan_with_the_truth(
    case: Case,
) -> None:
    settings, policy, uplift, p_churn = case.settings, case.policy, case.uplift, case.p
    row = evaluate_day(settings, DAY, policy)
    assert row is not None
    assert row["run_date"] == DAY and row["policy_mode"] == "model"
    assert row["customers"] == N
    for name in POLICIES:
        for metric in ("value", "cost", "treated"):
            assert f"{metric}_{name}" in row
    # the plan as allocated: treated and holdout rows, the holdout valued as treated
    planned = (
        _hand_value(list(range(5)), "call", p_churn, uplift, policy)
        + _hand_value(list(range(5, 13)), "voucher", p_churn, uplift, policy)
        + _hand_value(list(range(13, 30)), "email", p_churn, uplift, policy)
    )
    assert row["value_loopline"] == pytest.approx(planned)
    assert row["treated_loopline"] == 30
    costs = policy.costs()
    assert row["cost_loopline"] == pytest.approx(
        5 * costs["call"] + 8 * costs["voucher"] + 17 * costs["email"]
    )
    executed = planned - _hand_value([4], "call", p_churn, uplift, policy)
    assert row["value_loopline_executed"] == pytest.approx(executed)
    assert row["treated_loopline_executed"] == 29
    assert row["value_no_action"] == 0.0
    assert row["cost_no_action"] == 0.0 and row["treated_no_action"] == 0
    # the oracle knows the uplift: it beats both the plan and the classic baseline
    assert row["value_oracle"] >= row["value_loopline"]
    assert row["value_oracle"] >= row["value_probability_ranked"]
    assert row["value_oracle"] > 0
    # knowing only each action's average uplift is worth less than knowing who
    # responds, but it is still a plan with positive true value
    assert row["value_oracle"] >= row["value_oracle_average"] > 0
    # equal budget and capacities for the baselines
    for name in ("probability_ranked", "oracle", "oracle_average"):
        assert row[f"cost_{name}"] <= policy.daily_budget + 1e-9
        assert row[f"treated_{name}"] <= sum(policy.capacity.values())


def test_oracle_is_the_optimum_when_no_limit_binds(
    case: Case,
) -> None:
    settings, uplift, p_churn = case.settings, case.uplift, case.p
    policy = _policy(
        capacity={"phone": 1000, "voucher": 1000, "email": 1000}, daily_budget=1e6
    )
    row = evaluate_day(settings, DAY, policy)
    assert row is not None
    costs = policy.costs()
    # without binding limits the optimum gives each customer their best positive EV
    best = sum(
        max(
            0.0,
            *(
                p_churn[i] * VALUE_AT_RISK * REACH[a] * uplift[a][i] - costs[a]
                for a in ACTIONS
            ),
        )
        for i in range(N)
    )
    assert row["value_oracle"] == pytest.approx(best)
    assert row["value_oracle"] >= row["value_probability_ranked"]
    # the classic baseline treats every eligible customer with the cheapest action
    assert row["treated_probability_ranked"] == N


def test_fallback_days_are_skipped_and_ranges_have_one_row_per_day(
    case: Case,
) -> None:
    settings, policy = case.settings, case.policy
    assert evaluate_day(settings, FALLBACK_DAY, policy) is None  # no scores
    assert evaluate_day(settings, DAY - timedelta(days=1), policy) is None  # no data
    frame = evaluate_range(settings, DAY - timedelta(days=1), FALLBACK_DAY, policy)
    assert list(frame.columns) == evaluation_columns()
    assert len(frame) == 1
    single = evaluate_day(settings, DAY, policy)
    assert single is not None
    assert frame.iloc[0]["value_oracle"] == pytest.approx(single["value_oracle"])
    empty = evaluate_range(settings, FALLBACK_DAY, FALLBACK_DAY, policy)
    assert empty.empty and list(empty.columns) == evaluation_columns()


def test_each_baseline_follows_the_contact_rules_on_its_own_contacts(
    tmp_path: Path,
) -> None:
    """A customer the policy leaves alone is not the baseline's to treat every
    night: over a range, each counterfactual plan's cooldown counts its own
    contacts, so the likeliest churners are credited once, not night after night."""
    settings = _settings(tmp_path)
    uplift = {a: np.full(N, 0.5) for a in ACTIONS}
    _write_truth(settings, uplift)
    p = np.linspace(0.2, 0.9, N)
    nights = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]
    ids = _ids(N)
    # the policy treats customers 1-5 on DAY and nobody after
    rows = [
        _decision_rows(
            night,
            [
                (cid, "treated" if night == DAY and i < 5 else "none", None, p[i])
                for i, cid in enumerate(ids)
            ],
        )
        for night in nights
    ]
    first = rows[0]
    first.loc[first["arm"] == "treated", "action"] = "email"
    _write_nights(settings, p, nights, pd.concat(rows))
    # room for everyone: only the contact rules limit the baselines
    policy = _policy(
        capacity={"phone": 1000, "voucher": 1000, "email": 1000}, daily_budget=1e6
    )
    frame = evaluate_range(settings, DAY, nights[-1], policy).set_index("run_date")
    for name in COUNTERFACTUALS:
        treated = frame[f"treated_{name}"]
        # night 1: all 40 are contactable for every plan (the policy's history
        # before the range is empty); after it, each plan's own cooldown holds
        assert treated.iloc[0] == N, name
        assert treated.iloc[1] == 0 and treated.iloc[2] == 0, name
        assert frame[f"value_{name}"].iloc[1:].abs().sum() == 0.0, name
    # a single night has no earlier nights of its own: it takes the policy's
    # history, where only customers 1-5 are in cooldown
    alone = evaluate_day(settings, nights[1], policy)
    assert alone is not None
    assert alone["treated_probability_ranked"] == N - 5
    # a range that starts later is seeded with the policy's earlier contacts
    later = evaluate_range(settings, nights[1], nights[-1], policy)
    assert list(later["treated_probability_ranked"]) == [N - 5, 0]


def test_contact_log_counts_the_window_before_the_night() -> None:
    log = ContactLog.empty()
    log.record(DAY - timedelta(days=95), np.array(["a"], dtype=object))  # too old
    log.record(DAY - timedelta(days=30), np.array(["a", "b"], dtype=object))
    log.record(DAY - timedelta(days=3), np.array(["a"], dtype=object))
    log.record(DAY, np.array(["c"], dtype=object))  # the night itself: not before it
    days_since, contacts = log.columns(DAY, np.array(["a", "b", "c", "d"], object))
    assert list(contacts) == [2, 1, 0, 0]
    assert days_since[:2] == pytest.approx([3, 30])
    assert np.isnan(days_since[2:]).all()
