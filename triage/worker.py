"""The Celery app, its queues and the beat schedule: ``celery -A triage.worker worker`` works.

At-least-once delivery: a task's message is acknowledged only after the task finished (late
acks), is given back when the worker process dies (reject on worker lost), and each worker
thread reserves one message at a time (prefetch 1). The database row, not the broker, is the
source of truth: the ``sweep-stuck`` beat job re-publishes tickets a lost message left behind.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu import Queue

from triage.settings import Settings, SettingsError, load_settings

TRIAGE_QUEUE = "triage"
FALLBACK_QUEUE = "fallback"
QUEUES = (TRIAGE_QUEUE, FALLBACK_QUEUE)


def _transport_options(settings: Settings) -> dict[str, Any]:
    """Redis redelivers unacked messages after the visibility timeout; other transports have none."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return {"visibility_timeout": settings.worker.visibility_timeout_seconds}
    return {}


def create_app(settings: Settings) -> Celery:
    """A Celery app configured from ``settings`` (tasks come from :mod:`triage.tasks`)."""
    app = Celery("triage", include=["triage.tasks"])
    worker = settings.worker
    app.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings),
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue=TRIAGE_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=worker.concurrency,
        worker_pool="threads",
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep-stuck": {"task": "triage.sweep_stuck", "schedule": worker.sweep_interval_seconds},
            "retry-fallback": {"task": "triage.retry_fallback",
                               "schedule": settings.jobs.retry_fallback_interval_seconds},
        },
    )
    return app


settings = load_settings()
app = create_app(settings)


@signals.celeryd_init.connect
def _refuse_without_key(**_: Any) -> None:
    """A worker that would call MiMo without a key stops before taking any message."""
    try:
        settings.require_llm_ready()
    except SettingsError as exc:
        raise SystemExit(f"triage worker: {exc}") from None
