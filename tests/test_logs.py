"""Log lines: JSON objects with the context fields, text with them appended, every configured secret scrubbed."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from celery import Celery, signals
from celery.apps import worker as celery_worker

from tests.factories import CONFIG_PATH
from triage import scrubbing
from triage.app.queues import EXTRACT_TASK, SWEEP_TASK
from triage.settings import load_settings
from triage.worker import logs

SECRETS = {"MIMO_API_KEY": "sk-mimo-key-0123456789", "TRIAGE_API_TOKENS": "alice:alice-token-abcdef",
           "TRIAGE_WEBHOOK_SECRET_ZENDESK": "zendesk-signing-secret",
           "TRIAGE_WRITEBACK_ZAMMAD_URL": "https://zammad.example.com",
           "TRIAGE_WRITEBACK_ZAMMAD_TOKEN": "zammad-api-token-xyz",
           "TRIAGE_DATABASE_URL": "postgresql+psycopg://triage:db-password-42@db:5432/triage",
           "TRIAGE_BROKER_URL": "redis://:broker-password-7@redis:6379/0"}


class Captured:
    """What the handler :func:`logs.configure` installs writes to stderr (pytest's capsys)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str]) -> Iterator[Captured]:
    """The root logger's output once a test configures it; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield Captured(capsys)
    root.handlers, root.level = handlers, level


def _settings(log_format: str) -> object:
    return load_settings({"TRIAGE_CONFIG": str(CONFIG_PATH), "TRIAGE_LOG_FORMAT": log_format, **SECRETS})


def test_json_lines_carry_the_fields_and_the_traceback(captured: Captured) -> None:
    logs.configure(_settings("json"), "INFO")  # type: ignore[arg-type]
    log = logging.getLogger("triage.test")
    log.info("ticket %s routed", 7, extra={"ticket_id": 7, "source": "zendesk", "external_id": "Z-1"})
    log.debug("not shown at INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed", extra={"model": "mimo-v2-flash", "attempt": 2})
    first, second = (json.loads(line) for line in captured.getvalue().splitlines())
    assert set(first) == {"time", "level", "logger", "message", "ticket_id", "source", "external_id"}
    assert (first["level"], first["logger"], first["message"], first["ticket_id"]) == ("INFO", "triage.test",
                                                                                       "ticket 7 routed", 7)
    assert first["time"].endswith("+00:00")
    assert (second["model"], second["attempt"]) == ("mimo-v2-flash", 2)
    assert "ValueError: boom" in second["exception"] and "Traceback" in second["exception"]


def test_text_lines_put_the_fields_on_the_message_line(captured: Captured) -> None:
    logs.configure(_settings("text"), "INFO")  # type: ignore[arg-type]
    logging.getLogger("triage.test").warning("retry in %ss", 2, extra={"ticket_id": 3, "model": "m"})
    assert captured.getvalue().rstrip().endswith("WARNING triage.test: retry in 2s [ticket_id=3 model=m]")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_every_configured_secret_is_scrubbed_from_every_line(captured: Captured, log_format: str) -> None:
    settings = _settings(log_format)
    logs.configure(settings, "DEBUG")  # type: ignore[arg-type]
    log = logging.getLogger("triage.test")
    secrets = ["sk-mimo-key-0123456789", "alice-token-abcdef", "zendesk-signing-secret", "zammad-api-token-xyz",
               "db-password-42", "broker-password-7"]
    assert sorted(scrubbing.secret_values(settings)) == sorted(secrets)  # type: ignore[arg-type]
    for secret in secrets:
        log.info("calling with %s", secret)
    try:
        raise RuntimeError(f"connection to redis://:{secrets[-1]}@redis failed")
    except RuntimeError:
        log.exception("broker down")
    output = captured.getvalue()
    assert output.count(scrubbing.REDACTED) == len(secrets) + 1  # and the exception's line in the traceback
    assert not [secret for secret in secrets if secret in output]


def test_configure_twice_keeps_one_handler(captured: Captured) -> None:
    settings = _settings("json")
    logs.configure(settings, "INFO")  # type: ignore[arg-type]
    logs.configure(settings, logging.WARNING)  # type: ignore[arg-type]
    logging.getLogger("triage.test").warning("once")
    assert len(captured.getvalue().splitlines()) == 1


@pytest.fixture
def celery_hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """:func:`logs.celery_logging`'s hooks, taken out again so no other test's Celery logs through them."""
    monkeypatch.setattr(celery_worker, "safe_say", celery_worker.safe_say)
    yield
    for signal, uid in ((signals.setup_logging, "setup"), (signals.task_prerun, "bind"),
                        (signals.task_postrun, "unbind")):
        signal.disconnect(dispatch_uid=f"triage.worker.logs.{uid}")


def test_a_task_gives_its_lines_its_id_and_ticket(captured: Captured, celery_hooks: None) -> None:
    settings = _settings("json")
    assert logs.celery_logging(settings) == ["--quiet"]  # type: ignore[arg-type]
    logs.configure(settings, "INFO")  # type: ignore[arg-type]
    celery = Celery("test-logs")

    @celery.task(name=EXTRACT_TASK, shared=False)
    def extract(ticket_id: int) -> None:
        """Stands for the extraction task (only its name and arguments matter)."""

    @celery.task(name=SWEEP_TASK, shared=False)
    def sweep() -> None:
        """Stands for the sweep task."""

    log = logging.getLogger("triage.test")
    signals.task_prerun.send(sender=extract, task_id="t-1", task=extract, args=(42,), kwargs={})
    log.info("in the extraction")
    signals.task_postrun.send(sender=extract, task_id="t-1", task=extract, args=(42,), kwargs={})
    signals.task_prerun.send(sender=sweep, task_id="t-2", task=sweep, args=(), kwargs={})
    log.info("in the sweep")
    signals.task_postrun.send(sender=sweep, task_id="t-2", task=sweep, args=(), kwargs={})
    log.info("outside")
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [(line.get("task_id"), line.get("ticket_id")) for line in lines] == [("t-1", 42), ("t-2", None),
                                                                                  (None, None)]


def test_an_unknown_level_is_refused_naming_the_levels() -> None:
    with pytest.raises(logs.SettingsError, match="--loglevel loud: use one of DEBUG, INFO, WARNING"):
        logs.check_level("loud")
