"""Values the extraction room returns: one record per LLM call and the final result.

The room knows nothing of Celery or the database: callers persist :class:`Attempt` records
and decide what to do with an :class:`ExtractionResult` or an :class:`APIError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from triage.errors import ExtractionError
from triage.states.tickets import AttemptOutcome, ExtractionFailure

if TYPE_CHECKING:
    from triage.extraction.injection import InjectionMatch

@dataclass
class Attempt:
    """One call to the LLM, as it happened."""

    n: int
    model: str
    outcome: AttemptOutcome
    raw_output: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    latency_ms: int | None = None
    max_completion_tokens: int | None = None
    status_code: int | None = None
    #: Which parser path read the answer (``strict`` or ``tolerant``); None when nothing was read.
    parse_path: str | None = None
    #: Every repair the answer needed, sorted, e.g. ``("fence", "last_of_2", "trailing_comma")``.
    repairs: tuple[str, ...] = ()
    #: An item of a batch call: the stored call's id (set once it is stored) and how many it answered.
    batch_id: int | None = None
    batch_size: int | None = None


@dataclass
class ExtractionResult:
    """What an extractor produced for one conversation.

    ``ticket`` holds only schema fields and is valid, or is ``None`` with ``failure_reason``
    saying why. ``attempts`` are the calls made in this run.
    """

    #: ``dedupe``: an earlier ticket's LLM extraction reused (``dedupe_of``), no call made; ``learned``: the
    #: stored text classifier's enum fields (triage.learning) with the rules' free-text fields.
    extractor: Literal["llm", "rules", "dedupe", "learned"]
    ticket: dict[str, Any] | None
    attempts: list[Attempt] = field(default_factory=list)
    failure_reason: ExtractionFailure | None = None
    failure_detail: str | None = None
    model: str | None = None
    schema_version: str | None = None
    prompt_version: str | None = None
    #: The conversation was cut to fit the model before it was sent.
    trimmed: bool = False
    #: Instruction-like text aimed at the model in what was sent (see triage.extraction.injection).
    injection: InjectionMatch | None = None
    #: The conversation's de-duplication key (triage.extraction.dedupe), stored on the ticket for later lookups.
    dedupe_key: str | None = None
    #: The ticket whose extraction this result reuses (extractor ``dedupe``).
    dedupe_of: int | None = None
    #: How sure the extractor is of each field it decided, as a probability (the learned extractor's
    #: calibrated top probability); None when it does not say.
    confidence: dict[str, float] | None = None
    #: The combined confidence in [0, 1] of each routing field, and the ticket's (its lowest routing field),
    #: as stored on the ticket and its attempt; None until scored (a ticket no machine decided stays None).
    field_confidence: dict[str, float] | None = None
    ticket_confidence: float | None = None
    #: The probability the model gave to each routing field's value, from the answer's token logprobs
    #: (``extraction.logprobs``; triage.extraction.logprobs); None when not asked, not sent, or not an LLM answer.
    logprob_confidence: dict[str, float] | None = None
    #: What the confidence was computed from (triage.confidence.signals.SignalRecord's stored form), kept on the
    #: ticket for ``triage calibrate``; None until scored.
    confidence_signals: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.ticket is not None


class APIError(ExtractionError):
    """The API call failed.

    ``attempts`` are the calls made by the raising ``extract()`` (or ``complete()``) call, the
    failed one last, so the caller can store them before retrying or falling back.
    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    retryable: bool = False

    def __init__(self, message: str, attempts: list[Attempt], *, status_code: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status_code = status_code
        self.retry_after = retry_after


class RetryableAPIError(APIError):
    """429, 500, 503, other 5xx, timeouts, connection errors: try again later."""

    retryable = True


class RateLimitedError(ExtractionError):
    """The fleet's rate limiter has no budget now: try again in ``wait_seconds`` (nothing was sent).

    ``attempts`` are the calls this ``extract()`` made before it had to stop.
    """

    def __init__(self, wait_seconds: float, attempts: list[Attempt]) -> None:
        super().__init__(f"rate limit budget used up; next slot in {wait_seconds:.2f}s")
        self.wait_seconds = wait_seconds
        self.attempts = attempts


class FatalAPIError(APIError):
    """400, 401, 402, 403, 404, 421 and other 4xx: retrying will not help."""
