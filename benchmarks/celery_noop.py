"""Raw Celery with a no-op task, configured like triage's worker: the engine's ceiling.

Same broker (Redis), threads pool, late acks, reject on worker lost, prefetch 1, JSON, no results,
as ``triage/worker/entry.py`` sets them. The broker comes from ``BENCH_BROKER_URL``; run a worker with::

    BENCH_BROKER_URL=redis://127.0.0.1:6379/11 celery -A benchmarks.celery_noop worker --pool=threads \\
        --concurrency=32 --queues=bench-noop
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

BROKER_ENV = "BENCH_BROKER_URL"
QUEUE = "bench-noop"
TASK = "bench.noop"
#: The Redis hash where kombu keeps delivered, not yet acknowledged messages.
UNACKED_KEY = "unacked"
VISIBILITY_TIMEOUT_SECONDS = 3600


def create_app(broker_url: str) -> Celery:
    app = Celery("bench_noop")
    app.conf.update(
        broker_url=broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
        task_queues=[Queue(QUEUE)],
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_pool="threads",
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
    )

    @app.task(name=TASK)
    def noop(number: int) -> None:
        """Nothing: what is left is Celery's own cost per task."""

    return app


app = create_app(os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/11"))
