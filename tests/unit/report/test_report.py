"""The HTML report on a small hand-made warehouse, and on an empty one."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml.config.policy import PolicyConfig
from ml.config.settings import Settings
from ml.contract.schema import ACTIONS
from ml.decision.decide_step import DDL as DECISION_DDL
from ml.decision.engine import summarize
from ml.feedback.outcomes import DDL as OUTCOME_DDL
from ml.report.build import (
    EVALUATION_FILE,
    REPORT_FILE,
    SECTIONS,
    ReportData,
    build_report,
    render_report,
)
from ml.sim.evaluate import (
    POLICIES,
    counterfactual_dir,
    evaluation_columns,
    true_uplift_by_action,
)
from ml.storage.warehouse import connect

FIRST = date(2024, 3, 1)
NIGHTS = 12
DAYS = [FIRST + timedelta(days=i) for i in range(NIGHTS)]
MATURED = DAYS[:6]
RETRAIN_REASON = "decay 3 of 5 score dates below the champion"
POSTERIOR_MEAN = 0.1234

# The schemas of the feedback marts (ml.feedback.drift, learning, retrain_check and the
# outcomes step own them).
FEEDBACK_DDL = """
create schema if not exists marts;
create schema if not exists ops;
create table if not exists marts.drift (
    run_date date, model_version varchar, name varchar, kind varchar, psi double
);
create table if not exists marts.override_performance (
    run_date date, review_outcome varchar, n bigint, retention double,
    mean_spend double, delivered_rate double
);
create table if not exists marts.policy_parameters (
    computed_on date, effective_from date, action varchar, segment varchar,
    n_treated bigint, n_holdout bigint, raw_estimate double, prior_mean double,
    posterior_mean double, low double, high double, alpha double, beta double,
    effective_n double, previous_mean double, changed boolean
);
create table if not exists ops.retrain_events (
    day date, fired boolean, reasons varchar, blocked varchar, evidence varchar,
    champion_version varchar, champion_test_auc double
);
"""


def _policy() -> PolicyConfig:
    return PolicyConfig.model_validate(
        {
            "actions": [
                {"name": "call", "channel": "phone", "unit_cost": 8.0,
                 "uplift": {"mean": 0.3}},
                {"name": "voucher", "channel": "voucher", "unit_cost": 3.5,
                 "uplift": {"mean": 0.2}},
                {"name": "email", "channel": "email", "unit_cost": 0.05,
                 "uplift": {"mean": 0.08}},
            ],
            "capacity": {"phone": 20, "voucher": 40, "email": 100},
            "daily_budget": 500.0,
            "policy_version": "test-policy",
        }
    )  # fmt: skip


def _decisions(day: date, rng: np.random.Generator, n: int = 60) -> pd.DataFrame:
    arms = rng.choice(
        ["treated", "holdout", "review", "none"], n, p=[0.5, 0.2, 0.1, 0.2]
    )
    actions = np.where(arms == "none", None, rng.choice(list(ACTIONS), n))
    p = rng.uniform(0.05, 0.9, n)
    return pd.DataFrame(
        {
            "decision_id": [f"{day:%m%d}-{i:03d}" for i in range(n)],
            "run_date": day,
            "customer_id": [f"C{i + 1:08d}" for i in range(n)],
            "arm": arms,
            "action": actions,
            "p_churn": p,
            "value_at_risk": 100.0,
            **{f"ev_{a}": p * 10 - 1 for a in ACTIONS},
            "chosen_ev": p * 10 - 1,
            "reason_codes": "ev_positive",
            "policy_version": "test-policy",
            "model_version": "2" if day < DAYS[6] else "3",
            "policy_mode": "model",
        }
    )


def _outcomes(decisions: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    frame = decisions[["decision_id", "run_date", "customer_id", "arm", "action"]]
    frame = frame.assign(
        matured_on=decisions["run_date"] + timedelta(days=30),
        p_churn=decisions["p_churn"],
        value_at_risk=100.0,
        expected_ev=decisions["chosen_ev"],
        cost=np.where(decisions["arm"] == "treated", 3.5, 0.0),
        policy_mode="model",
        model_version=decisions["model_version"],
        retained=rng.random(len(decisions))
        < np.where(decisions["arm"] == "treated", 0.8, 0.6),
        realized_spend=rng.uniform(0, 200, len(decisions)),
        delivery_status="delivered",
        delivered=True,
        review_decision=None,
        overridden=False,
        is_randomized=decisions["arm"].isin(["treated", "holdout"]),
    )
    return frame


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    con.register("_rows", frame)
    con.execute(f"insert into {table} by name select * from _rows")
    con.unregister("_rows")


def _write_truth(settings: Settings, n: int) -> None:
    (settings.truth_dir / "state").mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"customer_id": [f"C{i + 1:08d}" for i in range(n)]})
    for a in ACTIONS:
        frame[f"uplift_{a}"] = 0.25
    frame.to_parquet(settings.truth_dir / "customers.parquet", index=False)
    world = {"config": {"actions": {"call_answer_rate": 0.5, "email_bounce_rate": 0.1}}}
    (settings.truth_dir / "state" / "world.json").write_text(json.dumps(world))


def _write_pairs(
    settings: Settings, decision_ids: pd.Series, rng: np.random.Generator
) -> None:
    """The simulator's counterfactual pairs of the delivered decisions: the
    contacted copy churns (no first purchase) less often than the untreated one."""
    n = len(decision_ids)

    def first_purchase(churn: float) -> pd.Series:
        days = pd.Series(rng.integers(1, 31, n), dtype="Int32")
        return days.mask(rng.random(n) < churn)

    folder = counterfactual_dir(settings) / f"dt={DAYS[0]}"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "decision_id": decision_ids.to_numpy(),
            "first_purchase_contacted": first_purchase(0.2),
            "first_purchase_untreated": first_purchase(0.4),
        }
    ).to_parquet(folder / "part-0000.parquet", index=False)


def _evaluation() -> pd.DataFrame:
    rows = []
    for i, day in enumerate(DAYS):
        row: dict[str, object] = {
            "run_date": day,
            "policy_mode": "model",
            "model_version": "3",
            "customers": 60,
        }
        for k, name in enumerate(POLICIES):
            row[f"value_{name}"] = {"no_action": 0.0}.get(name, 100.0 * (k + 1) + i)
            row[f"cost_{name}"] = 0.0 if name == "no_action" else 400.0
            row[f"treated_{name}"] = 0 if name == "no_action" else 30
        rows.append(row)
    return pd.DataFrame(rows, columns=evaluation_columns())


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("report")
    settings = Settings(home=home)
    settings.root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    policy = _policy()
    with connect(settings.warehouse_path) as con:
        con.execute(DECISION_DDL)
        con.execute(OUTCOME_DDL)
        con.execute(FEEDBACK_DDL)
        daily_rows = []
        delivered = []
        for day in DAYS:
            decisions = _decisions(day, rng)
            _insert(con, "marts.decisions", decisions)
            daily_rows.append(summarize(decisions, policy) | {"reviews_applied": 2})
            treated = decisions["arm"] == "treated"
            delivered.append(decisions.loc[treated, "decision_id"])
            if day in MATURED:
                _insert(con, "marts.decision_outcomes", _outcomes(decisions, rng))
                _insert(
                    con,
                    "marts.model_performance",
                    pd.DataFrame(
                        {
                            "run_date": [day],
                            "model_version": ["2"],
                            "n": [60],
                            "positive_rate": [0.3],
                            "roc_auc": [0.72 - 0.01 * DAYS.index(day)],
                            "pr_auc": [0.5],
                            "brier": [0.18],
                            "ece": [0.03],
                            "calibration": ["[]"],
                        }
                    ),
                )
                _insert(
                    con,
                    "marts.override_performance",
                    pd.DataFrame(
                        {
                            "run_date": [day] * 3,
                            "review_outcome": ["followed", "approve", "reject"],
                            "n": [50, 4, 2],
                            "retention": [0.7, 0.8, 0.5],
                            "mean_spend": [120.0, 150.0, 60.0],
                            "delivered_rate": [0.9, 1.0, None],
                        }
                    ),
                )
            drift = pd.DataFrame(
                {
                    "run_date": day,
                    "model_version": "3",
                    "name": ["p_churn", "recency_days", "spend_90d", "region"],
                    "kind": ["score", "feature", "feature", "feature"],
                    "psi": [0.01 * DAYS.index(day), 0.3, 0.05, 0.02],
                }
            )
            _insert(con, "marts.drift", drift)
            fired = day == DAYS[6]
            _insert(
                con,
                "ops.retrain_events",
                pd.DataFrame(
                    {
                        "day": [day],
                        "fired": [fired],
                        "reasons": [RETRAIN_REASON if fired else ""],
                        "blocked": ["" if fired else "cooldown: 3 days left"],
                        "evidence": [json.dumps({"decay": {"below": 3}})],
                        "champion_version": ["2" if day < DAYS[7] else "3"],
                        "champion_test_auc": [0.74 if day < DAYS[7] else 0.76],
                    }
                ),
            )
        daily = pd.DataFrame(daily_rows)
        con.register("_daily", daily)
        con.execute("create table marts.policy_daily as select * from _daily")
        for computed, mean in ((DAYS[4], 0.2), (DAYS[8], POSTERIOR_MEAN)):
            _insert(
                con,
                "marts.policy_parameters",
                pd.DataFrame(
                    {
                        "computed_on": computed,
                        "effective_from": computed + timedelta(days=1),
                        "action": [*ACTIONS, "voucher"],
                        "segment": [None, None, None, "plan=premium"],
                        "n_treated": 100,
                        "n_holdout": 20,
                        "raw_estimate": 0.15,
                        "prior_mean": [0.3, 0.2, 0.08, 0.2],
                        "posterior_mean": mean,
                        "low": mean - 0.1,
                        "high": mean + 0.1,
                        "alpha": 3.0,
                        "beta": 17.0,
                        "effective_n": 12.0,
                        "previous_mean": 0.2,
                        "changed": True,
                    }
                ),
            )
    _write_truth(settings, 60)
    _write_pairs(settings, pd.concat(delivered), rng)
    return settings


def _sections_present(page: str) -> None:
    for key, _ in SECTIONS:
        assert re.search(rf'<h2 id="{key}"', page), key


def test_report_has_every_section_with_figures_and_fixture_numbers(
    filled: Settings,
) -> None:
    events = [
        {"date": DAYS[3], "kind": "drift", "label": "region south shifted"},
        {"date": DAYS[6], "kind": "retrain", "label": "decay"},
        {"date": DAYS[7], "kind": "promotion", "label": "champion 3"},
    ]
    targets = [
        {"name": "value vs probability-ranked", "measured": 1.8, "target": 1.2,
         "met": True},
        {"name": "uplift coverage", "measured": 0.5, "target": 0.9, "met": False},
    ]  # fmt: skip
    path = build_report(
        filled, evaluation=_evaluation(), events=events, targets=targets,
        champion_test_auc=0.74,
        true_uplift=partial(true_uplift_by_action, filled),  # the demo passes it
    )  # fmt: skip
    assert path == filled.reports_dir / REPORT_FILE
    assert path.is_file()
    page = path.read_text()
    _sections_present(page)
    assert "could not be rendered" not in page
    assert "No data yet" not in page
    # value, model, uplift, drift and operations each draw a figure
    assert page.count("data:image/png;base64,") >= 5
    assert "<script" not in page and "stylesheet" not in page  # self-contained
    # numbers and labels from the fixture
    assert RETRAIN_REASON in page
    assert "cooldown: 3 days left" in page
    assert f"{POSTERIOR_MEAN:.3f}" in page  # the latest action-level posterior
    assert "plan=premium" not in page  # segment rows are not action-level
    assert "region south shifted" in page
    assert "uplift coverage" in page and 'class="missed">no' in page
    assert f"{DAYS[0]} to {DAYS[-1]}" in page  # period covered
    assert "recency_days" in page  # the most drifted feature
    assert "True uplift of the allocation" in page  # truth exists
    assert "churn_untreated" in page  # from the simulator's paired copies
    assert "followed" in page and "approve" in page
    # totals: loopline is POLICIES[0] with value 100 + i per night
    assert f"{sum(100.0 + i for i in range(NIGHTS)):,.0f}" in page
    assert "loopline / probability_ranked" in page


def test_evaluation_and_events_default_to_what_is_stored(filled: Settings) -> None:
    filled.reports_dir.mkdir(parents=True, exist_ok=True)
    stored = filled.reports_dir / EVALUATION_FILE
    _evaluation().to_parquet(stored, index=False)
    target = filled.root / "elsewhere" / "report.html"
    try:
        path = build_report(filled, path=target)
    finally:
        stored.unlink()
    assert path == target
    page = path.read_text()
    _sections_present(page)
    assert "could not be rendered" not in page
    assert "loopline / oracle" in page  # read from reports/evaluation.parquet
    assert "champion 3" in page  # promotion marker derived from the retrain checks


@pytest.mark.parametrize("create_file", [False, True])
def test_an_empty_warehouse_still_gives_a_report(
    tmp_path: Path, create_file: bool
) -> None:
    settings = Settings(home=tmp_path / "home")
    if create_file:
        settings.root.mkdir(parents=True)
        with connect(settings.warehouse_path) as con:
            con.execute("create schema if not exists marts")
    path = build_report(settings)
    page = path.read_text()
    _sections_present(page)
    assert "could not be rendered" not in page
    assert page.count("No data yet") >= len(SECTIONS)
    assert "data:image/png;base64," not in page
    # the report never creates the warehouse
    assert settings.warehouse_path.is_file() == create_file


def test_values_are_escaped_and_a_failing_section_costs_only_itself() -> None:
    retrains = pd.DataFrame(
        {
            "day": [DAYS[0]],
            "fired": [True],
            "reasons": ["<script>alert('x')</script> & co"],
            "blocked": [""],
            "evidence": ['{"k": "<i>"}'],
            "champion_version": ["1"],
            "champion_test_auc": [0.7],
        }
    )
    broken = pd.DataFrame({"run_date": [DAYS[0]]})  # no kind, no psi: drift fails
    data = ReportData(drift=broken, retrain_events=retrains, notes=["a <b>note</b>"])
    page = render_report(data, title="Report <&>")
    _sections_present(page)
    assert "<script" not in page and "<b>" not in page
    assert "a &lt;b&gt;note&lt;/b&gt;" in page  # the summary's note
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in page
    assert "<title>Report &lt;&amp;&gt;</title>" in page
    assert "&#34;k&#34;: &#34;&lt;i&gt;&#34;" in page  # the evidence, pretty-printed
    assert "The drift section could not be rendered: KeyError: &#39;kind&#39;" in page
    assert page.count("could not be rendered") == 1
    assert "1 checks, 1 fired." in page  # the other sections still render
    assert page.count("No data yet") >= 5
