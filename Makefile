# The two set-up commands of the README. Each creates .venv and installs what it needs.
#   make demo   - run the whole pipeline on the embedded default (SQLite, no servers, no key); installs triage alone
#   make test   - lint, type-check, check the layers (lint-imports) and run the test suite; installs the [test] extra
# The manual (docs/, MkDocs with the Material theme, the [docs] extra), built into site/ and checked strictly:
#   make docs                          (python -m triage.settings_reference first if a setting changed)
# The wheel suite: build the wheel, install it in a fresh venv outside the checkout, migrate, demo:
#   make wheel-test
# The end-to-end suite: real serve, worker and beat processes on PostgreSQL + Redis (+ RabbitMQ), minutes long:
#   make e2e
# The browser suite: Chromium (Debian's /usr/bin/chromium) driven by Playwright against the dispatch desk:
#   make browser       (TRIAGE_DESK_SCREENSHOTS=docs make browser also refreshes the screenshots of docs/desk.md)
# And the fault suite (kills workers, restarts Redis and PostgreSQL: run it on a CI machine):
#   make faults
# And the benchmarks (PostgreSQL + Redis, about 6 minutes; docs/benchmarks.md):
#   make bench                         # results in benchmarks/results/<date>.md and .png
#   make bench BENCH_ARGS=--quick      # seconds per scenario, for development
PYTHON ?= python3
VENV := .venv

.PHONY: demo test docs e2e wheel-test browser faults bench
BENCH_ARGS ?=
# make test runs the suite in two processes (pytest-xdist), one per core of a CI machine
TEST_PROCESSES ?= 2

# One venv; each command installs what it needs into it, once per change of pyproject.toml (its own stamp).
$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip

# The demo needs triage and its dependencies only: no test tools, browsers or fuzzers.
$(VENV)/.demo-installed: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.docs-installed: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet -e ".[docs]"
	touch $@

demo: $(VENV)/.demo-installed
	$(VENV)/bin/triage demo

# The settings reference must match the model, then every page builds with no warning (links and anchors
# checked). NO_MKDOCS_2_WARNING silences the theme's banner about MkDocs' future, which is not a warning here.
docs: $(VENV)/.docs-installed
	$(VENV)/bin/python -m triage.settings_reference --check
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -n $(TEST_PROCESSES)

e2e: $(VENV)/.installed
	$(VENV)/bin/pytest -m e2e tests

wheel-test: $(VENV)/.installed
	$(VENV)/bin/pytest -m wheel tests/test_wheel.py

browser: $(VENV)/.installed
	$(VENV)/bin/pytest -m browser tests/test_desk_browser.py tests/test_autonomy_browser.py

faults: $(VENV)/.installed
	TRIAGE_FAULTS=1 $(VENV)/bin/pytest tests/faults

$(VENV)/.bench-installed: $(VENV)/.installed
	$(VENV)/bin/python -m pip install --quiet -e ".[test,bench]"
	touch $@

bench: $(VENV)/.bench-installed
	$(VENV)/bin/python -m benchmarks $(BENCH_ARGS)
