"""Celery tasks: lease, ask the policy, apply its step (the extraction run itself is triage.worker.runs).

Every task is idempotent: it first leases the ticket (:func:`triage.tickets.lifecycle.lease`), so
a redelivered message for a finished (or currently held) ticket changes nothing. Messages are
published only after the database transaction that makes them necessary has committed. While
a task works on a ticket it renews the ticket's lease (:class:`triage.worker.heartbeat.Heartbeat`), so a
long LLM call keeps it and a killed worker's tickets come back as soon as the lease runs out. An
exception nothing else handles is the policy's to decide (:func:`triage.worker.policy.on_exception`):
an outage is retried, anything else ends the ticket in the fallback queue as ``internal_error``.
:func:`celery_for` registers the tasks on an :class:`~triage.app.App`'s Celery app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from celery import Celery, Task, signals
from celery.exceptions import Retry as CeleryRetry

from triage import metrics
from triage.app import App
from triage.app.queues import (
    CALIBRATE_TASK,
    DELIVER_TASK,
    EXTRACT_TASK,
    FALLBACK_TASK,
    LEARN_TASK,
    PURGE_TASK,
    RETRY_FALLBACK_TASK,
    SLA_ALERTS_TASK,
    SWEEP_TASK,
)
from triage.errors import ConfigError
from triage.extraction import dedupe
from triage.extraction.batch_call import build_batches
from triage.extraction.dedupe import Lookup
from triage.extraction.types import ExtractionResult
from triage.outbox import send
from triage.outbox.outbox import Wait
from triage.ratelimit import Headroom
from triage.states.autonomy import band
from triage.states.tickets import Status
from triage.tickets import lifecycle
from triage.worker import runs, scheduled
from triage.worker.heartbeat import Heartbeat
from triage.worker.policy import (
    Defer,
    Finish,
    HoldForReview,
    Outage,
    Outcome,
    Retry,
    SendToFallback,
    Step,
    decide,
    on_exception,
)

log = logging.getLogger(__name__)

SKIPPED = "skipped"
Leased = TypeVar("Leased")
#: Why a ticket's message found nothing to lease.
NOT_LEASABLE = "not claimable (finished, or leased to another run)"
#: The fewest conversations a batch call is worth making for.
MIN_BATCH = 2


def extract(app: App, task: Task[Any, Any], ticket_id: int) -> str:
    """Lease, extract (renewing the lease meanwhile), ask the policy, apply its step; when batching
    applies (:func:`batch_threshold`), lease and extract a whole batch (:func:`extract_batch`). With no
    rate budget left in the window nothing is leased and the message waits (:func:`_wait_for_budget`).

    Whatever else goes wrong is the policy's to decide too (:func:`triage.worker.policy.on_exception`): an
    outage is retried, anything else ends the ticket in the fallback queue with ``internal_error``.
    """
    try:
        room = headroom(app)
    except Exception as exc:
        _unleased_failure(app, task, ticket_id, exc)
    if room is not None and room.wait:
        _wait_for_budget(app, task, ticket_id, room.wait)
    beyond = batch_threshold(app, room)
    if beyond is not None:
        return extract_batch(app, task, ticket_id, beyond)
    lease = _leased(app, task, ticket_id, lambda: lifecycle.lease(app.sessions, ticket_id, app.clock.now(),
                                                                   app.lease_seconds))
    if lease is None:
        return _nothing_to_do(ticket_id, NOT_LEASABLE)
    return _extract_leased(app, task, lease)


def _extract_leased(app: App, task: Task[Any, Any], lease: lifecycle.Lease) -> str:
    """The single-ticket run of a leased ticket."""
    ticket_id = lease.ticket_id
    try:
        with _heartbeat(app, lease):  # the scoring too: it reads the conversation again with the other extractors
            step = step_for(app, lease, runs.single(app, lease))
        return apply_step(app, task, lease, step)
    except CeleryRetry:
        raise
    except Exception as exc:
        return apply_step(app, task, lease, _unexpected(app, task, ticket_id, exc))


def headroom(app: App) -> Headroom | None:
    """The rate budget the LLM's models (the primary, then ``extraction.overflow_models``) have now, read
    without taking any; ``None`` with the rules extractor, which asks no API."""
    if app.settings.extractor != "llm":
        return None
    llm = app.llm
    return llm.budgets.headroom(llm.models.pick(), app.limiter.peek)


def _wait_for_budget(app: App, task: Task[Any, Any], ticket_id: int, seconds: float) -> NoReturn:
    """No model has budget in this window: the message waits ``seconds`` (spending no retry) and nothing is
    leased. Leasing first would cost two transactions for nothing, and a batch would publish every
    companion it had to release again, so a backlog under an empty window would multiply its messages."""
    log.debug("ticket %s: no rate budget for %.1fs, not claimed", ticket_id, seconds)  # a backlog: one per message
    metrics.ratelimit_wait(app.llm.models.pick(), seconds)
    _retry(task, Defer(seconds, []))


def batch_threshold(app: App, room: Headroom | None) -> int | None:
    """Whether a run takes other tickets into one call (``extraction.batch_mode``), as the number of other
    waiting tickets it takes them beyond: ``always``: 0 (whenever any waits); ``auto``: the requests the
    rate budget still grants in this window (``room``, the primary model's and the overflow models'
    together), as one call per ticket would then fall behind and the rest of the window is better spent
    on batches; ``None`` (one call per ticket): ``never``, the rules extractor (``room`` None) or
    ``batch_size = 1``."""
    options = app.settings.extraction
    if room is None or options.batch_mode == "never" or options.batch_size < MIN_BATCH:
        return None
    return 0 if options.batch_mode == "always" else room.left


def extract_batch(app: App, task: Task[Any, Any], ticket_id: int, beyond: int) -> str:
    """Lease ``ticket_id`` and, when more than ``beyond`` others wait (:func:`batch_threshold`), up to
    ``batch_size - 1`` of them, in one statement; ask for them in calls of at most ``batch_max_input_tokens``
    (renewing every lease meanwhile), then ask the policy and apply its step for each ticket; ``ticket_id``'s
    step last, as a single run's (it may retry the message). Leased alone, it is a single run.

    A batch companion whose step is a retry or a deferral is released and published again with the
    countdown (its own message is spent); an outage leaves it to the sweep once its lease runs out.
    """
    options = app.settings.extraction
    leases = _leased(app, task, ticket_id, lambda: lifecycle.lease_batch(
        app.sessions, ticket_id, options.batch_size, app.clock.now(), app.lease_seconds, beyond=beyond))
    own = next((lease for lease in leases if lease.ticket_id == ticket_id), None)
    companions = [lease for lease in leases if lease is not own]
    if not companions:
        if own is None:
            return _nothing_to_do(ticket_id, NOT_LEASABLE)
        return _extract_leased(app, task, own)
    with Heartbeat(lambda: lifecycle.renew_batch(app.sessions, leases, app.clock.now(), app.lease_seconds) > 0,
                   app.settings.worker.heartbeat_seconds, name=f"heartbeat-batch-{ticket_id}"):
        outcomes = _batch_outcomes(app, task, leases)
    for lease in companions:
        _apply_companion(app, lease, outcomes[lease.ticket_id])
    if own is None:
        return SKIPPED
    try:
        step = outcomes[ticket_id]
        return apply_step(app, task, own, step)
    except CeleryRetry:
        raise
    except Exception as exc:
        return apply_step(app, task, own, _unexpected(app, task, ticket_id, exc))


def _batch_outcomes(app: App, task: Task[Any, Any], leases: Sequence[lifecycle.Lease]) -> dict[int, Step]:
    """Every lease's policy step: a recent identical conversation's extraction reused (no call); else its
    batch call's item when valid, else its own single run after it."""
    options = app.settings.extraction
    steps: dict[int, Step] = {}
    lookups: dict[int, Lookup | None] = {}
    asked: list[lifecycle.Lease] = []
    for lease in leases:
        try:
            lookup = lookups[lease.ticket_id] = runs.dedupe_lookup(app, lease.ticket_id, lease.conversation)
            if lookup is not None and lookup.reused is not None:
                steps[lease.ticket_id] = step_for(app, lease, lookup.reused)
            else:
                asked.append(lease)
        except Exception as exc:
            steps[lease.ticket_id] = _unexpected(app, task, lease.ticket_id, exc)
    groups = build_batches(app.llm, [lease.conversation for lease in asked], options.batch_max_input_tokens,
                           options.batch_size)
    for group in groups:
        members = [asked[index] for index in group]
        try:
            for lease, outcome in zip(members, runs.batch(app, members), strict=True):
                lookup = lookups[lease.ticket_id]
                steps[lease.ticket_id] = step_for(app, lease, outcome if lookup is None
                                                  else dedupe.keyed(outcome, lookup.key))
        except Exception as exc:
            for lease in members:
                steps[lease.ticket_id] = _unexpected(app, task, lease.ticket_id, exc)
    return steps


