"""The fault suite: collected only when asked for, so the default ``pytest`` run stays fast.

It runs with ``pytest tests/faults`` (or anything naming a path inside this folder), or with
``TRIAGE_FAULTS=1`` whatever the paths; a plain ``pytest`` skips the folder without a word.
CI runs it as its own step::

    TRIAGE_REQUIRE_SERVICES=1 TRIAGE_FAULTS=1 .venv/bin/pytest tests/faults

Each fault test leaves a ledger line (submitted, routed, needs_review, lost, duplicated, wall
time); they are printed at the end of the run whatever ``-s`` says, and written as JSON to
``<pytest basetemp>/fault-ledger.json`` and to ``$TRIAGE_FAULTS_REPORT`` when that is set.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.faults.fleet import Fleet, FleetFactory, Ledger, postgres_ready, unavailable, wait_until

FAULTS_DIR = Path(__file__).resolve().parent
LEDGERS = pytest.StashKey[list[dict[str, Any]]]()
REPORT = pytest.StashKey[Path]()


def _asked_for(config: pytest.Config) -> bool:
    """True with ``TRIAGE_FAULTS=1`` or when a command-line path points into this folder."""
    if os.environ.get("TRIAGE_FAULTS") == "1":
        return True
    base = config.invocation_params.dir
    for arg in config.invocation_params.args:
        if arg.startswith("-"):
            continue
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == FAULTS_DIR or FAULTS_DIR in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave this folder out of runs that did not ask for it (see the module docstring)."""
    return None if _asked_for(config) else True


def pytest_configure(config: pytest.Config) -> None:
    config.stash[LEDGERS] = []


@pytest.fixture
def record_ledger(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``record_ledger(ledger)``: keep a fault's numbers for the summary, the JSON file and stderr."""
    report = request.config.stash[REPORT] = tmp_path_factory.getbasetemp() / "fault-ledger.json"

    def record(ledger: Ledger) -> None:
        ledgers = request.config.stash[LEDGERS]
        ledgers.append(ledger.to_json())
        print(f"\n[fault ledger] {ledger.line()}", file=sys.__stderr__, flush=True)
        text = json.dumps(ledgers, indent=2, ensure_ascii=False)
        report.write_text(text, encoding="utf-8")
        if os.environ.get("TRIAGE_FAULTS_REPORT"):
            Path(os.environ["TRIAGE_FAULTS_REPORT"]).write_text(text, encoding="utf-8")

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One line per fault, after the results (printed whatever ``-s`` says)."""
    ledgers = config.stash.get(LEDGERS, [])
    if not ledgers:
        return
    terminalreporter.section("fault ledger")
    for row in ledgers:
        terminalreporter.line(Ledger.format_row(row))
    terminalreporter.line(f"total wall time of the faults: {sum(r['wall_seconds'] for r in ledgers):.1f}s; "
                          f"JSON: {config.stash.get(REPORT, None)}")


@pytest.fixture
def fault_database_url(postgres_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards through a new connection (the server may
    have been restarted meanwhile, which kills the connections an engine made before)."""
    name = f"triage_faults_{uuid.uuid4().hex[:10]}"
    _admin_execute(postgres_server, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        wait_until(postgres_ready, 60, 0.5)
        _admin_execute(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin_execute(server: str, statement: str) -> None:
    admin = create_engine(server, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


@pytest.fixture
def fleet(fault_database_url: str, tmp_path: Path) -> Iterator[FleetFactory]:
    """``fleet(name, api, **env)``: a fault run on a fresh PostgreSQL database and a Redis of its own."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (the fault suite runs a Redis of its own)")
    made: list[Fleet] = []

    def make(name: str, api_base_url: str, **env: str) -> Fleet:
        run = Fleet(name, fault_database_url, tmp_path / f"fleet-{len(made)}", api_base_url, env)
        made.append(run)
        run.open()
        return run

    try:
        yield make
    finally:
        for run in made:
            run.close()
