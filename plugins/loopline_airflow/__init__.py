"""Airflow-side wiring for Loopline (in-process runs, pools, shared assets).

This module itself imports nothing from Airflow: :mod:`loopline_airflow.runner` must
configure Airflow before Airflow is first imported.
"""

# The one-slot pool of every task that opens the DuckDB warehouse: DuckDB allows one
# writing process, and a writer fails at once while any other process holds the
# file, readers included.
WAREHOUSE_POOL = "warehouse"
