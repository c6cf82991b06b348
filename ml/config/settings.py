"""Typed settings and business configuration.

Importing this module has no side effects: no directories are created and no
connections are opened. Call :func:`get_settings` for paths and
:func:`load_business_config` for the versioned YAML parameters.
"""

from __future__ import annotations

import os
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ml.config.files import CONFIG_DIR, REPO_ROOT, config_path, read_yaml
from ml.config.retrain import TriggerConfig

# DuckDB takes 80 % of the machine's memory by default; a bulk rebuild of a year of
# 20,000 customers grew to 20 GB and starved every other process on a 24 GB
# machine. Below the limit DuckDB spills joins, aggregates and sorts to disk (to
# <database>.tmp next to the file). The default is 40 % of the machine's memory,
# at most DUCKDB_MEMORY_CAP_MIB, so that a process (DuckDB plus Python's own
# frames) stays within 8 GB whatever the machine.
DUCKDB_MEMORY_SHARE = 0.4
DUCKDB_MEMORY_CAP_MIB = 5 * 1024


def default_memory_limit() -> str:
    """40 % of this machine's memory, capped at 5 GiB, as a DuckDB size."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return f"{DUCKDB_MEMORY_CAP_MIB}MiB"
    share = int(total * DUCKDB_MEMORY_SHARE) // 2**20
    return f"{min(share, DUCKDB_MEMORY_CAP_MIB)}MiB"


DUCKDB_MEMORY_LIMIT = default_memory_limit()
DUCKDB_MEMORY_LIMIT_ENV = "LOOPLINE_DUCKDB_MEMORY_LIMIT"


def _default_tracking_uri(data: dict[str, Any]) -> str:
    """The embedded MLflow store: ``sqlite:///$LOOPLINE_HOME/mlflow.db``."""
    home = Path(data.get("home") or ".loopline").expanduser().resolve()
    return f"sqlite:///{home / 'mlflow.db'}"


REPORT_FILE = "loopline_report.html"
BUSINESS_CONFIG = "loopline.yml"
HOME_CONFIG = CONFIG_DIR / BUSINESS_CONFIG


def _default_config_file(data: dict[str, Any]) -> Path:
    """The business config: ``$LOOPLINE_HOME/config/loopline.yml`` when the home
    has its own (``loopline demo`` writes one with the demo's horizon, so every
    later command on that home, such as ``loopline report``, reads the same), else
    the repository's ``config/loopline.yml``."""
    return config_path(BUSINESS_CONFIG, data.get("home") or Path(".loopline"))


