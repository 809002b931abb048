"""A worker or beat that Celery stops with an error must exit non-zero, or no supervisor restarts it.

The Redis fault showed why: on losing the broker, Celery's worker sometimes dies of
``Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")`` (raised
inside kombu while it restores unacknowledged messages) and sets its exit code to 1. Only a
supervisor brings it back: docker-compose's ``restart: unless-stopped`` does whatever the status,
but ``Restart=on-failure`` (systemd) and similar policies need a failing status.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import Celery

from tests.factories import ready_environ
from triage.cli import main as cli

CELERY_FAILURE = 1


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_celery_failure_is_the_commands_exit_status(command: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ready_environ(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(Celery, "start", lambda self, argv=None: CELERY_FAILURE)  # Celery ran and failed
    argv = [command] + (["--schedule", str(tmp_path / "schedule")] if command == "beat" else [])
    assert cli.main(argv) == CELERY_FAILURE
