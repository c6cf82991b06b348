"""Data gates: Great Expectations on landing partitions and on the feature mart.

``validate_landing`` / ``validate_landing_range`` / ``validate_landing_history``
gate landing data into ``raw``
(with quarantine), ``validate_marts`` gates the feature snapshot, and
``build_data_docs`` renders the GX Data Docs site. Importing this package does not
import Great Expectations; the first validation does.
"""

from ml.data.validation.context import build_data_docs, gx_context
from ml.data.validation.errors import (
    GateError,
    GateFailure,
    MartValidationError,
    ValidationGateError,
)
from ml.data.validation.gate_reports import LandingReport, MartReport, TableReport
from ml.data.validation.landing_gate import (
    validate_landing,
    validate_landing_history,
    validate_landing_range,
)
from ml.data.validation.marts_gate import validate_marts

__all__ = [
    "GateError",
    "GateFailure",
    "LandingReport",
    "MartReport",
    "MartValidationError",
    "TableReport",
    "ValidationGateError",
    "build_data_docs",
    "gx_context",
    "validate_landing",
    "validate_landing_history",
    "validate_landing_range",
    "validate_marts",
]
