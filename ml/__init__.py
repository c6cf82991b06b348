"""Loopline: a closed-loop ML decision pipeline for customer retention.

Every module in this package is plain, typed Python. Nothing here imports Airflow:
the DAGs in ``dags/`` and the ``loopline`` CLI call the same functions.
"""

__version__ = "0.1.0"
