"""The Celery app for a settings object (queues, delivery guarantees, beat schedule) and the publisher.

At-least-once delivery: a task's message is acknowledged only after the task finished (late
acks), is given back when the worker process dies (reject on worker lost), and each worker
thread reserves one message at a time (prefetch 1). The database row, not the broker, is the
source of truth: the ``sweep-stuck`` beat job re-publishes tickets a lost message left behind.

Publishing goes by task name (``send_task``), so the HTTP service and the CLI need no task code::

    publisher = Publisher(create_celery(settings))
    publisher.extraction(ticket_id)          # after the commit that made it necessary
    publisher.delivery(delivery_id)          # the outbox does this after each commit that recorded one
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu import Queue
from kombu.exceptions import OperationalError as BrokerError

from triage.ratelimit import is_redis_url
from triage.settings import Settings

log = logging.getLogger(__name__)

TRIAGE_QUEUE = "triage"
FALLBACK_QUEUE = "fallback"
#: The outbox's deliveries (write-back, events, alerts): a queue of their own, so a platform that keeps
#: failing never holds up extraction, and it can have workers of its own (``--queues deliveries``).
DELIVERIES_QUEUE = "deliveries"
QUEUES = (TRIAGE_QUEUE, FALLBACK_QUEUE, DELIVERIES_QUEUE)

EXTRACT_TASK = "triage.extract"
FALLBACK_TASK = "triage.fallback"
SWEEP_TASK = "triage.sweep_stuck"
RETRY_FALLBACK_TASK = "triage.retry_fallback"
PURGE_TASK = "triage.purge_expired"
DELIVER_TASK = "triage.deliver"
SLA_ALERTS_TASK = "triage.sla_alerts"
LEARN_TASK = "triage.learn"
CALIBRATE_TASK = "triage.calibrate"
SECONDS_PER_HOUR = 3600


def _transport_options(settings: Settings) -> dict[str, Any]:
    """Redis redelivers unacked messages after the visibility timeout; other transports have none."""
    if is_redis_url(settings.broker_url):
        return {"visibility_timeout": settings.worker.visibility_timeout_seconds}
    return {}


def create_celery(settings: Settings) -> Celery:
    """A Celery app configured from ``settings``; :func:`triage.worker.tasks.celery_for` adds the tasks."""
    celery = Celery("triage")
    worker = settings.worker
    celery.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings),
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue=TRIAGE_QUEUE,
        task_routes={DELIVER_TASK: {"queue": DELIVERIES_QUEUE}},
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
            "sweep-stuck": {"task": SWEEP_TASK, "schedule": worker.sweep_interval_seconds},
            "retry-fallback": {"task": RETRY_FALLBACK_TASK, "schedule": settings.jobs.retry_fallback_interval_seconds},
            "purge-expired": {"task": PURGE_TASK, "schedule": settings.jobs.purge_interval_seconds},
            "sla-alerts": {"task": SLA_ALERTS_TASK, "schedule": settings.alerts.sla_check_interval_seconds},
            **({"learn": {"task": LEARN_TASK, "schedule": settings.jobs.learn_interval_hours * SECONDS_PER_HOUR}}
               if settings.jobs.learn_interval_hours else {}),
            **({"calibrate": {"task": CALIBRATE_TASK,
                              "schedule": settings.jobs.calibrate_interval_hours * SECONDS_PER_HOUR}}
               if settings.jobs.calibrate_interval_hours else {}),
        },
    )
    return celery


class Publisher:
    """Publishes the next step of a stored ticket; call only after the commit that made it necessary."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def extraction(self, ticket_id: int) -> None:
        """Publish the extraction task (raises the broker's error when it is down)."""
        self._celery.send_task(EXTRACT_TASK, args=(ticket_id,), queue=TRIAGE_QUEUE)

    def extraction_later(self, ticket_id: int, countdown: float) -> None:
        """Publish the extraction task to run in ``countdown`` seconds: a batch companion's retry or
        deferral, whose own message is already spent (raises the broker's error when it is down)."""
        self._celery.send_task(EXTRACT_TASK, args=(ticket_id,), queue=TRIAGE_QUEUE, countdown=countdown)

    def fallback(self, ticket_id: int) -> None:
        """Publish the fallback task (raises the broker's error when it is down)."""
        self._celery.send_task(FALLBACK_TASK, args=(ticket_id,), queue=FALLBACK_QUEUE)

    def delivery(self, delivery_id: str) -> None:
        """Publish the outbox's delivery task (raises the broker's error when it is down)."""
        self._celery.send_task(DELIVER_TASK, args=(delivery_id,), queue=DELIVERIES_QUEUE)

    def delivery_or_log(self, delivery_id: str) -> None:
        """Publish; when the broker is down, log it: the sweep re-publishes the delivery."""
        self._or_log(self.delivery, delivery_id, "delivery")

    def extraction_or_log(self, ticket_id: int) -> None:
        """Publish; when the broker is down, log it: the sweep re-publishes the ticket."""
        self._or_log(self.extraction, ticket_id)

    def extractions_or_log(self, ticket_ids: Sequence[int]) -> None:
        """Publish the extraction tasks of ``ticket_ids`` (``triage submit``'s chunk) as one batch: one Redis
        pipeline (kombu's ``Producer.batch``; other brokers publish one by one on one connection). When the
        broker is down, log each ticket: the sweep re-publishes them."""
        if not ticket_ids:
            return
        try:
            with self._celery.producer_or_acquire() as producer, producer.batch(max_size=len(ticket_ids)):
                for ticket_id in ticket_ids:
                    self._celery.send_task(EXTRACT_TASK, args=(ticket_id,), queue=TRIAGE_QUEUE, producer=producer)
        except BrokerError as exc:  # a batch not flushed is discarded whole
            for ticket_id in ticket_ids:
                _not_enqueued("ticket", ticket_id, exc)

    def fallback_or_log(self, ticket_id: int) -> None:
        self._or_log(self.fallback, ticket_id)

    @staticmethod
    def _or_log(publish: Any, key: int | str, what: str = "ticket") -> None:
        try:
            publish(key)
        except BrokerError as exc:
            _not_enqueued(what, key, exc)


def _not_enqueued(what: str, key: int | str, exc: BrokerError) -> None:
    log.warning("%s %s is stored but not enqueued (%s); the sweep job will publish it", what, key, exc)
