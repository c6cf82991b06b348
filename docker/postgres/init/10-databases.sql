-- Run once by the postgres image, on an empty data volume, as POSTGRES_USER.
-- One server, two databases: Airflow's metadata and MLflow's tracking/registry store.
-- The names match AIRFLOW__DATABASE__SQL_ALCHEMY_CONN and MLFLOW_BACKEND_STORE_URI
-- in docker-compose.yml.
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
