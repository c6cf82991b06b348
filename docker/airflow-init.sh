#!/usr/bin/env bash
# The one-shot `airflow-init` service of docker-compose.yml. Every step is idempotent,
# so `docker compose up` may run it on every start.
#   1. refuse the placeholder secrets of .env.example;
#   2. migrate the Airflow metadata database (Postgres, database `airflow`);
#   3. create or update the one-slot `warehouse` pool (DuckDB allows one writer);
#   4. write the admin login from AIRFLOW_ADMIN_USERNAME / AIRFLOW_ADMIN_PASSWORD
#      into the SimpleAuthManager's passwords file (on the airflow-auth volume);
#   5. create LOOPLINE_HOME, the warehouse and its raw/ops schemas (`loopline init`).
set -euo pipefail

: "${AIRFLOW_ADMIN_USERNAME:?AIRFLOW_ADMIN_USERNAME is not set (see .env.example)}"
: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD is not set (see .env.example)}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?no passwords file configured}"
: "${AIRFLOW__CORE__FERNET_KEY:?AIRFLOW__CORE__FERNET_KEY is not set (see .env.example)}"
: "${AIRFLOW__API_AUTH__JWT_SECRET:?AIRFLOW__API_AUTH__JWT_SECRET is not set (see .env.example)}"

for name in AIRFLOW_ADMIN_PASSWORD AIRFLOW__CORE__FERNET_KEY AIRFLOW__API_AUTH__JWT_SECRET; do
    if [[ "${!name}" == change-me* ]]; then
        echo "airflow-init: ${name} still has its .env.example placeholder;" \
            "generate a value (docs/full_stack.md)." >&2
        exit 1
    fi
done
python -c 'import os; from cryptography.fernet import Fernet; Fernet(os.environ["AIRFLOW__CORE__FERNET_KEY"])' \
    || { echo "airflow-init: AIRFLOW__CORE__FERNET_KEY is not a valid Fernet key" >&2; exit 1; }

echo "airflow-init: migrating the metadata database"
airflow db migrate

echo "airflow-init: pool warehouse (1 slot)"
airflow pools set warehouse 1 \
    "Every DuckDB warehouse writer: DuckDB allows one writing process."

echo "airflow-init: admin login ${AIRFLOW_ADMIN_USERNAME}"
python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
path.parent.mkdir(parents=True, exist_ok=True)
login = {os.environ["AIRFLOW_ADMIN_USERNAME"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}
path.write_text(json.dumps(login) + "\n")
path.chmod(0o600)
PY

echo "airflow-init: LOOPLINE_HOME=${LOOPLINE_HOME}"
loopline init
