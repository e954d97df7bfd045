# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint fuzz demo serve bench messages screenshots clean

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

# The long fuzz (many minutes): the same tests as the short run inside `make test`, with
# thousands of cases each, random seeds and hypothesis' example database; the figures
# go to .fuzz/figures.json (and the summary). The log scan runs at its end too.
FUZZ_TESTS := tests/test_fuzz_api.py tests/test_fuzz_deep.py tests/test_fuzz_wire.py \
	tests/test_fuzz_core.py tests/test_fuzz_privacy.py tests/test_server_fastload.py
fuzz: venv
	rm -f .fuzz/figures.json
	FIELDSYNC_FUZZ=long FIELDSYNC_FUZZ_FIGURES=.fuzz/figures.json $(BIN)/pytest $(FUZZ_TESTS)

demo: venv
	$(BIN)/python -m client_sync.demo

serve: venv
	$(BIN)/fieldsync-server run

# Every benchmark; writes bench/results.json and the tables of docs/BENCHMARKS.md.
# QUICK=1: tiny sizes, a smoke run (under a minute).
bench: venv
	$(BIN)/python bench/run.py $(if $(QUICK),--quick)

# The workbench's catalogues: extract every message, then merge it into each language
# (translations are edited in client_sync/web/translations/<ll>/LC_MESSAGES/messages.po).
I18N := client_sync/web/translations
messages: venv
	$(BIN)/pybabel extract -F $(I18N)/babel.cfg -k N_ -k _ -k gettext -k ngettext:1,2 \
		--no-location --sort-output --omit-header --project fieldsync -o $(I18N)/messages.pot .
	for l in ru kk; do $(BIN)/pybabel update -i $(I18N)/messages.pot -d $(I18N) -l $$l \
		--no-fuzzy-matching --omit-header --ignore-obsolete; done

# The README's pictures of the workbench, taken by the browser test as it plays the day.
screenshots: venv
	FIELDSYNC_SCREENSHOTS=1 $(BIN)/pytest -q tests/test_web_browser.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .fuzz