class Settings(BaseSettings):
    """Where Loopline keeps its state, read from ``LOOPLINE_*`` env variables."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_", frozen=True)

    home: Path = Field(default=Path(".loopline"), description="Root of all state.")
    config_file: Path = Field(
        default_factory=_default_config_file,
        description="Business config (horizon, retrain trigger): the home's own "
        "config/loopline.yml when it has one, else the repository's.",
    )
    dbt_project_dir: Path = Field(default=REPO_ROOT / "dbt_project")
    dags_dir: Path = Field(default=REPO_ROOT / "dags")
    dbt_log_level: str = Field(
        default="warn",
        description="dbt's console log level (its warnings and errors; set 'info' "
        "to see every node); its log file under dbt/logs keeps info.",
    )
    data_docs: Literal["nightly", "deferred"] = Field(
        default="nightly",
        description="When the GX Data Docs pages are rendered: 'nightly', by the "
        "mart gate of every run (a scheduled night); 'deferred', once at the end of "
        "a command that runs many nights in one process (the demo and backfill set "
        "it), which saves each night the rendering pass.",
    )
    duckdb_memory_limit: str = Field(
        default=DUCKDB_MEMORY_LIMIT,
        description="DuckDB memory_limit for the warehouse and dbt (a size such as "
        "'8GB', or a share of the machine's memory such as '40%').",
    )
    threads: int | None = Field(
        default=None,
        ge=0,
        description="OpenMP/BLAS threads for training and scoring; overrides "
        "n_threads of config/model.yml (0 = one per core).",
    )
    mlflow_tracking_uri: str = Field(
        default_factory=_default_tracking_uri,
        description="MLflow tracking and registry URI; default the SQLite file "
        "under home (the compose stack points it at its MLflow server).",
    )
    # Failure alerts (ml/ops/alerts.py) always go to ops.alerts and the task log; these
    # notifiers are off until set.
    alert_slack_webhook: SecretStr | None = Field(
        default=None, description="Slack incoming-webhook URL for failure alerts."
    )
    alert_email: str | None = Field(
        default=None, description="Comma-separated recipients of failure alerts."
    )
    alert_email_from: str = Field(default="loopline@localhost")
    alert_smtp_host: str = Field(default="localhost")
    alert_smtp_port: int = Field(default=25, ge=1, le=65535)

    @field_validator("alert_slack_webhook", "alert_email", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """``VAR=`` (as compose passes an unset ``${VAR:-}``) means off."""
        return None if isinstance(value, str) and not value.strip() else value

    airflow_host: str = Field(
        default="127.0.0.1", description="Where `loopline airflow` serves Airflow."
    )
    airflow_port: int = Field(default=8080, ge=1, le=65535)
    mlflow_ui_url: str = Field(
        default="http://127.0.0.1:5000",
        description="The MLflow UI that the Airflow plugin's Loopline page links to.",
    )
    nightly_wait_poke_seconds: int = Field(
        default=600,
        ge=1,
        description="How often loopline_outcomes' check_nightly looks again for the "
        "nightly decide of its date (a rescheduling sensor: it holds no pool slot "
        "in between).",
    )
    nightly_wait_timeout_seconds: int = Field(
        default=7200,
        ge=1,
        description="How long check_nightly waits for the nightly decide before the "
        "outcomes run fails.",
    )
    landing_wait_poke_seconds: int = Field(
        default=300,
        ge=1,
        description="How often loopline_nightly's check_landing looks again for the "
        "landing partitions of its date (a rescheduling sensor: it holds no pool "
        "slot in between).",
    )
    landing_wait_timeout_seconds: int = Field(
        default=3600,
        ge=1,
        description="How long check_landing waits for a late partition before the "
        "nightly run fails (keep it below the nightly wait, so the feedback run "
        "does not give up on a nightly run that is still waiting for its data).",
    )
    dags_start_date: date = Field(
        default=date(1970, 1, 1),
        description="The DAGs' start_date (read when a DAG file is parsed). Airflow "
        "creates no task for a logical date before it, so it must lie on or before "
        "the first day of the landing data; with catchup off, an early date creates "
        "no extra scheduled runs.",
    )

    @cached_property
    def root(self) -> Path:
        """Absolute path of ``home`` (relative paths resolve against the cwd)."""
        return self.home.expanduser().resolve()

    @property
    def landing_dir(self) -> Path:
        return self.root / "landing"

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def analytics_path(self) -> Path:
        """The read-only analyst copy of the marts and ops tables
        (``ml.analytics.publish``)."""
        return self.root / "analytics.duckdb"

    @property
    def dbt_docs_dir(self) -> Path:
        """Where ``loopline docs`` writes the dbt documentation site."""
        return self.reports_dir / "dbt_docs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlartifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def alerts_spool(self) -> Path:
        """Alerts that could not be written to ``ops.alerts`` (the warehouse was
        locked) wait here, one JSON per line, until the next alert is written."""
        return self.root / "alerts.pending.jsonl"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def report_path(self) -> Path:
        """The HTML report ``loopline report`` writes."""
        return self.reports_dir / REPORT_FILE

    @property
    def truth_dir(self) -> Path:
        """The simulator's ground truth. The pipeline never reads it."""
        return self.root / "truth"

    @property
    def gx_dir(self) -> Path:
        """Great Expectations project dir (Data Docs are built under it)."""
        return self.root / "gx"

    @property
    def data_docs_dir(self) -> Path:
        """The GX Data Docs site (``index.html`` and its assets)."""
        return self.gx_dir / "uncommitted" / "data_docs" / "local_site"

    @property
    def dbt_target_dir(self) -> Path:
        return self.root / "dbt" / "target"

    @property
    def dbt_log_dir(self) -> Path:
        return self.root / "dbt" / "logs"

    def ensure_dirs(self) -> None:
        """Create the state directories (called by ``loopline init``)."""
        for path in (
            self.root,
            self.landing_dir,
            self.exports_dir,
            self.mlartifacts_dir,
            self.airflow_home,
            self.reports_dir,
            self.truth_dir,
            self.gx_dir,
            self.dbt_target_dir,
            self.dbt_log_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)


