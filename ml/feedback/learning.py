"""Policy learning, the second nightly feedback step.

:func:`update_policy_parameters` computes every action's uplift posterior from the
matured outcomes of the last ``learning.window_days`` decision dates, per segment
where there are enough data, into ``marts.policy_parameters`` with
``effective_from = d + 1``: the policy uses it from the next run on
(:func:`ml.decision.parameters.current_uplifts`). Each row carries its evidence (n
per arm, raw estimate, interval) and whether the action-level mean changed.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from ml.config.policy import PolicyConfig, load_policy_config
from ml.config.settings import Settings, load_business_config
from ml.contract.tables import PARAMETERS_TABLE
from ml.decision.parameters import current_uplifts
from ml.feedback.feedback_tables import prepare_feedback_tables, replace_day
from ml.storage.warehouse import connect, table_exists


def update_policy_parameters(
    settings: Settings, day: date, policy: PolicyConfig | None = None
) -> pd.DataFrame:
    """Posterior uplift per action (and segment) from the matured outcomes of the
    last ``learning.window_days`` decision dates up to ``day``; written to
    ``marts.policy_parameters`` with ``effective_from = day + 1``."""
    from ml.feedback.uplift import update_parameters

    policy = policy or load_policy_config()
    learning = policy.learning
    prepare_feedback_tables(settings)
    horizon = load_business_config(settings.config_file).horizon_days
    newest = day - timedelta(days=horizon)
    oldest = newest - timedelta(days=learning.window_days - 1)
    with connect(settings.warehouse_path, read_only=True) as con:
        if table_exists(con, "marts", "decision_outcomes"):
            outcomes = con.execute(
                """
                select arm, action, retained, segment
                from marts.decision_outcomes
                where run_date between $a and $b and is_randomized
                """,
                {"a": oldest, "b": newest},
            ).df()
        else:
            outcomes = pd.DataFrame(columns=["arm", "action", "retained", "segment"])
        previous = current_uplifts(settings, day, policy, con=con)
    table = update_parameters(
        outcomes,
        policy.uplift_priors(),
        segment_column="segment" if learning.segment_column else None,
        min_n=learning.min_n,
    )
    table["computed_on"] = day
    table["effective_from"] = day + timedelta(days=1)
    action_level = table["segment"].isna()
    table["previous_mean"] = np.where(
        action_level, table["action"].map(previous).astype(float), np.nan
    )
    table["changed"] = action_level & ~np.isclose(
        table["posterior_mean"].astype(float),
        table["previous_mean"].astype(float),
        rtol=0.0,
        atol=1e-9,
    )
    with connect(settings.warehouse_path) as con:
        replace_day(con, PARAMETERS_TABLE, "computed_on", day, table)
    return table