def step_for(app: App, lease: lifecycle.Lease, outcome: Outcome) -> Step:
    """The policy's step for ``lease``'s ``outcome``; a result that holds a ticket is scored first (its confidence),
    as the autonomy level reads it."""
    if isinstance(outcome, ExtractionResult):
        app.confidence.score(outcome, lease.conversation)
    return decided(app, lease, outcome)


def decided(app: App, lease: lifecycle.Lease, outcome: Outcome) -> Step:
    """The policy's step for ``lease``'s (scored) ``outcome`` under the app's retry, injection and autonomy settings."""
    return decide(outcome, lease.prior_attempts, app.settings.retry, app.router, lease.sla_started_at,
                  extraction=app.settings.extraction, autonomy=app.settings.autonomy)


def _apply_companion(app: App, lease: lifecycle.Lease, step: Step) -> None:
    """A batch companion's step: as :func:`apply_step`, but a retry or deferral is published again."""
    try:
        if isinstance(step, Outage):
            log.warning("ticket %s: %s; the sweep takes it back once its lease runs out", lease.ticket_id, step.error)
            return
        if isinstance(step, Defer | Retry):
            if isinstance(step, Retry) and step.penalty is not None:
                app.limiter.penalize(step.penalty.model, step.penalty.seconds)
            if lifecycle.release_for_retry(app.sessions, lease, step.attempts, step.seconds, app.clock.now()):
                app.publisher.extraction_later(lease.ticket_id, step.seconds)
            return
        _store_final(app, lease, step)
    except Exception as exc:  # one companion's failure is not the others'; its lease runs out for the sweep
        log.error("ticket %s: could not store its batch step", lease.ticket_id, exc_info=exc)