class FeatureConfig(BaseModel):
    windows: list[int] = Field(default_factory=lambda: [7, 30, 90, 180])


class AmountConfig(BaseModel):
    """When a transaction amount is implausible (see ``ml.data.validation.amounts``)."""

    # Any amount above this is quarantined as implausible_amount.
    max_amount: float = Field(default=1_000_000.0, gt=0)
    # Above this robust z-score of log10(amount) against the loaded history, an
    # amount is implausible unless the customer has spent at least a tenth of it
    # in one purchase before.
    max_robust_z: float = Field(default=8.0, gt=0)
    # The z-score rule applies once the history holds this many positive amounts.
    min_history_rows: int = Field(default=200, ge=1)
    # Floor of the robust spread (log10 units), so that a shop with nearly
    # one price does not see every other price as implausible.
    min_log_spread: float = Field(default=0.25, gt=0)


class MinBadRows(BaseModel):
    """Per landing table: how many bad rows a partition must have before
    ``max_bad_row_fraction`` can stop the run. Below it the bad rows are
    quarantined and the good ones loaded, so one bad row of a small table (9
    customers, 6 reviews) does not stop the night."""

    model_config = ConfigDict(extra="forbid")

    customers: int = Field(default=5, ge=1)
    transactions: int = Field(default=5, ge=1)
    support_tickets: int = Field(default=5, ge=1)
    action_results: int = Field(default=5, ge=1)
    review_decisions: int = Field(default=5, ge=1)

    def of(self, table: str) -> int:
        """The minimum of ``table``."""
        return int(getattr(self, table))


class ValidationConfig(BaseModel):
    # A partition stops the run when more than this fraction of its rows is bad
    # and it has at least min_bad_rows of its table bad rows.
    max_bad_row_fraction: float = 0.05
    min_bad_rows: MinBadRows = Field(default_factory=MinBadRows)
    required_tables: list[str] = Field(default_factory=lambda: ["transactions"])
    example_values: int = 5
    # Today's feature snapshot may differ from yesterday's row count by this fraction.
    mart_volume_tolerance: float = 0.5
    # GX Data Docs keep the results of this many run dates (ops.validation_results
    # keeps all of them); rendering cost grows with the number of stored results.
    data_docs_days: int = 7
    # Feature columns of marts.customer_features that may be null.
    mart_nullable_features: list[str] = Field(
        default_factory=lambda: ["days_since_last_contact"]
    )
    amounts: AmountConfig = Field(default_factory=AmountConfig)


class BusinessConfig(BaseModel):
    """The versioned business parameters in ``config/loopline.yml``."""

    horizon_days: int = 30
    active_window_days: int = 180
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    retrain_trigger: TriggerConfig = Field(default_factory=TriggerConfig)
    config_hash: str = ""


def get_settings() -> Settings:
    """Build settings from the environment (cheap; no side effects)."""
    return Settings()


def load_business_config(path: Path | None = None) -> BusinessConfig:
    """Load the business YAML and stamp it with the sha256 of its content."""
    data, digest = read_yaml(path or get_settings().config_file)
    return BusinessConfig.model_validate(data | {"config_hash": digest})
