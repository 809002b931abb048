"""The wheel lists its packages by hand (setuptools' discovery does not mix with ``package-dir``):
every package under ``triage/`` must be in that list, or an installed triage cannot import it."""

from __future__ import annotations

import tomllib

from tests.factories import REPO


def test_every_package_of_the_source_tree_is_in_the_wheel() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "triage").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
