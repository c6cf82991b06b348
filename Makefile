# Loopline: two commands on a fresh machine (only python3 and make are needed).
#   make demo   runs the main job on embedded defaults
#   make test   runs lint, type checks and the test suite
PYTHON ?= python3
UV_VERSION ?= 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -n 2 --dist loadscope --durations=15

.PHONY: demo test test-unit lint typecheck env clean bench airflow

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# The environment comes from the lock file only (--frozen: never re-resolve).
# --compile-bytecode: every task, test and service is a new Python process, and
# with PYTHONDONTWRITEBYTECODE set (as on the CI machines) nothing would ever be
# cached; measured here, importing great_expectations took 18.4 s from source and
# 8 s compiled, dbt 7 s and 3.5 s, mlflow 9.6 s and 2.9 s. Compiling costs ~36 s once.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $@

env: $(VENV)/.synced

demo: env
	$(BIN)/loopline demo

# Airflow 3 on 127.0.0.1:8080 with the DAGs and the Loopline plugin (Ctrl-C stops).
airflow: env
	$(BIN)/loopline airflow

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: env
	$(BIN)/mypy ml plugins dags

test: lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

# The unit tests alone (tests/unit, marker unit): in-process, under a minute.
test-unit: env
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

bench: env
	$(BIN)/python benchmarks/bench_sim.py

clean:
	rm -rf $(VENV) $(TOOLS) .loopline
