"""The Great Expectations context: one file-backed project under ``settings.gx_dir``.

The context is created once per process and per directory (importing GX costs
seconds; the context itself is cheap once GX is loaded). Frames are validated through
pandas dataframe assets, because GX's SQL datasource does not work on DuckDB. Each
result is stored under a run id derived from the run date, so rerunning a date
overwrites its stored result instead of adding one.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expectations.suite_parts import load_gx
from ml.config.settings import Settings

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.data_context.types.resource_identifiers import (
        ValidationResultIdentifier,
    )

log = logging.getLogger(__name__)

_BATCH_DEFINITION = "whole_frame"
_contexts: dict[Path, AbstractDataContext] = {}
_definitions: dict[tuple[int, str], tuple[str, gx.ValidationDefinition]] = {}

# What GX computes for each expectation: BASIC gives the unexpected count and
# percent and up to 20 unexpected values, which is what the gates report (their
# messages and ops.validation_results) and Data Docs show. SUMMARY would add
# per-value counts and more metrics to every expectation's graph, at about 0.1 s
# more for a night's landing gate (benchmarks/bench_gx_result_format.py).
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "BASIC",
    "partial_unexpected_count": 20,
}
_lock = threading.Lock()


@dataclass(frozen=True)
class SuiteRun:
    """A stored GX validation result and the key it is stored under."""

    result: ExpectationSuiteValidationResult
    result_id: ValidationResultIdentifier


def gx_context(settings: Settings) -> AbstractDataContext:
    """The process-wide file context rooted at ``settings.gx_dir`` (created once)."""
    root = settings.gx_dir
    with _lock:
        context = _contexts.get(root)
        if context is not None and not (root / "great_expectations.yml").is_file():
            # the project was removed under us: forget it and start a new one
            for key in [k for k in _definitions if k[0] == id(context)]:
                del _definitions[key]
            context = None
        if context is None:
            context = _create_context(root)
            _contexts[root] = context
        return context


def _create_context(root: Path) -> AbstractDataContext:
    gx = load_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", context_root_dir=root)
    variables = context.variables
    if variables.progress_bars is None or variables.progress_bars.get("globally"):
        variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        variables.save()
    if context.config.analytics_enabled is not False:
        context.enable_analytics(False)
    return context


def _batch_definition(
    context: AbstractDataContext, datasource: str, asset: str
) -> gx.core.batch_definition.BatchDefinition:
    """Get or add the pandas datasource, dataframe asset and whole-frame batch."""
    source: Any
    try:
        source = context.data_sources.get(datasource)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(datasource)
    try:
        data_asset = source.get_asset(asset)
    except LookupError:
        data_asset = source.add_dataframe_asset(asset)
    try:
        return data_asset.get_batch_definition(_BATCH_DEFINITION)
    except KeyError:
        return data_asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION)


def run_id_for(start: date, end: date) -> Any:
    """A deterministic GX run id for the partitions ``start``..``end``."""
    from great_expectations.core.run_identifier import RunIdentifier

    # not "a..b": the Data Docs renderer tries to parse run names as dates
    name = end.isoformat() if start == end else f"range_{start}_to_{end}"
    return RunIdentifier(
        run_name=name, run_time=datetime.combine(end, time.min, tzinfo=UTC)
    )


def _fingerprint(suite: gx.ExpectationSuite) -> str:
    """What a suite checks, as text: equal text means the stored suite is current."""
    checks = [e.configuration.to_json_dict() for e in suite.expectations]
    return json.dumps([suite.name, suite.meta, checks], sort_keys=True, default=str)


def _validation_definition(
    context: AbstractDataContext,
    suite: gx.ExpectationSuite,
    datasource: str,
    asset: str,
) -> gx.ValidationDefinition:
    """The stored validation definition of ``suite``; saved again only on change.

    Saving a suite and its definition costs about 60 ms, as much as validating a
    small frame, so an unchanged suite is not saved again in the same process.
    """
    gx = load_gx()
    key = (id(context), suite.name)
    fingerprint = _fingerprint(suite)
    cached = _definitions.get(key)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    batch_definition = _batch_definition(context, datasource, asset)
    stored_suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(
            name=suite.name, data=batch_definition, suite=stored_suite
        )
    )
    _definitions[key] = (fingerprint, definition)
    return definition


def run_suite(
    settings: Settings,
    suite: gx.ExpectationSuite,
    *,
    datasource: str,
    asset: str,
    frame: pd.DataFrame,
    start: date,
    end: date,
    parameters: dict[str, Any] | None = None,
) -> SuiteRun:
    """Validate ``frame`` with ``suite`` and store the result in the GX project.

    The suite is saved too, so Data Docs show the exact expectations that ran;
    ``parameters`` fill its ``$PARAMETER`` values. Failed expectations never raise
    here: callers read ``success``.
    """
    context = gx_context(settings)
    definition = _validation_definition(context, suite, datasource, asset)
    run_id = run_id_for(start, end)
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        result_format=RESULT_FORMAT,
        run_id=run_id,
    )
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    result_id = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
        run_id=run_id,
        batch_identifier=f"{datasource}-{asset}",
    )
    return SuiteRun(result=result, result_id=result_id)


def docs_index(settings: Settings) -> Path:
    """Where the Data Docs site's index page is written."""
    return settings.data_docs_dir / "index.html"


