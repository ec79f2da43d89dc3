# One virtual environment in .venv; every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_GOAL ?= Translate 'good morning, friends' into French and into Spanish.

.PHONY: setup demo test unit lint docker postgres browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# llama-cpp-python compiles from source here (~10-15 min once; pip caches the wheel).
	$(BIN)/pip install --quiet -e '.[local,test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/goalflow run "$(DEMO_GOAL)"

# The Docker engine, the sandbox image that code tasks (and their tests) run in, and the
# goal runner image of this checkout that the goal-docker deployment (and its test) runs.
docker: setup
	GOALFLOW=$(BIN)/goalflow bash scripts/docker-up.sh

# PostgreSQL for the Prefect server at scale (tests/integration/test_postgres_backend.py).
postgres:
	bash scripts/postgres-up.sh

# Debian's chromium and chromium-driver for the UI test (tests/integration/test_ui.py).
browser:
	bash scripts/browser-up.sh

test: setup docker postgres browser
	$(BIN)/pytest

# The fast tests: no Docker engine, no Prefect server (the layer and public-API checks too).
unit: setup
	$(BIN)/pytest tests/unit -q

lint: setup
	$(BIN)/ruff check src tests flows blocks benchmarks
	$(BIN)/ruff format --check src tests flows blocks benchmarks
	$(BIN)/mypy src
