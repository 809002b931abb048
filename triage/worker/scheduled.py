"""Jobs over many tickets, run by ``triage beat`` on a schedule and by hand from the CLI.

- :func:`sweep`: take back tickets whose worker's lease ran out (a dead worker) and re-publish
  tickets left ``queued`` or ``fallback`` for ``worker.stuck_after_seconds`` (a lost message); a
  ticket that keeps coming back goes to ``needs_review`` with reason ``poison``.
- :func:`retry_fallback`: one fresh LLM pass for ``needs_review`` tickets whose failure was
  transient (API down, rate limited, timing out), after a delay.
- :func:`reprocess`: a new extraction for tickets made with a given schema or prompt version,
  or with a status since a time; never for a ticket a person corrected.
- :func:`purge_expired`: the retention purge (``privacy.retention_days``), when it is on.
- :func:`sla_alerts`: one alert per SLA breach (``[alerts] webhook_url``), through the outbox.
- :func:`learn`: retrain the learned extractor on the stored training set plus the desk's reviews
  (:func:`triage.learning.retrain.retrain`), once ``learn.min_new_labels`` new reviews arrived.
- :func:`calibrate`: refit the confidence's calibration on the desk's reviews
  (:func:`triage.confidence.recalibrate.recalibrate`), once ``calibrate.min_new_labels`` new reviews arrived.

The sweep also re-publishes the outbox's deliveries whose message was lost (pending past due, or
held by a worker whose lease ran out).

Each job takes its lock first (:func:`triage.store.job_locks.try_lock`), so two beats never run it
twice, and publishes each ticket after its commit. ``force=True`` (``triage sweep --force``) runs
even while beat holds that lock: a forced run holds the job's forced lock for as long as it runs,
so two forced runs never overlap::

    report = sweep(app, holder="cli", force=True)
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from triage import metrics
from triage.app import App
from triage.states.tickets import EventKind, Status
from triage.store import desk_sessions, queries
from triage.store.job_locks import forced_name, release, try_lock
from triage.tickets import lifecycle
from triage.worker import retention

Progress = Callable[[int, int], None]
SWEEP, RETRY_FALLBACK, REPROCESS, PURGE, SLA_ALERTS, LEARN = ("sweep-stuck", "retry-fallback", "reprocess",
                                                             "purge-expired", "sla-alerts", "learn")
CALIBRATE = "calibrate"
SECONDS_PER_HOUR = 3600
HOLDER_MAX_CHARS = 48


def default_holder() -> str:
    return socket.gethostname()[:HOLDER_MAX_CHARS]


@dataclass
class JobReport:
    """What a job did; ``ran`` is false when another run held the lock (another forced run, when ``forced``)."""

    job: str
    ran: bool = True
    selected: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    poisoned: list[int] = field(default_factory=list)
    forced: bool = False
    #: Outbox deliveries published again (the sweep).
    deliveries: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.ran:
            return f"{self.job}: skipped, another {'forced ' if self.forced else ''}run holds the lock"
        text = f"{self.job}: {len(self.selected)} selected, {len(self.requeued)} re-enqueued"
        text += f", {len(self.poisoned)} poisoned" if self.poisoned else ""
        return text + (f", {len(self.deliveries)} deliveries re-published" if self.deliveries else "")


def _locked(app: App, job: str, holder: str | None, interval: float) -> bool:
    return try_lock(app.sessions, job, holder or default_holder(), interval * app.settings.jobs.lock_share,
                    app.clock.now())


@contextmanager
def _job_lock(app: App, job: str, holder: str | None, interval: float, force: bool) -> Iterator[bool]:
    """Whether this run may go: the scheduled lock, or with ``force`` the forced lock, given back at the end
    (held at most ``interval``, should the run die)."""
    if not force:
        yield _locked(app, job, holder, interval)
        return
    # a holder of its own, so a run whose lock ran out cannot give back a later run's lock
    name, holder = forced_name(job), f"{(holder or default_holder())[:HOLDER_MAX_CHARS]}:{uuid.uuid4().hex[:8]}"
    taken = try_lock(app.sessions, name, holder, interval, app.clock.now())
    try:
        yield taken
    finally:
        if taken:
            release(app.sessions, name, holder)


def sweep(app: App, *, holder: str | None = None, force: bool = False) -> JobReport:
    """Take back expired leases and re-publish stuck tickets (once per threshold); poison those past
    ``jobs.max_requeues``."""
    with _job_lock(app, SWEEP, holder, app.settings.worker.sweep_interval_seconds, force) as taken:
        return _sweep(app) if taken else JobReport(SWEEP, ran=False, forced=force)


def _sweep(app: App) -> JobReport:
    worker = app.settings.worker
    now = app.clock.now()
    result = lifecycle.sweep(app.sessions, now, timedelta(seconds=worker.stuck_after_seconds),
                             app.settings.jobs.max_requeues, app.router.fallback, outbox=app.outbox)
    for _ in result.poisoned:
        metrics.ticket_finished(Status.NEEDS_REVIEW, app.settings.routing.fallback.route, None)
    for ticket in result.requeued:
        publish = app.publisher.fallback if ticket.status == Status.FALLBACK else app.publisher.extraction
        publish(ticket.ticket_id)
    ids = [t.ticket_id for t in result.requeued]
    deliveries = app.outbox.sweep(now, timedelta(seconds=worker.stuck_after_seconds))
    return JobReport(SWEEP, selected=ids + result.poisoned, requeued=ids, poisoned=result.poisoned,
                     deliveries=deliveries)


def _reextract_each(app: App, report: JobReport, progress: Progress | None, kind: EventKind, *,
                    fallback_retry: bool = False) -> JobReport:
    only_from = (Status.NEEDS_REVIEW,) if fallback_retry else (Status.ROUTED, Status.NEEDS_REVIEW)
    for done, ticket_id in enumerate(report.selected, start=1):
        if lifecycle.reextract(app.sessions, ticket_id, kind, app.clock.now(), only_from=only_from,
                               fallback_retry=fallback_retry, outbox=app.outbox):
            app.publisher.extraction(ticket_id)
            report.requeued.append(ticket_id)
        if progress:
            progress(done, len(report.selected))
    return report


def retry_fallback(app: App, *, holder: str | None = None, progress: Progress | None = None,
                   force: bool = False) -> JobReport:
    """One fresh LLM pass for transient failures older than ``jobs.retry_fallback_after_seconds``."""
    jobs = app.settings.jobs
    with _job_lock(app, RETRY_FALLBACK, holder, jobs.retry_fallback_interval_seconds, force) as taken:
        return _retry_fallback(app, progress) if taken else JobReport(RETRY_FALLBACK, ran=False, forced=force)


def _retry_fallback(app: App, progress: Progress | None) -> JobReport:
    jobs = app.settings.jobs
    cutoff = app.clock.now() - timedelta(seconds=jobs.retry_fallback_after_seconds)
    ids = queries.transient_failures(app.sessions, jobs.transient_reasons, cutoff)
    return _reextract_each(app, JobReport(RETRY_FALLBACK, selected=ids), progress, EventKind.RETRY_FALLBACK,
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


def reprocess(app: App, selection: Selection, *, dry_run: bool = False,
              progress: Progress | None = None) -> JobReport:
    """Re-extract the selected tickets (``dry_run``: only list them)."""
    ids = queries.select_for_reprocess(app.sessions, schema_version=selection.schema_version,
                                       prompt_version=selection.prompt_version, status=selection.status,
                                       since=selection.since)
    report = JobReport(REPROCESS, selected=ids)
    return report if dry_run else _reextract_each(app, report, progress, EventKind.REPROCESS)


def purge_expired(app: App, *, holder: str | None = None) -> str:
    """Delete the desk sessions past their end, and conversations past ``privacy.retention_days`` (none when it
    is unset); a summary line."""
    if not _locked(app, PURGE, holder, app.settings.jobs.purge_interval_seconds):
        return f"{PURGE}: skipped, another run holds the lock"
    ended = desk_sessions.purge_ended(app.sessions, app.clock.now())
    report = retention.purge_expired(app.sessions, app.settings, app.clock)
    conversations = "retention off" if report is None else report.summary()
    return f"{PURGE}: {conversations}; {ended} expired desk sessions deleted"


def sla_alerts(app: App, *, holder: str | None = None) -> str:
    """Alert once for each ticket whose SLA is breached (nothing while ``[alerts] webhook_url`` is unset)."""
    if not _locked(app, SLA_ALERTS, holder, app.settings.alerts.sla_check_interval_seconds):
        return f"{SLA_ALERTS}: skipped, another run holds the lock"
    if app.settings.alerts.webhook_url is None:
        return f"{SLA_ALERTS}: alerts off"
    raised = app.outbox.raise_sla_alerts(app.clock.now())
    tickets = f" (tickets {', '.join(map(str, raised))})" if raised else ""
    return f"{SLA_ALERTS}: {len(raised)} breaches alerted{tickets}"


def _every_hours(app: App, name: str, hours: float, setting: str, holder: str | None,
                 run: Callable[[], str]) -> str:
    """Run a job that beat fires every ``hours`` (``setting``; 0: off) under its lock; its summary line."""
    interval = hours * SECONDS_PER_HOUR
    if not interval:
        return f"{name}: off ({setting} = 0)"
    if not _locked(app, name, holder, interval):
        return f"{name}: skipped, another run holds the lock"
    return run()


def learn(app: App, *, holder: str | None = None) -> str:
    """The scheduled retraining (``jobs.learn_interval_hours``); a summary line."""
    from triage.learning.retrain import retrain

    return _every_hours(app, LEARN, app.settings.jobs.learn_interval_hours, "jobs.learn_interval_hours", holder,
                        lambda: retrain(app.sessions, app.schema, app.settings.learn, app.clock.now()))


def calibrate(app: App, *, holder: str | None = None) -> str:
    """The scheduled calibration of the confidence (``jobs.calibrate_interval_hours``); a summary line."""
    from triage.confidence.recalibrate import recalibrate

    return _every_hours(app, CALIBRATE, app.settings.jobs.calibrate_interval_hours, "jobs.calibrate_interval_hours",
                        holder, lambda: recalibrate(app))
