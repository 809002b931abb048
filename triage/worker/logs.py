"""Logging for ``triage serve``, ``worker`` and ``beat``: text (the default) or one JSON object a line.

``TRIAGE_LOG_FORMAT=json`` makes every line one object with ``time``, ``level``, ``logger`` and
``message``, and, where known, the context fields :data:`CONTEXT_FIELDS` (``ticket_id``,
``source``, ``external_id``, ``attempt``, ``model``, ``task_id``); an exception's traceback is the
``exception`` field of its line. A log call gives context with ``extra={"ticket_id": ...}``;
inside a Celery task ``task_id`` and, for the ticket tasks, ``ticket_id`` are added to every line.

Whatever the format, every configured secret (API key, tokens, webhook and event secrets, the
passwords in the database and broker URLs) is replaced by ``<redacted>`` in the finished line,
tracebacks included.

>>> record = logging.LogRecord("triage.worker.tasks", logging.INFO, __file__, 1, "ticket %s routed", (7,), None)
>>> record.ticket_id = 7
>>> line = json.loads(JsonFormatter().format(record))
>>> line["level"], line["logger"], line["message"], line["ticket_id"]
('INFO', 'triage.worker.tasks', 'ticket 7 routed', 7)
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from celery import signals
from celery.apps import worker as celery_worker

from triage.app.queues import EXTRACT_TASK, FALLBACK_TASK
from triage.scrubbing import scrub_secrets, scrubbed_order, secret_values
from triage.settings import Settings, SettingsError

CONTEXT_FIELDS = ("ticket_id", "source", "external_id", "attempt", "model", "task_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HANDLER_NAME = "triage"
CELERY_CONSOLE_LOGGER = "celery.apps.worker"
#: Tasks whose first argument is a ticket id.
TICKET_TASKS = frozenset({EXTRACT_TASK, FALLBACK_TASK})

_task_context: ContextVar[dict[str, Any] | None] = ContextVar("triage_task_context", default=None)


class ContextFilter(logging.Filter):
    """Adds the running task's context fields to each record (a field the call gave wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_task_context.get() or {}).items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {name: value for name in CONTEXT_FIELDS if (value := getattr(record, name, None)) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(), **_context(record)}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [field=value ...]``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context(record)
        if not context:
            return line
        head, newline, rest = line.partition("\n")  # the fields go on the message's line, before a traceback
        return f"{head} [{' '.join(f'{k}={v}' for k, v in context.items())}]{newline}{rest}"


class ScrubbingFormatter(logging.Formatter):
    """Formats with ``inner``, then replaces each of ``secrets`` (longest first) by ``<redacted>``."""

    def __init__(self, inner: logging.Formatter, secrets: Sequence[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = scrubbed_order(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return scrub_secrets(self.inner.format(record), self.secrets)


def check_level(level: str) -> str:
    """``level`` in upper case, or :class:`SettingsError` naming the ones there are."""
    if level.upper() not in LEVELS:
        raise SettingsError(f"--loglevel {level}: use one of {', '.join(LEVELS)}")
    return level.upper()


def configure(settings: Settings, level: str | int) -> None:
    """Send every log record of this process to stderr in ``settings.log_format``, secrets scrubbed.

    Replaces the handler an earlier call installed, so calling it again (a Celery setup, a
    uvicorn worker process) does not double the lines.
    """
    inner = JsonFormatter() if settings.log_format == "json" else TextFormatter()
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(ScrubbingFormatter(inner, secret_values(settings)))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(check_level(level) if isinstance(level, str) else level)
    logging.captureWarnings(True)


def _bind_task(task_id: str, task: Any, args: Sequence[Any] | None = None, **_: Any) -> None:
    fields: dict[str, Any] = {"task_id": task_id}
    if task.name in TICKET_TASKS and args:
        fields["ticket_id"] = args[0]
    _task_context.set(fields)


def _unbind_task(**_: Any) -> None:
    _task_context.set(None)


def _say_as_log(message: str, *_: Any) -> None:
    """Celery's console notices ("worker: Warm shutdown (MainProcess)"), as log records."""
    logging.getLogger(CELERY_CONSOLE_LOGGER).warning("%s", message.strip())


def celery_logging(settings: Settings) -> list[str]:
    """Let :func:`configure` set up logging when Celery would (worker and beat), and add each task's
    context to its lines; the extra arguments for Celery's command line.

    In JSON, ``--quiet`` drops the start-up banner, and the worker's console notices (written
    straight to the terminal by ``celery.apps.worker.safe_say``, not logged) become log records.
    """

    def setup(loglevel: int | str = logging.INFO, **_: Any) -> None:
        configure(settings, loglevel)

    signals.setup_logging.connect(setup, weak=False, dispatch_uid="triage.worker.logs.setup")
    signals.task_prerun.connect(_bind_task, weak=False, dispatch_uid="triage.worker.logs.bind")
    signals.task_postrun.connect(_unbind_task, weak=False, dispatch_uid="triage.worker.logs.unbind")
    if settings.log_format != "json":
        return []
    celery_worker.safe_say = _say_as_log  # type: ignore[attr-defined]  # no hook for these lines (not in the stubs)
    return ["--quiet"]
