"""The outcome join on hand-made rows: maturity, label delay, delivery, overrides."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from ml.config.policy import load_policy_config
from ml.config.settings import Settings
from ml.decision.decide_step import DDL as DECISION_DDL
from ml.feedback.outcomes import join_outcomes
from ml.storage.warehouse import connect, ensure_schemas

H = 30  # config/loopline.yml horizon
R = date(2025, 3, 1)  # the decision date that matures on R + H
DAY = R + timedelta(days=H)


def _decision(customer: str, arm: str, action: str | None, run_date: date = R) -> dict:
    return {
        "decision_id": f"{customer}-{run_date:%m%d}",
        "run_date": run_date,
        "customer_id": customer,
        "arm": arm,
        "action": action,
        "p_churn": 0.4,
        "value_at_risk": 100.0,
        "ev_call": 1.0,
        "ev_voucher": 1.0,
        "ev_email": 1.0,
        "chosen_ev": 2.0 if arm == "treated" else 0.0,
        "reason_codes": "",
        "policy_version": "p",
        "model_version": "1",
        "policy_mode": "model",
    }


@pytest.fixture()
def warehouse(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    decisions = pd.DataFrame(
        [
            _decision("c1", "treated", "email"),  # delivered, retained
            _decision("c2", "treated", "email"),  # bounced, churned
            _decision("c3", "holdout", "email"),  # held out, churned
            _decision("c4", "review", "call"),  # a person rejected it
            _decision("c5", "treated", "call"),  # label not built yet (late data)
            _decision("c6", "none", None),
            _decision("c1", "treated", "call", R + timedelta(days=1)),  # not matured
        ]
    )
    labels = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4", "c6", "c1"],
            "as_of_date": [R, R, R, R, R, R + timedelta(days=1)],
            "churned": [False, True, True, False, False, False],
            "horizon_spend": [55.0, 0.0, 0.0, 20.0, 10.0, 40.0],
        }
    )
    features = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4", "c5", "c6"],
            "as_of_date": [R] * 6,
            "region": ["north", "south", "north", "east", "west", "north"],
        }
    )
    results = pd.DataFrame(
        {
            "decision_id": ["c1-0301", "c2-0301", "c2-0301"],
            "result_at": [
                datetime(2025, 3, 2, 9),
                datetime(2025, 3, 2, 9),
                datetime(2025, 3, 2, 10),  # the latest status wins
            ],
            "status": ["delivered", "delivered", "bounced"],
        }
    )
    applied = pd.DataFrame(
        [
            {
                "run_date": R + timedelta(days=1),
                "review_decision_id": "c4-0301",
                "queued_on": R,
                "customer_id": "c4",
                "proposed_action": "call",
                "decision": "reject",
                "new_action": None,
                "applied_action": None,
                "applied_decision_id": None,
                "reviewer": "a.moreau",
                "decided_at": datetime(2025, 3, 2, 8),
                "reason_code": "recent_complaint",
                "note": None,
            }
        ]
    )
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        con.execute(DECISION_DDL)
        for name, frame in {
            "decisions": decisions,
            "training_examples": labels,
            "customer_features": features,
            "review_applied": applied,
        }.items():
            con.register("_f", frame)
            if name in ("decisions", "review_applied"):
                con.execute(f"insert into marts.{name} by name select * from _f")
            else:
                con.execute(f"create table marts.{name} as select * from _f")
            con.unregister("_f")
        con.register("_f", results)
        con.execute(
            "insert into raw.action_results "
            "(decision_id, result_at, status, partition_date) "
            "select *, date '2025-03-02' from _f"
        )
        con.unregister("_f")
    return settings


def _rows(settings: Settings, query: str) -> pd.DataFrame:
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(query).df()


def test_only_matured_decisions_with_labels_are_joined(warehouse: Settings) -> None:
    summary = join_outcomes(warehouse, DAY, load_policy_config())
    assert summary.decision_date == R
    out = _rows(warehouse, "from marts.decision_outcomes order by customer_id")
    # c5 has no label yet (late data): it waits; the decision of R + 1 has not matured
    assert list(out["customer_id"]) == ["c1", "c2", "c3", "c4", "c6"]
    assert set(out["run_date"].dt.date) == {R}
    assert set(out["matured_on"].dt.date) == {DAY}
    assert (summary.treated, summary.holdout) == (2, 1)
    by = out.set_index("customer_id")
    assert by.loc["c1", "retained"] and not by.loc["c2", "retained"]
    assert by.loc["c1", "realized_spend"] == 55.0
    assert by.loc["c1", "segment"] == "north"


def test_delivery_and_overrides(warehouse: Settings) -> None:
    join_outcomes(warehouse, DAY, load_policy_config())
    by = _rows(warehouse, "from marts.decision_outcomes").set_index("customer_id")
    assert by.loc["c1", "delivered"] and by.loc["c1", "delivery_status"] == "delivered"
    # the later result (bounced) wins over the earlier one
    assert (
        by.loc["c2", "delivery_status"] == "bounced" and not by.loc["c2", "delivered"]
    )
    # no contact was attempted for the holdout: no delivery status at all
    assert pd.isna(by.loc["c3", "delivery_status"])
    assert by.loc["c4", "overridden"] and by.loc["c4", "review_decision"] == "reject"
    assert not by.loc["c1", "overridden"]
    # only treated arms carry a cost
    assert by.loc["c1", "cost"] > 0 and by.loc["c3", "cost"] == 0
    perf = _rows(warehouse, "from marts.override_performance").set_index(
        "review_outcome"
    )
    assert perf.loc["followed", "n"] == 2 and perf.loc["reject", "n"] == 1
    assert perf.loc["followed", "retention"] == pytest.approx(0.5)
    assert perf.loc["followed", "delivered_rate"] == pytest.approx(0.5)


def test_a_rerun_replaces_the_same_rows(warehouse: Settings) -> None:
    policy = load_policy_config()
    join_outcomes(warehouse, DAY, policy)
    first = _rows(warehouse, "from marts.decision_outcomes order by decision_id")
    join_outcomes(warehouse, DAY, policy)
    again = _rows(warehouse, "from marts.decision_outcomes order by decision_id")
    pd.testing.assert_frame_equal(first, again)
    perf = _rows(
        warehouse,
        "select action, n_treated, n_holdout from "
        "marts.policy_performance order by action",
    )
    assert dict(zip(perf["action"], perf["n_treated"], strict=True)) == {
        "all": 2,
        "email": 2,
    }


def test_reviewed_sends_stay_out_of_the_experiment(warehouse: Settings) -> None:
    """A send a person approved had no holdout draw: it is joined and measured as
    an override outcome, but the treated-vs-holdout comparison leaves it out."""
    approved = {**_decision("c7", "treated", "call"), "reason_codes": "review_approved"}
    with connect(warehouse.warehouse_path) as con:
        con.register("_f", pd.DataFrame([approved]))
        con.execute("insert into marts.decisions by name select * from _f")
        con.unregister("_f")
        con.execute(
            "insert into marts.training_examples values "
            f"('c7', date '{R}', false, 300.0)"
        )
    join_outcomes(warehouse, DAY, load_policy_config())
    by = _rows(warehouse, "from marts.decision_outcomes").set_index("customer_id")
    assert by.loc["c7", "arm"] == "treated" and by.loc["c7", "retained"]
    assert not by.loc["c7", "is_randomized"]
    assert by.loc[["c1", "c2", "c3"], "is_randomized"].all()
    assert not by.loc[["c4", "c6"], "is_randomized"].any()
    perf = _rows(
        warehouse,
        "select action, n_treated, n_holdout from "
        "marts.policy_performance order by action",
    )
    # c7's call has no randomized counterpart: no call row, two treated e-mails
    assert dict(zip(perf["action"], perf["n_treated"], strict=True)) == {
        "all": 2,
        "email": 2,
    }
