"""Nightly scoring: ``p_churn`` for every row of one feature snapshot.

The champion (``models:/loopline-churn@champion``) is resolved to a version once and
loaded once. The run date's rows of ``marts.customer_features`` are streamed from
DuckDB as Arrow record batches (memory bounded by ``batch_size``), scored, and
written to ``marts.scores`` in one transaction that first deletes that run date:
a rerun replaces the partition and a failure leaves the previous one in place.
With no champion nothing is written and the summary says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from ml.config.model import ModelConfig, load_model_config, resolve_threads
from ml.config.settings import Settings
from ml.contract.tables import SCORES, SCORES_TABLE, ddl_script
from ml.prediction.examples import FEATURES_TABLE, prepare_features
from ml.prediction.registry import CHAMPION, LoadedModel, load_model
from ml.storage.warehouse import connect

DEFAULT_BATCH_SIZE = 100_000
SCORES_DDL = ddl_script(SCORES)

_NUMERIC_SIGNATURE_TYPES = frozenset({"double", "float", "long", "integer"})


class ScoreSchemaError(ValueError):
    """The feature table does not match the model's input signature."""


@dataclass(frozen=True)
class ScoreSummary:
    """What one scoring run did."""

    run_date: date
    scored: int
    model_version: str | None
    model_alias: str | None
    reason: str = ""
    mean_p_churn: float | None = None

    def as_dict(self) -> dict[str, object]:
        """Small JSON-friendly facts for ``ops.runs`` and XCom."""
        return {
            "run_date": self.run_date.isoformat(),
            "scored": self.scored,
            "model_version": self.model_version,
            "model_alias": self.model_alias,
            "reason": self.reason,
            "mean_p_churn": self.mean_p_churn,
        }


def check_schema(schema: pa.Schema, model: LoadedModel) -> None:
    """Raise :class:`ScoreSchemaError` unless every signature column is present with
    a compatible type (numbers for numeric inputs, strings for string inputs)."""
    problems: list[str] = []
    for column in model.input_columns:
        if column not in schema.names:
            problems.append(f"missing column {column}")
            continue
        arrow_type = schema.field(column).type
        expected = model.input_types[column]
        is_number = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
        is_text = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
        if expected in _NUMERIC_SIGNATURE_TYPES and not is_number:
            problems.append(f"{column} is {arrow_type}, model expects {expected}")
        if expected == "string" and not is_text:
            problems.append(f"{column} is {arrow_type}, model expects string")
    if problems:
        raise ScoreSchemaError(
            f"{FEATURES_TABLE} does not match model version {model.version}: "
            + "; ".join(problems)
        )


def predict_batch(model: LoadedModel, batch: pa.RecordBatch) -> np.ndarray:
    """p_churn for one Arrow batch of feature rows."""
    frame = batch.to_pandas()
    numeric = [c for c in model.input_columns if model.input_types[c] != "string"]
    categorical = [c for c in model.input_columns if model.input_types[c] == "string"]
    features = prepare_features(frame, numeric, categorical)[model.input_columns]
    return np.asarray(model.model.predict_proba(features)[:, 1], dtype=np.float64)


def score(
    settings: Settings,
    run_date: date,
    batch_size: int = DEFAULT_BATCH_SIZE,
    config: ModelConfig | None = None,
) -> ScoreSummary:
    """Score the ``run_date`` snapshot with the champion into ``marts.scores``."""
    config = config or load_model_config()
    model = load_model(settings, alias=CHAMPION, config=config)
    if model is None:
        # a rerun after the champion was withdrawn must not leave old scores behind
        with connect(settings.warehouse_path) as con:
            con.execute(SCORES_DDL)
            con.execute(f"delete from {SCORES_TABLE} where run_date = ?", [run_date])
        return ScoreSummary(run_date, 0, None, None, reason="no champion")
    with threadpool_limits(limits=resolve_threads(config, settings.threads)):
        return score_with(settings, run_date, model, batch_size)


def score_with(
    settings: Settings, run_date: date, model: LoadedModel, batch_size: int
) -> ScoreSummary:
    """Score ``run_date`` with an already loaded model (see :func:`score`)."""
    alias = model.alias or ""
    columns = ", ".join(["customer_id", *model.input_columns])
    query = (
        f"select {columns} from {FEATURES_TABLE} where as_of_date = $1 "
        "order by customer_id"
    )
    scored = 0
    total = 0.0
    with connect(settings.warehouse_path) as con:
        con.execute(SCORES_DDL)
        found = {
            row[0]
            for row in con.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'marts' and table_name = 'customer_features'"
            ).fetchall()
        }
        missing = [c for c in ["customer_id", *model.input_columns] if c not in found]
        if missing:
            raise ScoreSchemaError(
                f"{FEATURES_TABLE} does not match model version {model.version}: "
                f"missing columns {missing}"
            )
        reader = con.sql(query, params=[run_date]).to_arrow_reader(batch_size)
        check_schema(reader.schema, model)
        writer = con.cursor()
        writer.execute("begin transaction")
        try:
            writer.execute(f"delete from {SCORES_TABLE} where run_date = ?", [run_date])
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                p = predict_batch(model, batch)
                rows = pa.table(
                    {
                        "run_date": pa.array([run_date] * batch.num_rows, pa.date32()),
                        "customer_id": batch.column("customer_id"),
                        "p_churn": pa.array(p, pa.float64()),
                        "model_version": pa.array(
                            [model.version] * batch.num_rows, pa.string()
                        ),
                        "model_alias": pa.array([alias] * batch.num_rows, pa.string()),
                    }
                )
                writer.register("_scored_batch", rows)
                writer.execute(
                    f"insert into {SCORES_TABLE} by name select * from _scored_batch"
                )
                writer.unregister("_scored_batch")
                scored += batch.num_rows
                total += float(p.sum())
            writer.execute("commit")
        except Exception:
            writer.execute("rollback")
            raise
        finally:
            writer.close()
    return ScoreSummary(
        run_date=run_date,
        scored=scored,
        model_version=model.version,
        model_alias=alias,
        reason="" if scored else "no feature rows",
        mean_p_churn=total / scored if scored else None,
    )