def prune_results(settings: Settings, keep_from: date) -> int:
    """Delete stored GX results of run dates before ``keep_from``; return how many.

    Data Docs render every stored result into the index, so the store is kept to a
    window of recent run dates; ``ops.validation_results`` keeps the full history.
    """
    store = gx_context(settings).validation_results_store
    removed = 0
    for key in store.list_keys():
        run_time = getattr(getattr(key, "run_id", None), "run_time", None)
        if run_time is not None and run_time.date() < keep_from:
            store.remove_key(key)
            removed += 1
    return removed


def build_data_docs(
    settings: Settings, result_ids: list[ValidationResultIdentifier] | None = None
) -> Path:
    """Build the GX Data Docs site under ``settings.gx_dir``; return its index page.

    Without ``result_ids`` the whole site is rebuilt: every stored result page
    (about 3 s per 100 results). With ``result_ids`` only those result pages, their
    suites' pages and the index are rendered, which is what the gates do after a
    run; the index still reads every stored result (see :func:`prune_results`).
    """
    context = gx_context(settings)
    if result_ids is None:
        context.build_data_docs()
    else:
        suites = {
            rid.expectation_suite_identifier.name: rid.expectation_suite_identifier
            for rid in result_ids
        }
        identifiers: list[Any] = [*result_ids, *suites.values()]
        context.build_data_docs(resource_identifiers=identifiers)
    return docs_index(settings)


def refresh_data_docs(
    settings: Settings,
    result_ids: list[ValidationResultIdentifier],
    run_date: date,
    keep_days: int,
) -> None:
    """After a gate run: prune old results, then render this run's pages.

    Data Docs are a view: a rendering error is logged and never fails a gate.
    """
    try:
        prune_results(settings, run_date - timedelta(days=keep_days - 1))
        build_data_docs(settings, result_ids)
    except Exception:
        log.warning("building GX Data Docs failed", exc_info=True)


def run_result_ids(
    settings: Settings, start: date, end: date
) -> list[ValidationResultIdentifier]:
    """The stored GX results of the run ``start``..``end`` (every gate's suites)."""
    from great_expectations.data_context.types.resource_identifiers import (
        ValidationResultIdentifier,
    )

    name = run_id_for(start, end).run_name
    store = gx_context(settings).validation_results_store
    return [
        key
        for key in store.list_keys()
        if isinstance(key, ValidationResultIdentifier)
        and getattr(key.run_id, "run_name", None) == name
    ]


def render_run_docs(settings: Settings, start: date, end: date, keep_days: int) -> int:
    """Render the Data Docs pages of every stored result of the run ``start``..``end``
    (the landing and the mart gates') in one pass; return how many results.

    The nightly run renders its pages with one such call instead of one per gate
    (see ``ml.ops.tasks.render_gate_docs``).
    """
    try:
        ids = run_result_ids(settings, start, end)
    except Exception:
        log.warning("listing the GX results of %s failed", end, exc_info=True)
        return 0
    if ids:
        refresh_data_docs(settings, ids, end, keep_days)
    return len(ids)


def render_nights_docs(
    settings: Settings, start: date, end: date, keep_days: int
) -> int:
    """Render, in one pass, the Data Docs pages of the nightly results of every
    run date from ``start`` to ``end`` (each night's landing and mart gates);
    return how many results. A command that runs many nights in one process
    calls this once at its end instead of once a night."""
    try:
        store = gx_context(settings).validation_results_store
        names = {
            run_id_for(start + timedelta(days=i), start + timedelta(days=i)).run_name
            for i in range((end - start).days + 1)
        }
        from great_expectations.data_context.types.resource_identifiers import (
            ValidationResultIdentifier,
        )

        ids = [
            key
            for key in store.list_keys()
            if isinstance(key, ValidationResultIdentifier)
            and getattr(key.run_id, "run_name", None) in names
        ]
    except Exception:
        log.warning(
            "listing the GX results of %s..%s failed", start, end, exc_info=True
        )
        return 0
    if ids:
        refresh_data_docs(settings, ids, end, keep_days)
    return len(ids)
