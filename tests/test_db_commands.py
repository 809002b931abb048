"""`triage db ...` and `triage --version`, run as a user runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from alembic.script import ScriptDirectory

from benchmarks.stack import clean_environ
from tests.harness import REPO, Stack
from triage.resources import MIGRATIONS_DIR

HEAD = str(ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head())


def _stack(database_url: str, tmp_path: Path) -> Stack:
    return Stack(database_url, f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}", api_base_url=None)


def test_version_is_the_package_metadata() -> None:
    result = subprocess.run([sys.executable, "-m", "triage", "--version"], capture_output=True, text=True,
                            env=clean_environ(), check=False)
    assert result.returncode == 0 and result.stdout.strip() == f"triage {version('triage')}"


def test_upgrade_current_check_downgrade_history(database_url: str, tmp_path: Path) -> None:
    stack = _stack(database_url, tmp_path)
    assert stack.cli("db", "current").stdout.strip() == ""
    upgraded = stack.cli("db", "upgrade")
    assert upgraded.returncode == 0 and upgraded.stdout.strip().endswith(f"is now at migration {HEAD}")
    assert stack.cli("db", "current").stdout.strip() == f"{HEAD} (head)"
    checked = stack.cli("db", "check")
    assert checked.returncode == 0 and "No new upgrade operations detected" in checked.stdout

    down = stack.cli("db", "downgrade", "-1")
    assert down.returncode == 0 and HEAD not in down.stdout.split("migration")[-1]
    behind = stack.cli("db", "check")
    assert behind.returncode == 2 and "not up to date" in behind.stderr
    history = stack.cli("db", "history").stdout.splitlines()
    assert history[0].startswith(f"{history[0].split()[0]} -> {HEAD} (head)") and history[-1].startswith("<base> ->")
    assert stack.cli("db", "downgrade", "base").stdout.strip().endswith("base (none applied)")
    stack.close()


def test_an_unknown_revision_is_refused_by_name(tmp_path: Path) -> None:
    result = _stack(f"sqlite:///{tmp_path / 't.sqlite3'}", tmp_path).cli("db", "downgrade", "nosuch")
    assert result.returncode == 2
    assert "triage db downgrade: Can't locate revision identified by 'nosuch'" in result.stderr


def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    stack = _stack("postgresql+psycopg://triage:secret@127.0.0.1:1/none", tmp_path)
    result = stack.cli("db", "current")
    assert result.returncode == 2 and "cannot reach postgresql+psycopg://triage:***@127.0.0.1:1/none" in result.stderr
    assert "secret" not in result.stderr


def test_plain_alembic_uses_alembic_ini_and_the_settings(tmp_path: Path) -> None:
    env = {**clean_environ(), "TRIAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'a.sqlite3'}"}
    alembic = [str(Path(sys.executable).with_name("alembic")), "-c", str(REPO / "alembic.ini")]
    upgraded = subprocess.run([*alembic, "upgrade", "head"], capture_output=True, text=True, env=env, cwd=tmp_path,
                              check=False)
    assert upgraded.returncode == 0, upgraded.stderr
    current = subprocess.run([*alembic, "current"], capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert current.stdout.strip() == f"{HEAD} (head)"
