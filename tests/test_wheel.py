"""The wheel as a user gets it: built from the sources, installed in a fresh venv outside the
checkout, run from an empty directory (no config/, no migrations/ beside it).

Slow (a build and an install from the package index, whose downloads pip caches) and left out
of the default run: ``make wheel-test`` (``pytest -m wheel tests/test_wheel.py``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

from benchmarks.stack import clean_environ
from tests.harness import REPO

pytestmark = pytest.mark.wheel
#: What a source checkout may hold that is not part of the sources.
NOT_SOURCES = (".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")
INSTALL_SECONDS = 600


def _run(argv: Sequence[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                            check=False)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@dataclass
class Installed:
    venv: Path
    workdir: Path
    env: dict[str, str]

    def triage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run([str(self.venv / "bin" / "triage"), *args], self.workdir, timeout, self.env)


@pytest.fixture(scope="module")
def installed(package_index: None, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    sources = base / "src"
    shutil.copytree(REPO, sources, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(base / "dist"),
          str(sources)], base, INSTALL_SECONDS)
    (wheel,) = (base / "dist").glob("triage-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], base)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], base, INSTALL_SECONDS)
    workdir = base / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in clean_environ().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return Installed(venv, workdir, env)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    where = _run([str(installed.venv / "bin" / "python"), "-c", "import triage.resources as r; "
                  "print(r.__file__); print(r.CONFIG_DIR); print(r.MIGRATIONS_DIR)"], installed.workdir,
                 env=installed.env).stdout.split()
    assert all(Path(path).is_relative_to(installed.venv) for path in where), where
    _run([str(installed.venv / "bin" / "python"), "-m", "pip", "check"], installed.workdir, env=installed.env)


def test_version_migrations_and_demo_from_another_directory(installed: Installed) -> None:
    assert installed.triage("--version").stdout.strip() == f"triage {version('triage')}"
    assert "is now at migration" in installed.triage("db", "upgrade").stdout
    assert "No new upgrade operations detected" in installed.triage("db", "check").stdout
    demo = installed.triage("demo", "--timeout", "120", timeout=180)
    rows = demo.stdout.splitlines()[1:]
    assert len(rows) == 8 and all(" routed " in row for row in rows), demo.stdout
    assert (installed.workdir / "var" / "triage.sqlite3").exists()
    assert not (installed.workdir / "config").exists() and not (installed.workdir / "migrations").exists()
