"""Why a customer's score is high: the features that raise it the most.

The explanation is prediction's job: :func:`top_reasons` asks the model itself, in
one batch of predictions, how far each customer's p_churn falls when one feature
at a time is set to its typical training value (from the model's reference
profile). The decision layer calls it for the cases it routes to human review,
so reviewers see the reasons next to the expected values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ml.prediction.registry import LoadedModel

TOP_REASONS = 3


def top_reasons(
    model: LoadedModel,
    rows: pd.DataFrame,
    reference: dict[str, Any] | None,
    k: int = TOP_REASONS,
) -> list[str]:
    """The ``k`` features that raise each customer's p_churn the most: how far the
    score falls when the feature is set to its training median (most common value
    for a categorical), all in one batch of predictions."""
    from ml.prediction.examples import prepare_features

    if rows.empty:
        return []
    columns = model.input_columns
    numeric = [c for c in columns if model.input_types[c] != "string"]
    categorical = [c for c in columns if c not in numeric]
    features = prepare_features(rows, numeric, categorical)[columns].reset_index(
        drop=True
    )
    typical: dict[str, Any] = {}
    for column in numeric:
        ref = (reference or {}).get("numeric", {}).get(column)
        edges = ref["edges"] if ref else []
        typical[column] = (
            edges[len(edges) // 2]
            if edges
            else float(np.nanmedian(features[column].to_numpy(dtype=float)))
        )
    for column in categorical:
        shares = (reference or {}).get("categorical", {}).get(column) or {}
        top = max(shares, key=lambda value: shares[value]) if shares else None
        typical[column] = None if top in (None, "<null>") else top
    n = len(features)
    batch = pd.concat(
        [features.assign(**{column: typical[column]}) for column in columns],
        ignore_index=True,
    )
    batch = prepare_features(batch, numeric, categorical)[columns]
    base = model.model.predict_proba(features)[:, 1]
    moved = model.model.predict_proba(batch)[:, 1].reshape(len(columns), n).T
    delta = base[:, None] - moved
    out = []
    for i in range(n):
        order = np.argsort(-delta[i], kind="stable")[:k]
        parts = [
            f"{columns[j]}={features.iloc[i, j]} (+{delta[i, j]:.2f})"
            for j in order
            if delta[i, j] > 0.005
        ]
        out.append("; ".join(parts) or "no single feature stands out")
    return out
