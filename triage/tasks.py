"""Celery tasks: a few lines each over the lifecycle and the retry policy.

Every task is idempotent: it first claims the ticket (:func:`triage.tickets.lifecycle.claim`), so
a redelivered message for a finished (or currently held) ticket changes nothing. Messages are
published only after the database transaction that makes them necessary has committed.
:func:`celery_for` registers the tasks on an :class:`~triage.app.App`'s Celery app.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from celery import Celery, Task, signals

from triage import jobs
from triage.app import App
from triage.policy import Defer, Finish, Retry, SendToFallback, Step, attempt_extraction, decide
from triage.queues import EXTRACT_TASK, FALLBACK_TASK, PURGE_TASK, RETRY_FALLBACK_TASK, SWEEP_TASK
from triage.settings import SettingsError
from triage.tickets import lifecycle
from triage.tickets.states import Status

log = logging.getLogger(__name__)

SKIPPED = "skipped"


def extract(app: App, task: Task[Any, Any], ticket_id: int) -> str:
    """Claim, extract, ask the policy, apply its step."""
    claim = lifecycle.claim(app.sessions, ticket_id, app.clock.now(), app.lease_seconds)
    if claim is None:
        log.info("ticket %s: not claimable (finished or held elsewhere), nothing to do", ticket_id)
        return SKIPPED
    outcome = attempt_extraction(app.extractor.extract, claim.conversation, claim.prior_attempts)
    step = decide(outcome, claim.prior_attempts, app.settings.retry, app.router, claim.sla_started_at)
    return apply_step(app, task, claim, step)


def apply_step(app: App, task: Task[Any, Any], claim: lifecycle.Claim, step: Step) -> str:
    """Carry out the policy's ``step`` for ``claim``; a retry or deferral raises Celery's ``Retry``."""
    now = app.clock.now()
    if isinstance(step, Finish):
        lifecycle.finish(app.sessions, claim, step.result, step.decision, now)
        return step.decision.route
    if isinstance(step, SendToFallback):
        lifecycle.send_to_fallback(app.sessions, claim, step.attempts, step.reason, step.detail, now,
                                   trimmed=step.trimmed)
        app.publisher.fallback_or_log(claim.ticket_id)
        return Status.FALLBACK
    if isinstance(step, Retry):
        if step.penalty is not None:  # someone else shares the account: the whole fleet waits
            app.limiter.penalize(step.penalty.model, step.penalty.seconds)
        log.warning("ticket %s: %s; retry in %.1fs", claim.ticket_id, step.attempts[-1].error, step.seconds)
    lifecycle.release_for_retry(app.sessions, claim, step.attempts, step.seconds, now)
    _retry(task, step)


def _retry(task: Task[Any, Any], step: Defer | Retry) -> NoReturn:
    # a deferral (no budget) spends no retry and holds no thread; the policy bounds real retries
    raise task.retry(countdown=step.seconds, max_retries=None)


def fallback(app: App, ticket_id: int) -> str:
    """Apply the rules extractor to a failed ticket and leave it ``needs_review`` on the fallback route."""
    claim = lifecycle.claim_fallback(app.sessions, ticket_id, app.clock.now(), app.lease_seconds)
    if claim is None:
        log.info("ticket %s: not waiting for the fallback queue, nothing to do", ticket_id)
        return SKIPPED
    result = app.rules.extract(claim.conversation)
    lifecycle.finish_fallback(app.sessions, claim, result, app.router.fallback(claim.sla_started_at), app.clock.now())
    return Status.NEEDS_REVIEW


def celery_for(app: App) -> Celery:
    """``app``'s Celery app with the tasks registered, ready for a worker or beat."""
    celery = app.celery
    # shared=False: each App's tasks close over that App only (a shared task would join every Celery app)

    @celery.task(bind=True, name=EXTRACT_TASK, max_retries=None, shared=False)
    def extract_ticket(task: Task[Any, Any], ticket_id: int) -> str:
        """Extract, validate and route one ticket; failures go to the fallback queue."""
        return extract(app, task, ticket_id)

    @celery.task(name=FALLBACK_TASK, shared=False)
    def fallback_ticket(ticket_id: int) -> str:
        return fallback(app, ticket_id)

    @celery.task(name=SWEEP_TASK, shared=False)
    def sweep_stuck() -> str:
        """Re-publish tickets stuck in ``queued``, ``processing`` or ``fallback`` past the threshold."""
        report = jobs.sweep(app)
        if report.requeued or report.poisoned:
            log.warning("%s", report.summary())
        return report.summary()

    @celery.task(name=RETRY_FALLBACK_TASK, shared=False)
    def retry_fallback() -> str:
        """One fresh LLM pass for tickets that ended in review because the API was unavailable."""
        report = jobs.retry_fallback(app)
        if report.requeued:
            log.warning("%s", report.summary())
        return report.summary()

    @celery.task(name=PURGE_TASK, shared=False)
    def purge_expired() -> str:
        """The retention purge (``privacy.retention_days``); does nothing while retention is off."""
        summary = jobs.purge_expired(app)
        log.info("%s", summary)
        return summary

    def refuse_without_key(**_: Any) -> None:
        """A worker that would call MiMo without a key stops before taking any message."""
        try:
            app.settings.require_llm_ready()
        except SettingsError as exc:
            raise SystemExit(f"triage worker: {exc}") from None

    signals.celeryd_init.connect(refuse_without_key, weak=False)
    return celery
