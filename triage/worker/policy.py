"""The retry policy: what to do after an extraction, as a pure function of its outcome.

Given the outcome (a result, or the API error or rate-limit refusal it raised), the attempts of
the run so far and the retry settings, :func:`decide` returns one :data:`Step`: finish with a
route, hold a suspected injection for review instead of its P1 route, defer without spending a
retry, retry after a backoff (penalising the model for the whole fleet on a 429), or send the
ticket to the fallback queue with a reason. It touches no database, broker or clock of its own,
so every branch is a unit test::

    step = decide(attempt_extraction(extractor.extract, lease.conversation, lease.prior_attempts),
                  lease.prior_attempts, settings.retry, router, lease.sla_started_at,
                  extraction=settings.extraction)

A finished ticket's SLA counts from ``lease.sla_started_at`` (when the customer's wait began), not now.
Anything else a task raises goes through :func:`on_exception`, the one rule for the unexpected:
a database or broker outage (:func:`is_outage`) is retried later with nothing recorded; any
other exception ends the ticket in the fallback queue with reason ``internal_error`` and the
exception's type and message, so no answer can leave a ticket ``processing``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus

import redis.exceptions
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import OperationalError as DatabaseOperationalError

from triage.conversation import Conversation
from triage.extraction.injection import InjectionMatch, holds_for_review
from triage.extraction.types import APIError, Attempt, ExtractionResult, RateLimitedError, RetryableAPIError
from triage.ratelimit.backoff import retry_countdown
from triage.settings import AutonomySettings, ExtractionSettings, RetrySettings
from triage.states.autonomy import Level, applied
from triage.states.tickets import AttemptOutcome, FallbackReason
from triage.text import repair_text
from triage.tickets.routing import RouteDecision, Router

#: What an extraction run can end with: a result, or the refusal or API error it raised.
Outcome = ExtractionResult | RateLimitedError | APIError


@dataclass(frozen=True)
class Finish:
    """Store the valid result on its route, with the autonomy level that applies (what is written back)."""

    result: ExtractionResult
    decision: RouteDecision
    autonomy: Level = Level.AUTO


@dataclass(frozen=True)
class HoldForReview:
    """Store the model's valid ticket for a person instead of on its route (a suspected injection on a
    P1 route, a confidence below ``review_below``, a ``review`` route): ``needs_review`` on ``decision``
    (the fallback route) with ``reason`` and ``detail``."""

    result: ExtractionResult
    decision: RouteDecision
    reason: FallbackReason
    detail: str
    autonomy: Level = Level.REVIEW


@dataclass(frozen=True)
class Defer:
    """No rate budget now: try again in ``seconds`` without spending a retry."""

    seconds: float
    attempts: list[Attempt]


@dataclass(frozen=True)
class Penalty:
    """Nobody in the fleet calls ``model`` for ``seconds`` (someone else shares the account)."""

    model: str
    seconds: float


@dataclass(frozen=True)
class Retry:
    """A transient API failure: try again in ``seconds`` (one retry spent), after applying ``penalty``."""

    seconds: float
    attempts: list[Attempt]
    penalty: Penalty | None = None


@dataclass(frozen=True)
class SendToFallback:
    """Give up on the LLM for this run: the fallback queue fills the ticket for a person."""

    reason: FallbackReason
    detail: str | None
    attempts: list[Attempt]
    trimmed: bool = False
    injection: InjectionMatch | None = None


@dataclass(frozen=True)
class Outage:
    """The database or the broker is unreachable: record nothing, try the message again in ``seconds``
    (a ticket whose lease is still held comes back through the sweep once the lease runs out)."""

    seconds: float
    error: str


Step = Finish | HoldForReview | Defer | Retry | SendToFallback | Outage


def attempt_extraction(extract: Callable[[Conversation, Sequence[Attempt]], ExtractionResult],
                       conversation: Conversation, prior: Sequence[Attempt]) -> Outcome:
    """Run ``extract`` and return what it ended with, the refusal or API error included."""
    try:
        return extract(conversation, prior)
    except (RateLimitedError, APIError) as exc:
        return exc


def api_failures(attempts: Sequence[Attempt]) -> int:
    """API errors in this extraction run: they, not the broker's retry count, bound the retries.

    >>> api_failures([Attempt(1, "m", "api_error"), Attempt(2, "m", "invalid")])
    1
    """
    return sum(attempt.outcome == AttemptOutcome.API_ERROR for attempt in attempts)


def decide(outcome: Outcome, prior: Sequence[Attempt], retry: RetrySettings, router: Router, sla_start: datetime,
           rng: random.Random | None = None, *, extraction: ExtractionSettings | None = None,
           autonomy: AutonomySettings | None = None) -> Step:
    """The next step after ``outcome``; ``prior`` are the run's attempts before this extraction call, and a
    finished ticket's SLA counts from ``sla_start`` (when the customer's wait began, not now).

    ``extraction`` holds ``injection_review`` (default: the default settings, review on); ``autonomy`` the
    levels and thresholds per route (default: every route ``auto``, thresholds 0). A valid answer's level is
    :func:`triage.states.autonomy.applied` to its route, its injection hold and ``outcome.ticket_confidence``.
    """
    if isinstance(outcome, RateLimitedError):
        return Defer(outcome.wait_seconds, outcome.attempts)
    if isinstance(outcome, RetryableAPIError):
        failures = api_failures([*prior, *outcome.attempts])
        if failures > retry.max_retries:
            return SendToFallback(FallbackReason.RETRIES_EXHAUSTED, str(outcome), outcome.attempts)
        countdown = retry_countdown(retry, failures - 1, outcome.retry_after, rng)
        penalty = (Penalty(outcome.attempts[-1].model, countdown)
                   if outcome.status_code == HTTPStatus.TOO_MANY_REQUESTS and outcome.attempts else None)
        return Retry(countdown, outcome.attempts, penalty)
    if isinstance(outcome, APIError):
        return SendToFallback(FallbackReason.for_api_status(outcome.status_code), str(outcome), outcome.attempts)
    if not outcome.ok:
        reason = FallbackReason(outcome.failure_reason or FallbackReason.INVALID_AFTER_ATTEMPTS)
        return SendToFallback(reason, outcome.failure_detail, outcome.attempts, outcome.trimmed, outcome.injection)
    decision = router.route(outcome.ticket or {}, sla_start)
    match = outcome.injection
    injection_hold = match is not None and holds_for_review(match, decision.priority,
                                                            extraction or ExtractionSettings())
    levels = autonomy or AutonomySettings()
    confidence = outcome.ticket_confidence
    verdict = applied(levels.level(decision.route), confidence, levels.thresholds(decision.route),
                      injection_hold=injection_hold)
    if verdict.hold is None:
        return Finish(outcome, decision, verdict.level)
    unused = f"the answer's route {decision.route} ({decision.priority}) was not used"
    reason = FallbackReason(verdict.hold)
    if match is not None and reason == FallbackReason.INJECTION_SUSPECTED:
        detail = f"suspected injection (pattern {match.pattern!r} matched {match.text!r}): {unused}"
    elif reason == FallbackReason.LOW_CONFIDENCE:
        detail = (f"confidence {confidence:.2f} is below review_below "
                  f"{levels.thresholds(decision.route).review_below:g}: {unused}")
    else:
        detail = f"route {decision.route} has autonomy level review: {unused}"
    return HoldForReview(outcome, router.fallback(sla_start), reason, detail)


#: The database's and the broker's ways of saying they are unreachable (SQLAlchemy wraps the driver's
#: errors; kombu the broker's; the rate limiter talks to the broker's Redis directly).
OUTAGE_ERRORS: tuple[type[Exception], ...] = (DatabaseOperationalError, InterfaceError, BrokerError,
                                               redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def is_outage(exc: BaseException) -> bool:
    """True for a database or broker outage (worth retrying as it is), false for anything else.

    >>> from sqlalchemy.exc import DataError
    >>> is_outage(DatabaseOperationalError("SELECT 1", {}, ConnectionRefusedError("refused")))
    True
    >>> is_outage(DataError("INSERT ...", {}, ValueError("NUL")))
    False
    """
    if isinstance(exc, OUTAGE_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


#: Longest exception message kept in ``fallback_detail``.
MAX_ERROR_CHARS = 2000


def describe_error(exc: BaseException) -> str:
    """``Type: message``, storable and bounded (what ``fallback_detail`` keeps of an unexpected error).

    >>> describe_error(ValueError("bad answer" + chr(0)))
    'ValueError: bad answer'
    >>> describe_error(KeyError("problem_type"))
    "KeyError: 'problem_type'"
    """
    return repair_text(f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]).text


def on_exception(exc: Exception, retries: int, retry: RetrySettings,
                 rng: random.Random | None = None) -> Outage | SendToFallback:
    """What a task does with an exception nothing else handled: an outage waits and tries again
    (``retries``: the message's retries so far, for the backoff); anything else is the fallback queue
    with ``internal_error`` and the exception's type and message."""
    if is_outage(exc):
        return Outage(retry_countdown(retry, retries, None, rng), describe_error(exc))
    return SendToFallback(FallbackReason.INTERNAL_ERROR, describe_error(exc), [])
