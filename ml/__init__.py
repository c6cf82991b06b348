"""Loopline: a closed-loop ML decision pipeline for customer retention.

Every module in this package is plain, typed Python. Nothing here imports Airflow:
the DAGs in ``dags/`` and the ``loopline`` CLI call the same functions.

Importing the package forbids MLflow to deserialise models in this process
(``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``; processes it starts inherit it):
Loopline loads its models with skops and its own list of trusted types
(:func:`ml.prediction.registry.load_sklearn_model`), never a pickle, and never with the
list a model artifact carries.
"""

import os

__version__ = "0.1.0"

PICKLE_SWITCH = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
os.environ[PICKLE_SWITCH] = "false"
