"""Jobs over many tickets, run by ``triage beat`` on a schedule and by hand from the CLI.

- :func:`sweep`: re-publish tickets stuck in ``queued``, ``processing`` or ``fallback``; a ticket
  that keeps coming back goes to ``needs_review`` with reason ``poison``.
- :func:`retry_fallback`: one fresh LLM pass for ``needs_review`` tickets whose failure was
  transient (API down, rate limited, timing out), after a delay.
- :func:`reprocess`: a new extraction for tickets made with a given schema or prompt version,
  or with a status since a time; never for a ticket a person corrected.

Each job takes its lock first (:func:`triage.store.jobs.try_lock`), so two beats never run it
twice. Publishing goes through the callables passed in, after each ticket's commit::

    report = sweep(parts, publish_extraction, publish_fallback, holder="cli")
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from triage.components import Components
from triage.store import review, service
from triage.store.jobs import try_lock
from triage.store.models import FALLBACK, utcnow

Publish = Callable[[int], None]
Progress = Callable[[int, int], None]
SWEEP, RETRY_FALLBACK, REPROCESS = "sweep-stuck", "retry-fallback", "reprocess"


def default_holder() -> str:
    return socket.gethostname()[:48]


@dataclass
class JobReport:
    """What a job did; ``ran`` is false when another run held the lock."""

    job: str
    ran: bool = True
    selected: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    poisoned: list[int] = field(default_factory=list)

    def summary(self) -> str:
        if not self.ran:
            return f"{self.job}: skipped, another run holds the lock"
        text = f"{self.job}: {len(self.selected)} selected, {len(self.requeued)} re-enqueued"
        return text + (f", {len(self.poisoned)} poisoned" if self.poisoned else "")


def _locked(parts: Components, job: str, holder: str, interval: float) -> bool:
    return try_lock(parts.sessions, job, holder, interval * parts.settings.jobs.lock_share)


def sweep(parts: Components, publish_extraction: Publish, publish_fallback: Publish, *,
          holder: str | None = None) -> JobReport:
    """Re-publish stuck tickets (once per threshold); poison those past ``jobs.max_requeues``."""
    worker = parts.settings.worker
    if not _locked(parts, SWEEP, holder or default_holder(), worker.sweep_interval_seconds):
        return JobReport(SWEEP, ran=False)
    result = service.requeue_stuck(parts.sessions, timedelta(seconds=worker.stuck_after_seconds),
                                   parts.settings.jobs.max_requeues, parts.router.fallback(utcnow()))
    for ticket in result.requeued:
        (publish_fallback if ticket.status == FALLBACK else publish_extraction)(ticket.ticket_id)
    ids = [t.ticket_id for t in result.requeued]
    return JobReport(SWEEP, selected=ids + result.poisoned, requeued=ids, poisoned=result.poisoned)


def _requeue_each(parts: Components, report: JobReport, publish: Publish, progress: Progress | None,
                  kind: str, *, fallback_retry: bool = False) -> JobReport:
    allowed = ("needs_review",) if fallback_retry else review.REPROCESSABLE
    for done, ticket_id in enumerate(report.selected, start=1):
        if review.requeue(parts.sessions, ticket_id, kind, kind, allowed=allowed, fallback_retry=fallback_retry):
            publish(ticket_id)
            report.requeued.append(ticket_id)
        if progress:
            progress(done, len(report.selected))
    return report


def retry_fallback(parts: Components, publish: Publish, *, holder: str | None = None,
                   progress: Progress | None = None) -> JobReport:
    """One fresh LLM pass for transient failures older than ``jobs.retry_fallback_after_seconds``."""
    jobs = parts.settings.jobs
    if not _locked(parts, RETRY_FALLBACK, holder or default_holder(), jobs.retry_fallback_interval_seconds):
        return JobReport(RETRY_FALLBACK, ran=False)
    ids = review.transient_failures(parts.sessions, jobs.transient_reasons,
                                    timedelta(seconds=jobs.retry_fallback_after_seconds))
    return _requeue_each(parts, JobReport(RETRY_FALLBACK, selected=ids), publish, progress, RETRY_FALLBACK,
                         fallback_retry=True)


@dataclass(frozen=True)
class Selection:
    """Which tickets :func:`reprocess` takes; at least one filter must be set."""

    schema_version: str | None = None
    prompt_version: str | None = None
    status: str | None = None
    since: datetime | None = None

    def describe(self) -> str:
        parts = [f"{name}={value}" for name, value in vars(self).items() if value is not None]
        return ", ".join(parts) or "(nothing)"


def reprocess(parts: Components, selection: Selection, publish: Publish, *, dry_run: bool = False,
              progress: Progress | None = None) -> JobReport:
    """Re-extract the selected tickets (``dry_run``: only list them)."""
    ids = review.select_for_reprocess(parts.sessions, schema_version=selection.schema_version,
                                      prompt_version=selection.prompt_version, status=selection.status,
                                      since=selection.since)
    report = JobReport(REPROCESS, selected=ids)
    return report if dry_run else _requeue_each(parts, report, publish, progress, REPROCESS)