def _unexpected(app: App, task: Task[Any, Any], ticket_id: int, exc: Exception) -> Outage | SendToFallback:
    """The policy's step for an exception nothing else handled, logged."""
    step = on_exception(exc, task.request.retries or 0, app.settings.retry)
    if isinstance(step, Outage):
        log.warning("ticket %s: %s; trying again in %.1fs", ticket_id, step.error, step.seconds)
    else:
        log.error("ticket %s: unexpected error, to the fallback queue as %s", ticket_id, step.reason, exc_info=exc)
    return step


def _leased(app: App, task: Task[Any, Any], ticket_id: int, lease: Callable[[], Leased]) -> Leased:
    """What ``lease()`` took; a failure before anything is leased is the policy's (:func:`_unleased_failure`)."""
    try:
        return lease()
    except Exception as exc:
        _unleased_failure(app, task, ticket_id, exc)


def _nothing_to_do(ticket_id: int, why: str) -> str:
    log.info("ticket %s: %s, nothing to do", ticket_id, why)
    return SKIPPED


def _unleased_failure(app: App, task: Task[Any, Any], ticket_id: int, exc: Exception) -> NoReturn:
    """Leasing failed, so there is no ticket to end: an outage is retried, anything else raised."""
    step = _unexpected(app, task, ticket_id, exc)
    if isinstance(step, Outage):
        _retry(task, step)
    raise exc


def _heartbeat(app: App, lease: lifecycle.Lease) -> Heartbeat:
    """Renew ``lease``'s lease every ``worker.heartbeat_seconds`` while the worker works on it."""
    return Heartbeat(lambda: lifecycle.renew(app.sessions, lease, app.clock.now(), app.lease_seconds),
                     app.settings.worker.heartbeat_seconds, name=f"heartbeat-{lease.ticket_id}")


