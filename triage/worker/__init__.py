"""The worker's loop: the Celery tasks and what they run, in the order a ticket meets them.

- :mod:`.tasks`: the tasks on the queues of :mod:`triage.app.queues`: lease a ticket (or a batch),
  ask the policy, apply its step;
- :mod:`.runs`: one extraction run of leased tickets, without Celery;
- :mod:`.policy`: the retry policy, pure: outcome + attempts + settings -> finish, defer, retry, fallback;
- :mod:`.heartbeat`: a working task renews its ticket's lease;
- :mod:`.scheduled`: the jobs beat runs on a schedule (sweep, retry-fallback, reprocess, purge, SLA alerts, learn);
- :mod:`.retention`: the retention job's cutoff;
- :mod:`.logs`: text or JSON log lines with ticket and task context, secrets scrubbed;
- :mod:`.entry`: the Celery entry module.

``celery -A triage.worker worker`` (and ``beat``) works: Celery finds ``triage.worker.app``, which is
:data:`triage.worker.entry.app`, the default :class:`~triage.app.App` built from the environment on
first use. Importing this package builds nothing; ``triage worker`` and ``triage beat`` build their
own app and never touch ``app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery


def __getattr__(name: str) -> Celery:
    if name in ("app", "celery"):
        from triage.worker.entry import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
