"""Start-up checks of ``triage worker``, ``beat`` and ``serve``: each failure is one line naming the key or URL
and what to do, exit status 2, no traceback, and nothing started."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from benchmarks.stack import clean_environ, free_port
from tests.factories import REPO, ready_environ
from triage.cli import main as cli
from triage.store.db import alembic_config, make_engine

#: The migration before the latest: where a database one release behind stands.

COMMANDS = {"worker": ["worker"], "beat": ["beat", "--schedule", "{tmp}/schedule"], "serve": ["serve", "--port", "1"]}


def _broken_schema(tmp: Path, env: dict[str, str]) -> None:
    (tmp / "broken.json").write_text('{"type": "object", "properties": ', encoding="utf-8")
    env["TRIAGE__SCHEMA__PATH"] = str(tmp / "broken.json")


def _postgres_scheme(tmp: Path, env: dict[str, str]) -> None:
    env["TRIAGE_DATABASE_URL"] = "postgres://triage:hunter2-secret@db.internal:5432/triage"


def _unknown_broker(tmp: Path, env: dict[str, str]) -> None:
    env["TRIAGE_BROKER_URL"] = "foo://bar"


def _behind_migrations(tmp: Path, env: dict[str, str]) -> None:
    command.downgrade(alembic_config(env["TRIAGE_DATABASE_URL"]), "-1")


def _silent_broker(tmp: Path, env: dict[str, str]) -> None:
    env["TRIAGE_BROKER_URL"] = f"redis://127.0.0.1:{free_port()}/0"


def _no_tables(tmp: Path, env: dict[str, str]) -> None:
    env["TRIAGE_DATABASE_URL"] = f"sqlite:///{tmp / 'empty.sqlite3'}"


def _silent_database(tmp: Path, env: dict[str, str]) -> None:
    env["TRIAGE_DATABASE_URL"] = f"postgresql+psycopg://triage:hunter2-secret@127.0.0.1:{free_port()}/triage"


#: case -> (how it breaks the environment, what the one line must say)
CASES: dict[str, tuple[Callable[[Path, dict[str, str]], None], list[str]]] = {
    "broken-schema-file": (_broken_schema, ["broken.json", "not valid JSON"]),
    "postgres-scheme": (_postgres_scheme, ["TRIAGE_DATABASE_URL='postgres://triage:***@db.internal:5432/triage'",
                                           "postgresql+psycopg://"]),
    "unknown-broker": (_unknown_broker, ["TRIAGE_BROKER_URL='foo://bar'", "No such transport: foo", "redis://"]),
    "behind-migrations": (_behind_migrations, ["is at migration ", ", this release needs ", "run `triage db upgrade`"]),
    "broker-not-answering": (_silent_broker, ["TRIAGE_BROKER_URL='redis://127.0.0.1:", "does not answer",
                                              "start it"]),
    "no-tables": (_no_tables, ["empty.sqlite3 has no tables", "run `triage db upgrade`"]),
    "database-not-answering": (_silent_database, ["cannot reach the database", "triage:***@127.0.0.1",
                                                  "check TRIAGE_DATABASE_URL"]),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", COMMANDS)
def test_each_failure_is_one_line_and_exit_status_2(name: str, case: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    env = ready_environ(tmp_path)
    breaks, expected = CASES[case]
    breaks(tmp_path, env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = [part.replace("{tmp}", str(tmp_path)) for part in COMMANDS[name]]
    assert cli.main(argv) == cli.EXIT_FIX_SETUP
    err = capsys.readouterr().err
    assert err.startswith("triage: ") and err.count("\n") == 1, err
    for part in expected:
        assert part in err
    assert "hunter2-secret" not in err


def test_the_real_command_prints_one_line_without_a_traceback(tmp_path: Path) -> None:
    env = {**clean_environ(), **ready_environ(tmp_path), "TRIAGE_BROKER_URL": "foo://bar"}
    result = subprocess.run([sys.executable, "-m", "triage", "worker"], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == cli.EXIT_FIX_SETUP
    assert result.stderr.splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    assert "TRIAGE_BROKER_URL='foo://bar'" in result.stderr


def test_a_database_a_newer_release_migrated_is_refused_with_what_to_do(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    env = ready_environ(tmp_path)
    engine = make_engine(env["TRIAGE_DATABASE_URL"])
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    engine.dispose()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["worker"]) == cli.EXIT_FIX_SETUP
    err = capsys.readouterr().err
    assert "at migration from_the_future, which this release of triage does not have" in err
    assert "triage db downgrade" in err


@pytest.mark.parametrize(("argv", "expected"), [
    (["worker", "--loglevel", "chatty"], "--loglevel chatty: use one of DEBUG, INFO"),
    (["worker", "--metrics-port", "{busy}"], "cannot listen there"),
])
def test_worker_options_are_checked_before_it_starts(argv: list[str], expected: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in ready_environ(tmp_path).items():
        monkeypatch.setenv(key, value)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert cli.main([part.replace("{busy}", port) for part in argv]) == cli.EXIT_FIX_SETUP
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_db_commands_refuse_a_database_url_with_the_same_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRIAGE_DATABASE_URL", "postgres://triage:hunter2-secret@db.internal/triage")
    assert cli.main(["db", "upgrade"]) == cli.EXIT_FIX_SETUP
    err = capsys.readouterr().err
    assert err.startswith("triage: TRIAGE_DATABASE_URL='postgres://triage:***@db.internal/triage'") and \
        err.count("\n") == 1
