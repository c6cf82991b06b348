"""The policy's parameters as learned by the feedback layer, read for a run date.

The feedback layer (:func:`ml.feedback.learning.update_policy_parameters`) owns and
writes ``marts.policy_parameters``: one row per action (and segment) and
``computed_on`` date, with the posterior of its uplift. The decision layer reads
it here, and only here, as of its run date.
"""

from __future__ import annotations

from datetime import date

import duckdb

from ml.config.policy import PolicyConfig, load_policy_config
from ml.config.settings import Settings
from ml.contract.tables import PARAMETERS_TABLE
from ml.storage.warehouse import connect, table_exists


def current_uplifts(
    settings: Settings,
    run_date: date,
    policy: PolicyConfig | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> dict[str, float]:
    """The uplift per action the policy uses on ``run_date``: the latest
    action-level posterior effective by then, else the prior mean from
    ``policy.yml`` (also when ``learning.use_posteriors`` is off)."""
    policy = policy or load_policy_config()
    means = policy.uplift_means()
    if not policy.learning.use_posteriors:
        return means
    if con is None:
        if not settings.warehouse_path.exists():
            return means
        with connect(settings.warehouse_path, read_only=True) as own:
            return current_uplifts(settings, run_date, policy, con=own)
    if not table_exists(con, "marts", "policy_parameters"):
        return means
    rows = con.execute(
        f"""
        select action, posterior_mean from {PARAMETERS_TABLE}
        where segment is null and effective_from <= $d
        qualify row_number() over (
            partition by action order by effective_from desc) = 1
        """,
        {"d": run_date},
    ).fetchall()
    learned = {str(a): float(m) for a, m in rows if a in means and m is not None}
    return {**means, **learned}
