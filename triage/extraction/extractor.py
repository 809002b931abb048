"""The attempt loop: call the LLM, parse, validate, re-ask with the errors, bounded.

One :meth:`LLMExtractor.extract` call makes at most ``settings.attempts`` answers (attempts
from an earlier part of the same run, passed as ``prior``, count too). An unparseable or
invalid answer is sent back once, with its problems, in a re-ask whose size does not grow; a
truncated answer (``finish_reason == "length"``) is retried with twice the token budget, up to
``settings.max_completion_tokens_cap``. API errors propagate with every attempt of this call.

    extractor = LLMExtractor(LLMClient.from_settings(settings), schema, settings.model,
                             settings.extraction)
    result = extractor.extract(Conversation.from_text("My speaker can't connect Wi-Fi"))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from triage import metrics
from triage.conversation import Conversation
from triage.extraction.llm import Completion, LLMClient
from triage.extraction.model_chain import NOT_FOUND, ModelChain
from triage.extraction.parse import ParseError, is_truncated, parse_json_object
from triage.extraction.prompt import ChatMessage, TicketPrompt
from triage.extraction.redact import redact_conversation
from triage.extraction.trim import Trimmed, trim
from triage.extraction.types import APIError, Attempt, ExtractionFailure, ExtractionResult, Outcome, RateLimitedError
from triage.schema import TicketSchema
from triage.settings import ExtractionSettings, PrivacySettings

logger = logging.getLogger(__name__)

BUDGET_GROWTH = 2
#: A rate limiter's ``acquire(model, tokens) -> seconds to wait`` (0: go), e.g. triage.ratelimit's.
Acquire = Callable[[str, int], float]
#: Conservative characters per token for the budget estimate (Chinese runs near 1, English near 4).
CHARS_PER_TOKEN = 2
#: Outcomes whose answer is sent back, with its problems, in the next re-ask.
REASK_OUTCOMES: tuple[Outcome, ...] = ("invalid", "unparseable")


class LLMExtractor:
    """Extracts a ticket from a conversation with the LLM.

    ::

        extractor = LLMExtractor(client, TicketSchema.load(path), "mimo-v2-flash", ExtractionSettings())
        result = extractor.extract(conversation)
        result.ticket        # {"problem_type": "device_fault", ...} or None
        result.attempts      # every call made by this extract(), in order
    """

    def __init__(self, client: LLMClient, schema: TicketSchema, model: str | ModelChain,
                 settings: ExtractionSettings, today: Callable[[], date] = date.today,
                 acquire: Acquire | None = None, privacy: PrivacySettings | None = None) -> None:
        self.client = client
        self.privacy = privacy or PrivacySettings()
        self.acquire = acquire
        self.schema = schema
        self.models = model if isinstance(model, ModelChain) else ModelChain.single(model)
        self.settings = settings
        self.today = today
        self.prompt = TicketPrompt(schema)

    def prepare(self, conversation: Conversation) -> Trimmed:
        """What is sent for ``conversation``: a copy with PII redacted (``privacy``), then trimmed to
        ``settings.max_input_chars`` (see :mod:`triage.extraction.trim`); ``conversation`` is not changed."""
        return trim(redact_conversation(conversation, self.privacy), self.settings.max_input_chars)

    def extract(self, conversation: Conversation, prior: Sequence[Attempt] = ()) -> ExtractionResult:
        """Run the attempt loop for ``conversation``.

        The model only ever sees :meth:`prepare`'s copy; a result from a trimmed conversation has
        ``trimmed=True``.

        ``prior`` are attempts already made earlier in this extraction run (before a retry):
        they continue the numbering, count toward ``settings.attempts`` when they got an answer,
        and their last bad answer and token budget carry over. The result's ``attempts`` (and an
        :class:`APIError`'s) are only the calls made by this call, the failed one last.
        """
        outgoing = self.prepare(conversation)
        if outgoing.trimmed:
            logger.info("conversation trimmed to %d characters (%d messages omitted)",
                        self.settings.max_input_chars, outgoing.omitted)
        result = self._attempt_loop(outgoing.conversation, prior)
        result.trimmed = outgoing.trimmed
        return result

    def _attempt_loop(self, conversation: Conversation, prior: Sequence[Attempt]) -> ExtractionResult:
        today = self.today()
        made: list[Attempt] = []
        while answered_count([*prior, *made]) < self.settings.attempts:
            history = [*prior, *made]
            n, budget = next_number(history), next_budget(history, self.settings)
            messages = self._messages(conversation, today, history)
            model = self.models.pick()
            if self.acquire is not None:
                wait = self.acquire(model, estimate_tokens(messages, budget))
                if wait > 0:
                    metrics.ratelimit_wait(model, wait)
                    raise RateLimitedError(wait, made)
            try:
                completion = self.client.complete(model, messages, budget, n)
            except APIError as exc:
                for failed in exc.attempts:
                    metrics.llm_attempt(failed)
                self.models.failed(model, exc.status_code)
                if exc.status_code == NOT_FOUND and self.models.has_alternative(model):
                    made.extend(exc.attempts)  # a retired model id: ask the next model now
                    continue
                exc.attempts = [*made, *exc.attempts]
                raise
            self.models.succeeded(model)
            attempt, ticket = self._judge(completion, model, n, budget)
            metrics.llm_attempt(attempt)
            made.append(attempt)
            if ticket is not None:
                return self._result(made, ticket, model)
        result = self._result(made, None, made[-1].model if made else self.models.pick())
        result.failure_reason = ExtractionFailure.INVALID_AFTER_ATTEMPTS
        result.failure_detail = last_error([*prior, *made])
        return result

    def _messages(self, conversation: Conversation, today: date,
                  history: Sequence[Attempt]) -> list[ChatMessage]:
        bad = next((a for a in reversed(history) if a.outcome in REASK_OUTCOMES), None)
        if bad is None:
            return self.prompt.messages(conversation, today)
        return self.prompt.reask_messages(conversation, today, bad.raw_output or "",
                                          (bad.error or "").splitlines())

    def _judge(self, completion: Completion, model: str, n: int,
               budget: int) -> tuple[Attempt, dict[str, Any] | None]:
        """The attempt record for ``completion`` and, when it is valid, the projected ticket."""
        if is_truncated(completion.finish_reason):
            error = f"the answer was cut off at max_completion_tokens={budget} (finish_reason=length)"
            return _attempt(completion, model, n, budget, "truncated", error), None
        try:
            parsed = parse_json_object(completion.text)
        except ParseError as exc:
            error = f"the answer is not usable JSON: {exc}"
            return _attempt(completion, model, n, budget, "unparseable", error), None
        logger.debug("attempt %d parsed on the %s path", n, parsed.path)
        issues = self.schema.validate(parsed.value)
        if issues:
            return _attempt(completion, model, n, budget, "invalid", "\n".join(map(str, issues))), None
        return _attempt(completion, model, n, budget, "valid", None), self.schema.project(parsed.value)

    def _result(self, made: list[Attempt], ticket: dict[str, Any] | None, model: str) -> ExtractionResult:
        return ExtractionResult(extractor="llm", ticket=ticket, attempts=made, model=model,
                                schema_version=self.schema.version, prompt_version=self.prompt.version)


def _attempt(completion: Completion, model: str, n: int, budget: int, outcome: Outcome,
             error: str | None) -> Attempt:
    return Attempt(n=n, model=model, outcome=outcome, raw_output=completion.text,
                   finish_reason=completion.finish_reason, error=error,
                   prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                   reasoning_tokens=completion.reasoning_tokens, latency_ms=completion.latency_ms,
                   max_completion_tokens=budget)


def estimate_tokens(messages: Sequence[ChatMessage], max_completion_tokens: int) -> int:
    """Tokens to reserve for a call: the prompt's estimate plus the whole answer budget.

    >>> estimate_tokens([{"role": "user", "content": "x" * 100}], 1024)
    1074
    """
    prompt_chars = sum(len(message["content"]) for message in messages)
    return prompt_chars // CHARS_PER_TOKEN + max_completion_tokens


def answered_count(attempts: Sequence[Attempt]) -> int:
    """How many attempts got an answer (API errors do not count toward the limit).

    >>> answered_count([Attempt(1, "m", "api_error"), Attempt(2, "m", "invalid")])
    1
    """
    return sum(attempt.outcome != "api_error" for attempt in attempts)


def next_number(attempts: Sequence[Attempt]) -> int:
    """The next attempt's ``n``, continuing the numbering.

    >>> next_number([]), next_number([Attempt(1, "m", "api_error"), Attempt(2, "m", "invalid")])
    (1, 3)
    """
    return max((attempt.n for attempt in attempts), default=0) + 1


def next_budget(attempts: Sequence[Attempt], settings: ExtractionSettings) -> int:
    """The next ``max_completion_tokens``: the last one used, doubled after each truncation,
    up to the cap (a budget already above the cap is never lowered).

    >>> settings = ExtractionSettings(max_completion_tokens=1000, max_completion_tokens_cap=3000)
    >>> truncated = Attempt(1, "m", "truncated", max_completion_tokens=2000)
    >>> next_budget([], settings), next_budget([truncated], settings)
    (1000, 3000)
    """
    budget = settings.max_completion_tokens
    for attempt in attempts:
        budget = attempt.max_completion_tokens or budget
        if attempt.outcome == "truncated":
            budget = max(budget, min(budget * BUDGET_GROWTH, settings.max_completion_tokens_cap))
    return budget


def last_error(attempts: Sequence[Attempt]) -> str | None:
    """The problems of the last answered attempt: why the run failed.

    >>> last_error([Attempt(1, "m", "invalid", error="$.x: bad"), Attempt(2, "m", "api_error", error="503")])
    '$.x: bad'
    """
    return next((a.error for a in reversed(attempts) if a.outcome != "api_error"), None)
