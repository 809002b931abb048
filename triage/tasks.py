"""Celery tasks: thin glue that claims a ticket, calls a room, stores, and publishes the next step.

Every task is idempotent: it first claims the ticket with a conditional UPDATE, so a
redelivered message for a finished (or currently held) ticket changes nothing. Messages are
published only after the database transaction that makes them necessary has committed.
"""

from __future__ import annotations

import logging
from functools import cache

from celery import Task
from kombu.exceptions import OperationalError as BrokerError

from triage import jobs
from triage.backoff import retry_countdown
from triage.components import Components
from triage.extraction.types import APIError, Attempt, ExtractionResult, RateLimitedError, RetryableAPIError
from triage.store import service
from triage.store.models import FALLBACK, NEEDS_REVIEW, utcnow
from triage.worker import FALLBACK_QUEUE, TRIAGE_QUEUE, app, settings

log = logging.getLogger(__name__)

INVALID_AFTER_ATTEMPTS = "invalid_after_attempts"
RETRIES_EXHAUSTED = "retries_exhausted"
TOO_MANY_REQUESTS = 429


@cache
def components() -> Components:
    return Components.build(settings)


def _lease_seconds() -> float:
    return settings.worker.stuck_after_seconds


def enqueue_extraction(ticket_id: int) -> None:
    """Publish the extraction task for a stored ticket (call after the commit)."""
    extract_ticket.apply_async((ticket_id,), queue=TRIAGE_QUEUE)


def enqueue_extraction_or_log(ticket_id: int) -> None:
    """Publish after a commit; when the broker is down, log it: the sweep re-publishes the ticket."""
    try:
        enqueue_extraction(ticket_id)
    except BrokerError as exc:
        log.warning("ticket %s is stored but not enqueued (%s); the sweep job will publish it", ticket_id, exc)


def enqueue_fallback(ticket_id: int) -> None:
    fallback_ticket.apply_async((ticket_id,), queue=FALLBACK_QUEUE)


def _api_failure_reason(exc: APIError) -> str:
    return f"api_error_{exc.status_code}" if exc.status_code else "api_error"


def _api_failures(attempts: list[Attempt]) -> int:
    """API errors in this extraction run: they, not Celery's retry count, bound the retries."""
    return sum(attempt.outcome == "api_error" for attempt in attempts)


@app.task(bind=True, name="triage.extract", max_retries=None)
def extract_ticket(self: Task, ticket_id: int) -> str:
    """Extract, validate and route one ticket; failures go to the fallback queue."""
    parts = components()
    claim = service.claim_for_extraction(parts.sessions, ticket_id, _lease_seconds())
    if claim is None:
        log.info("ticket %s: not claimable (finished or held elsewhere), nothing to do", ticket_id)
        return "skipped"
    try:
        result: ExtractionResult = parts.extractor.extract(claim.conversation, claim.prior_attempts)
    except RateLimitedError as exc:  # no budget: wait without spending a retry or holding a thread
        service.release_for_retry(parts.sessions, claim, exc.attempts, exc.wait_seconds)
        raise self.retry(countdown=exc.wait_seconds, max_retries=None) from None
    except RetryableAPIError as exc:
        failures = _api_failures([*claim.prior_attempts, *exc.attempts])
        if failures > settings.retry.max_retries:
            service.send_to_fallback(parts.sessions, claim, exc.attempts, RETRIES_EXHAUSTED, str(exc))
            enqueue_fallback(ticket_id)
            return FALLBACK
        countdown = retry_countdown(settings.retry, failures - 1, exc.retry_after)
        if exc.status_code == TOO_MANY_REQUESTS:  # someone else shares the account: the whole fleet waits
            parts.limiter.penalize(exc.attempts[-1].model, countdown)
        service.release_for_retry(parts.sessions, claim, exc.attempts, countdown)
        log.warning("ticket %s: %s; retry in %.1fs", ticket_id, exc, countdown)
        raise self.retry(countdown=countdown, max_retries=None) from None
    except APIError as exc:
        service.send_to_fallback(parts.sessions, claim, exc.attempts, _api_failure_reason(exc), str(exc))
        enqueue_fallback(ticket_id)
        return FALLBACK
    if not result.ok:
        service.send_to_fallback(parts.sessions, claim, result.attempts,
                                 result.failure_reason or INVALID_AFTER_ATTEMPTS, result.failure_detail,
                                 trimmed=result.trimmed)
        enqueue_fallback(ticket_id)
        return FALLBACK
    decision = parts.router.route(result.ticket or {}, utcnow())
    service.finish(parts.sessions, claim, result, decision)
    return decision.route


@app.task(name="triage.fallback")
def fallback_ticket(ticket_id: int) -> str:
    """Apply the rules extractor to a failed ticket and leave it ``needs_review`` on ``manual-review``."""
    parts = components()
    claim = service.claim_for_fallback(parts.sessions, ticket_id, _lease_seconds())
    if claim is None:
        log.info("ticket %s: not waiting for the fallback queue, nothing to do", ticket_id)
        return "skipped"
    result = parts.rules.extract(claim.conversation)
    service.finish(parts.sessions, claim, result, parts.router.fallback(utcnow()), NEEDS_REVIEW)
    return "needs_review"


@app.task(name="triage.sweep_stuck")
def sweep_stuck() -> str:
    """Re-publish tickets stuck in ``queued``, ``processing`` or ``fallback`` past the threshold."""
    report = jobs.sweep(components(), enqueue_extraction, enqueue_fallback)
    if report.requeued or report.poisoned:
        log.warning("%s", report.summary())
    return report.summary()


@app.task(name="triage.retry_fallback")
def retry_fallback() -> str:
    """One fresh LLM pass for tickets that ended in review because the API was unavailable."""
    report = jobs.retry_fallback(components(), enqueue_extraction)
    if report.requeued:
        log.warning("%s", report.summary())
    return report.summary()
