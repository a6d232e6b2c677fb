# One entry point for people and CI. `make test` and `make run` install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov

.PHONY: test test-fast check lint format typecheck pytest pytest-fast run ops bench clean deps

test: check pytest ## every check and test (what CI runs)

test-fast: check pytest-fast ## every check, and every test not marked slow

deps: $(VENV)/.installed node_modules/.installed $(CHECKOV_VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# checkov pins an older pycep-parser than our own parse check uses, so it lives apart.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

check: lint typecheck

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

pytest: deps
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest $(PYTEST_ARGS)

pytest-fast: deps
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

run: $(VENV)/.installed node_modules/.installed
	$(PY) -m tools.local_loop $(ARGS)

# Ops commands in a second shell; they read what a running `make run` wrote to .local/ops.env.
ops: $(VENV)/.installed
	@$(PY) -m tools.ops $(ARGS)

bench: $(VENV)/.installed node_modules/.installed
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
