"""Airflow-side wiring for Loopline (in-process runs, pools). Imports Airflow."""
