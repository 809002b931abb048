"""The folders triage ships: its configuration and its Alembic migrations.

They live at the top of the source tree (``config/``, ``migrations/``) and are mapped into the
package as ``triage._config`` and ``triage._migrations`` (``pyproject.toml``), so an editable
install and an installed wheel find them the same way, through :mod:`importlib.resources`.

>>> (CONFIG_DIR / "triage.toml").is_file(), (MIGRATIONS_DIR / "env.py").is_file()
(True, True)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_folder(package: str) -> Path:
    """The folder of ``package`` on disk (wheels install as plain files, never zipped)."""
    folder = resources.files(package)
    if not isinstance(folder, Path):
        raise RuntimeError(f"{package} is not installed as plain files ({folder!r}); reinstall triage with pip")
    return folder


CONFIG_DIR = shipped_folder("triage._config")
MIGRATIONS_DIR = shipped_folder("triage._migrations")
