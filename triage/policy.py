"""The retry policy: what to do after an extraction, as a pure function of its outcome.

Given the outcome (a result, or the API error or rate-limit refusal it raised), the attempts of
the run so far and the retry settings, :func:`decide` returns one :data:`Step`: finish with a
route, defer without spending a retry, retry after a backoff (penalising the model for the
whole fleet on a 429), or send the ticket to the fallback queue with a reason. It touches no
database, broker or clock of its own, so every branch is a unit test::

    step = decide(attempt_extraction(extractor.extract, claim.conversation, claim.prior_attempts),
                  claim.prior_attempts, settings.retry, router, claim.sla_started_at)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus

from triage.backoff import retry_countdown
from triage.conversation import Conversation
from triage.extraction.types import APIError, Attempt, ExtractionResult, RateLimitedError, RetryableAPIError
from triage.routing import RouteDecision, Router
from triage.settings import RetrySettings
from triage.tickets.states import FallbackReason

#: What an extraction run can end with: a result, or the refusal or API error it raised.
Outcome = ExtractionResult | RateLimitedError | APIError


@dataclass(frozen=True)
class Finish:
    """Store the valid result on its route."""

    result: ExtractionResult
    decision: RouteDecision


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


Step = Finish | Defer | Retry | SendToFallback


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
    return sum(attempt.outcome == "api_error" for attempt in attempts)


def decide(outcome: Outcome, prior: Sequence[Attempt], retry: RetrySettings, router: Router, sla_start: datetime,
           rng: random.Random | None = None) -> Step:
    """The next step after ``outcome``; ``prior`` are the run's attempts before this extraction call, and a
    finished ticket's SLA counts from ``sla_start`` (when the customer's wait began, not now)."""
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
        return SendToFallback(reason, outcome.failure_detail, outcome.attempts, outcome.trimmed)
    return Finish(outcome, router.route(outcome.ticket or {}, sla_start))
