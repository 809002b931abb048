# The two set-up commands of the README. Each creates .venv and installs what it needs.
#   make demo   - run the whole pipeline on the embedded default (SQLite, no servers, no key)
#   make test   - lint, type-check and run the test suite
# And the fault suite (kills workers, restarts Redis and PostgreSQL: run it on a CI machine):
#   make faults
PYTHON ?= python3
VENV := .venv

.PHONY: demo test faults
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/triage demo

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

faults: $(VENV)/.installed
	TRIAGE_FAULTS=1 $(VENV)/bin/pytest tests/faults
