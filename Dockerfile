# The Loopline image of the compose stack (docker-compose.yml): every Airflow service
# (api-server, scheduler, dag-processor, triggerer, celery worker, airflow-init) and
# the MLflow server run from it.
#
# The Python environment comes from uv.lock (`uv sync --frozen`: never re-resolved),
# like `make env` on a developer's machine. Only docker/requirements-deploy.txt (the
# Postgres drivers and the Celery executor, which the local SQLite path does not use)
# is added on top, with the lock as a constraint so that no locked package can move.
FROM python:3.11-slim-bookworm

# The same uv as the Makefile's UV_VERSION.
ARG UV_VERSION=0.13.9
# Airflow's convention: uid 50000, gid 0.
ARG APP_UID=50000

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1

RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && useradd --create-home --uid "${APP_UID}" --gid 0 loopline

WORKDIR /opt/loopline

# 1. The locked dependencies alone (a layer that survives code changes).
#    README.md is the project's `readme`; the build backend needs it.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# 2. Deploy-only packages, constrained by the lock.
COPY docker/requirements-deploy.txt docker/requirements-deploy.txt
RUN uv export --frozen --no-dev --no-hashes --no-emit-project -o /tmp/locked.txt \
    && uv pip install --python /opt/loopline/.venv/bin/python \
        --constraint /tmp/locked.txt --requirement docker/requirements-deploy.txt \
    && rm /tmp/locked.txt

# 3. The project. It stays an editable install, so ml.config.settings.REPO_ROOT is
#    /opt/loopline and config/, dags/ and dbt_project/ are found there.
#    --inexact keeps the deploy packages of step 2.
COPY ml/ ml/
COPY expectations/ expectations/
COPY plugins/ plugins/
COPY dags/ dags/
COPY dbt_project/ dbt_project/
COPY config/ config/
COPY docker/airflow-init.sh docker/airflow-init.sh
RUN uv sync --frozen --no-dev --inexact \
    && mkdir -p /opt/airflow/logs /opt/airflow/auth \
        /var/lib/loopline/landing /var/lib/loopline/exports /var/lib/mlflow/artifacts \
    && chown -R "${APP_UID}:0" /opt/airflow /var/lib/loopline /var/lib/mlflow \
    && chmod -R g+rwX /opt/airflow /var/lib/loopline /var/lib/mlflow

# Named volumes mounted on these paths start with this ownership.
ENV PATH=/opt/loopline/.venv/bin:${PATH} \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/loopline/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/loopline/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    LOOPLINE_HOME=/var/lib/loopline

USER loopline
CMD ["airflow", "version"]