def apply_step(app: App, task: Task[Any, Any], lease: lifecycle.Lease, step: Step) -> str:
    """Carry out the policy's ``step`` for ``lease``; a retry, deferral or outage raises Celery's ``Retry``."""
    if isinstance(step, Finish | HoldForReview | SendToFallback):
        return _store_final(app, lease, step)
    now = app.clock.now()
    if isinstance(step, Outage):
        _retry(task, step)  # nothing can be recorded: the message (or, once the lease ran out, the sweep) returns
    if isinstance(step, Retry):
        if step.penalty is not None:  # someone else shares the account: the whole fleet waits
            app.limiter.penalize(step.penalty.model, step.penalty.seconds)
        failed = step.attempts[-1]
        log.warning("ticket %s: %s; retry in %.1fs", lease.ticket_id, failed.error, step.seconds,
                    extra={"model": failed.model, "attempt": failed.n})
    lifecycle.release_for_retry(app.sessions, lease, step.attempts, step.seconds, now)
    _retry(task, step)


def _store_final(app: App, lease: lifecycle.Lease, step: Finish | HoldForReview | SendToFallback) -> str:
    """Store a step that ends the run (routed, held for review, or the fallback queue published)."""
    now = app.clock.now()
    if isinstance(step, Finish):
        if lifecycle.finish(app.sessions, lease, step.result, step.decision, now, step.autonomy, outbox=app.outbox):
            metrics.ticket_finished(Status.ROUTED, step.decision.route, step.result.extractor, step.autonomy)
            _count_confidence(app, step.decision.route, step.result)
        return step.decision.route
    if isinstance(step, HoldForReview):
        if lifecycle.hold_for_review(app.sessions, lease, step.result, step.decision, step.reason, step.detail, now,
                                     outbox=app.outbox):
            metrics.ticket_finished(Status.NEEDS_REVIEW, step.decision.route, step.result.extractor, step.autonomy)
            _count_confidence(app, step.decision.route, step.result)
        return Status.NEEDS_REVIEW
    lifecycle.send_to_fallback(app.sessions, lease, step.attempts, step.reason, step.detail, now,
                               trimmed=step.trimmed, injection=step.injection, outbox=app.outbox)
    app.publisher.fallback_or_log(lease.ticket_id)
    return Status.FALLBACK


def _count_confidence(app: App, route: str, result: ExtractionResult) -> None:
    """``triage_confidence_total{route,band}`` of a scored decision (the bands: the route's thresholds)."""
    thresholds = app.settings.autonomy.thresholds(route)
    scored = band(result.ticket_confidence, thresholds.auto_above, thresholds.review_below)
    if scored is not None:
        metrics.confidence_counted(route, scored)


def _retry(task: Task[Any, Any], step: Defer | Retry | Outage) -> NoReturn:
    # a deferral (no budget) spends no retry and holds no thread; the policy bounds real retries
    raise task.retry(countdown=step.seconds, max_retries=None)


def fallback(app: App, task: Task[Any, Any], ticket_id: int) -> str:
    """Apply the fallback extractor (``fallback.extractor``: the learned one once a model is stored, else the
    rules) to a failed ticket and leave it ``needs_review`` on the fallback route.

    An unexpected error leaves it ``needs_review`` as it is, with ``internal_error``; an outage is retried.
    """
    lease = _leased(app, task, ticket_id, lambda: lifecycle.lease_fallback(app.sessions, ticket_id, app.clock.now(),
                                                                            app.lease_seconds))
    if lease is None:
        return _nothing_to_do(ticket_id, "not waiting for the fallback queue")
    try:
        with _heartbeat(app, lease):
            result = app.confidence.score(app.fallback_extractor.extract(lease.conversation), lease.conversation)
        decision = app.router.fallback(lease.sla_started_at)
        if lifecycle.finish_fallback(app.sessions, lease, result, decision, app.clock.now(), outbox=app.outbox):
            metrics.ticket_finished(Status.NEEDS_REVIEW, decision.route, result.extractor)
            _count_confidence(app, decision.route, result)
    except Exception as exc:
        step = _unexpected(app, task, ticket_id, exc)
        if isinstance(step, Outage):
            _retry(task, step)
        now = app.clock.now()
        decision = app.router.fallback(lease.sla_started_at)
        if lifecycle.abandon_fallback(app.sessions, lease, step.reason, step.detail or "", decision, now,
                                      outbox=app.outbox):
            metrics.ticket_finished(Status.NEEDS_REVIEW, decision.route, None)
    return Status.NEEDS_REVIEW


