"""The policy learns each action's uplift from its matured holdout outcomes."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ml.config.policy import load_policy_config
from ml.config.settings import Settings
from ml.decision.parameters import current_uplifts
from ml.feedback.learning import update_policy_parameters
from ml.feedback.outcomes import DDL as OUTCOME_DDL
from ml.storage.warehouse import connect, ensure_schemas

H = 30
DAY = date(2025, 6, 1)


def _outcomes(n: int, churn_holdout: float, churn_treated: float) -> pd.DataFrame:
    """Email outcomes of one decision date with a known effect (exact counts)."""
    rows = []
    for arm, rate, size in (
        ("treated", churn_treated, n),
        ("holdout", churn_holdout, n // 4),
    ):
        churned = int(round(rate * size))
        for i in range(size):
            rows.append(
                {
                    "arm": arm,
                    "action": "email",
                    "retained": i >= churned,
                    "segment": "north" if i % 2 else "south",
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture()
def settings(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    frame = _outcomes(4000, churn_holdout=0.40, churn_treated=0.30)
    frame["decision_id"] = [f"d{i}" for i in range(len(frame))]
    frame["run_date"] = DAY - timedelta(days=H)
    frame["matured_on"] = DAY
    frame["customer_id"] = frame["decision_id"]
    frame["overridden"] = False
    frame["is_randomized"] = True
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        con.execute("create schema if not exists marts")
        con.execute(OUTCOME_DDL)
        con.register("_f", frame)
        con.execute("insert into marts.decision_outcomes by name select * from _f")
    return settings


def test_the_posterior_moves_towards_the_measured_uplift(settings: Settings) -> None:
    policy = load_policy_config()
    prior = policy.uplift_means()["email"]
    assert current_uplifts(settings, DAY, policy)["email"] == prior

    table = update_policy_parameters(settings, DAY, policy)

    email = table[(table["action"] == "email") & table["segment"].isna()].iloc[0]
    assert email["n_treated"] == 4000 and email["n_holdout"] == 1000
    assert email["raw_estimate"] == pytest.approx(0.25)  # 1 - 0.30 / 0.40
    assert prior < email["posterior_mean"] < 0.25
    assert email["low"] < email["posterior_mean"] < email["high"]
    assert email["changed"] and email["previous_mean"] == pytest.approx(prior)
    # enough data in both arms: each region gets its own row
    segments = set(table.loc[table["action"] == "email", "segment"].dropna())
    assert segments == {"north", "south"}
    # actions without outcomes keep their prior
    call = table[(table["action"] == "call") & table["segment"].isna()].iloc[0]
    assert call["posterior_mean"] == pytest.approx(policy.uplift_means()["call"])
    assert not call["changed"]

    # used from the next run on, not by the run of the same day
    assert current_uplifts(settings, DAY, policy)["email"] == prior
    learned = current_uplifts(settings, DAY + timedelta(days=1), policy)
    assert learned["email"] == pytest.approx(email["posterior_mean"])


def test_a_rerun_replaces_the_day_and_records_no_change(settings: Settings) -> None:
    policy = load_policy_config()
    first = update_policy_parameters(settings, DAY, policy)
    again = update_policy_parameters(settings, DAY, policy)
    pd.testing.assert_frame_equal(
        first.drop(columns=["previous_mean", "changed"]),
        again.drop(columns=["previous_mean", "changed"]),
    )
    with connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute(
            "select count(*) from marts.policy_parameters where computed_on = ?",
            [DAY],
        ).fetchall()[0][0]
    assert rows == len(first)
    # the next day, with no new outcomes, nothing changes
    later = update_policy_parameters(settings, DAY + timedelta(days=1), policy)
    action_rows = later[later["segment"].isna()]
    assert not action_rows["changed"].any()
    assert np.allclose(action_rows["posterior_mean"], action_rows["previous_mean"])


def test_switched_off_learning_keeps_the_priors(settings: Settings) -> None:
    policy = load_policy_config()
    update_policy_parameters(settings, DAY, policy)
    off = policy.model_copy(
        update={
            "learning": policy.learning.model_copy(update={"use_posteriors": False})
        }
    )
    assert current_uplifts(settings, DAY + timedelta(days=1), off) == (
        policy.uplift_means()
    )
