"""``airflow scheduler`` with the libraries of Loopline's tasks imported first.

The LocalExecutor forks its workers from the scheduler, and each worker forks the
process of every task it runs (Linux). A task process therefore starts with what
the scheduler had imported before its executor started. Loopline's tasks import
Great Expectations, dbt, MLflow and scikit-learn: measured on the 2-core
development machine, importing GX costs about 16 s of CPU, MLflow with
scikit-learn 14 s and dbt 7 s, in every task process that needs them. Imported
once here (about 27 s of CPU and 400 MB, shared copy-on-write with the forks),
every task starts warm. This is what ``gunicorn --preload`` does; it applies only
to the LocalExecutor on Linux (a Celery or Kubernetes worker imports what it needs
itself).

``python -m loopline_airflow.scheduler [ARGS]`` is ``airflow scheduler [ARGS]``.
"""

from __future__ import annotations

import importlib
import sys

# Third-party libraries first, then the ml modules the tasks call (their heavy
# imports are inside functions, so these are cheap once the libraries are loaded).
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow",
    "duckdb",
    "sklearn.ensemble",
    "great_expectations",
    "dbt.cli.main",
    "mlflow",
    "ml.pipeline",
    "ml.validation.landing",
    "ml.validation.marts",
    "ml.transform",
    "ml.score",
    "ml.decide",
    "ml.outcomes",
    "ml.monitor",
    "ml.train.steps",
)


def preload(modules: tuple[str, ...] = PRELOAD) -> None:
    for name in modules:
        importlib.import_module(name)


def main() -> None:
    preload()
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "scheduler", *sys.argv[1:]]
    airflow_main()


if __name__ == "__main__":
    main()
