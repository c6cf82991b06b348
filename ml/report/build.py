"""The Loopline report: one self-contained HTML file about the closed loop.

:func:`build_report` reads the warehouse read-only (:mod:`ml.report.report_data`)
and writes ``reports/loopline_report.html``: each section's numbers and tables
(:mod:`ml.report.sections`, which lists the sections) rendered by the Jinja2
template ``templates/report.html.j2`` (autoescaped), the figures
(:mod:`ml.report.figures`) embedded as base64 PNGs and the style inline, so the file
can be mailed or archived as is. Every table is optional: a section whose data are
missing says so in a short note instead of failing, and a section that cannot be
drawn shows the error in place, so one problem never costs the whole report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from ml.config.settings import REPORT_FILE, Settings
from ml.report import sections
from ml.report.report_data import (
    EVALUATION_FILE,
    ReportData,
    events_from_retrains,
    load_report_data,
    read_evaluation,
    true_uplift_over_matured_dates,
)
from ml.report.sections import SECTIONS

TEMPLATE = "report.html.j2"


@cache
def _macros() -> Any:
    """The template's macros (one per section, plus ``page`` and ``failed``).

    Autoescaping is on for the template (``select_autoescape`` on its name), so
    every value from a context is escaped and a macro returns safe markup."""
    environment = Environment(
        loader=PackageLoader("ml.report", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE).module


def _section(key: str, context: Callable[[], Any]) -> Markup:
    """One section's HTML; an unexpected error is shown in place, not raised."""
    macros = _macros()
    try:
        body: Markup = getattr(macros, key)(context())
    except Exception as error:  # noqa: BLE001 - one section must not cost the report
        body = macros.failed(key, type(error).__name__, str(error))
    return body


def render_report(
    data: ReportData,
    targets: Sequence[Mapping[str, Any]] | None = None,
    champion_test_auc: float | None = None,
    title: str = "Loopline report",
) -> str:
    """The report's HTML from already loaded data."""
    contexts: dict[str, Callable[[], Any]] = {
        "summary": lambda: sections.summary(data, targets),
        "value": lambda: sections.value(data),
        "model": lambda: sections.model(data, champion_test_auc),
        "uplift": lambda: sections.uplift(data),
        "drift": lambda: sections.drift(data),
        "operations": lambda: sections.operations(data),
        "retrains": lambda: sections.retrains(data),
    }
    bodies = [(key, name, _section(key, contexts[key])) for key, name in SECTIONS]
    page = _macros().page(
        title=title,
        generated=datetime.now().strftime("%Y-%m-%d %H:%M"),
        sections=bodies,
    )
    return str(page)


def build_report(
    settings: Settings,
    path: Path | None = None,
    evaluation: pd.DataFrame | None = None,
    events: Sequence[Mapping[str, Any]] | None = None,
    targets: Sequence[Mapping[str, Any]] | None = None,
    champion_test_auc: float | None = None,
    true_uplift: Callable[[date, date], pd.DataFrame] | None = None,
) -> Path:
    """Write the self-contained HTML report and return its path.

    ``path`` defaults to ``reports/loopline_report.html`` under the settings' root.
    ``evaluation`` is the frame of the simulator's evaluation (default:
    ``reports/evaluation.parquet`` if it exists). ``events`` are dicts ``{date,
    kind ('drift' | 'retrain' | 'promotion'), label}`` drawn as vertical markers
    (default: the fired checks and champion changes of ``ops.retrain_events``).
    ``targets`` are dicts ``{name, measured, target, met}`` for the summary, and
    ``champion_test_auc`` is drawn as a reference line on the realized AUC.
    ``true_uplift(first, last)``, where a simulator knows the truth, gives the
    true uplift per action over the matured decision dates (the demo passes
    :func:`ml.sim.evaluate.true_uplift_by_action`). The warehouse is opened
    read-only.
    """
    path = path or settings.report_path
    data = load_report_data(settings)
    data.evaluation = (
        evaluation if evaluation is not None else read_evaluation(settings)
    )
    data.events = (
        [dict(e) for e in events]
        if events is not None
        else events_from_retrains(data.retrain_events)
    )
    try:
        data.true_uplift = true_uplift_over_matured_dates(data, true_uplift)
    except Exception as error:  # noqa: BLE001 - truth is optional, say why it is absent
        data.notes.append(f"true uplift unavailable: {type(error).__name__}: {error}")
    page = render_report(data, targets, champion_test_auc)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


__all__ = [
    "EVALUATION_FILE",
    "REPORT_FILE",
    "SECTIONS",
    "ReportData",
    "build_report",
    "load_report_data",
    "render_report",
]