def deliver(app: App, task: Task[Any, Any], delivery_id: str) -> str:
    """One attempt of an outbox delivery; a retry (or a wait for an older write-back) is a Celery retry."""
    outcome = send.attempt(app.outbox, app.senders, app.clock, delivery_id)
    if isinstance(outcome, Wait):
        raise task.retry(countdown=outcome.seconds, max_retries=None)
    return outcome


def _logged(summary: str) -> str:
    """A scheduled job's summary, logged and returned (the task's result)."""
    log.info("%s", summary)
    return summary


def celery_for(app: App) -> Celery:
    """``app``'s Celery app with the tasks registered, ready for a worker or beat."""
    celery = app.celery
    # shared=False: each App's tasks close over that App only (a shared task would join every Celery app)

    @celery.task(bind=True, name=EXTRACT_TASK, max_retries=None, shared=False)
    def extract_ticket(task: Task[Any, Any], ticket_id: int) -> str:
        """Extract, validate and route one ticket; failures go to the fallback queue."""
        return extract(app, task, ticket_id)

    @celery.task(bind=True, name=FALLBACK_TASK, max_retries=None, shared=False)
    def fallback_ticket(task: Task[Any, Any], ticket_id: int) -> str:
        """Fill a failed ticket in with the fallback extractor (learned or rules) and leave it for a person."""
        return fallback(app, task, ticket_id)

    @celery.task(bind=True, name=DELIVER_TASK, max_retries=None, shared=False)
    def deliver_one(task: Task[Any, Any], delivery_id: str) -> str:
        """Write back, send an event or post an alert: one attempt of one outbox delivery."""
        return deliver(app, task, delivery_id)

    @celery.task(name=SLA_ALERTS_TASK, shared=False)
    def sla_alerts() -> str:
        """Raise one alert per SLA breach (``[alerts] webhook_url``)."""
        return _logged(scheduled.sla_alerts(app))

    @celery.task(name=SWEEP_TASK, shared=False)
    def sweep_stuck() -> str:
        """Take back tickets whose lease ran out; re-publish those left ``queued``/``fallback`` past the threshold,
        and deliveries whose message was lost."""
        report = scheduled.sweep(app)
        if report.requeued or report.poisoned or report.deliveries:
            log.warning("%s", report.summary())
        return report.summary()

    @celery.task(name=RETRY_FALLBACK_TASK, shared=False)
    def retry_fallback() -> str:
        """One fresh LLM pass for tickets that ended in review because the API was unavailable."""
        report = scheduled.retry_fallback(app)
        if report.requeued:
            log.warning("%s", report.summary())
        return report.summary()

    @celery.task(name=PURGE_TASK, shared=False)
    def purge_expired() -> str:
        """The retention purge (``privacy.retention_days``); does nothing while retention is off."""
        return _logged(scheduled.purge_expired(app))

    @celery.task(name=LEARN_TASK, shared=False)
    def learn() -> str:
        """Retrain the learned extractor on the stored training set plus the desk's reviews."""
        return _logged(scheduled.learn(app))

    @celery.task(name=CALIBRATE_TASK, shared=False)
    def calibrate() -> str:
        """Refit the confidence's calibration on the desk's reviews."""
        summary = scheduled.calibrate(app)
        log.info("%s", summary)
        return summary

    def refuse_without_key(**_: Any) -> None:
        """A worker that would call MiMo without a key, or score with a learned model none stored, stops before
        taking any message."""
        try:
            app.require_extractors_ready()
        except ConfigError as exc:
            raise SystemExit(f"triage worker: {exc}") from None

    def load_scorer(**_: Any) -> None:
        """Build the confidence scorer (importing its libraries: numpy, scipy, scikit-learn) before the worker
        takes a message, so that no ticket's run waits for it."""
        log.debug("confidence scorer ready for %s", ", ".join(sorted(app.confidence.fields)))

    signals.celeryd_init.connect(refuse_without_key, weak=False)
    signals.celeryd_init.connect(load_scorer, weak=False)
    return celery
