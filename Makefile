# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo serve bench clean

venv: $(STAMP)

# Reinstall only when the project's metadata changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check protocol schemas server client_sync tests bench
	$(BIN)/ruff format --check protocol schemas server client_sync tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

demo: venv
	$(BIN)/python -m client_sync.demo

serve: venv
	$(BIN)/fieldsync-server run

# Every benchmark; writes bench/results.json and the tables of docs/BENCHMARKS.md.
# QUICK=1: tiny sizes, a smoke run (under a minute).
bench: venv
	$(BIN)/python bench/run.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
