"""The attempt loop: call the LLM, parse, choose, validate, re-ask with the problems, bounded.

One :meth:`LLMExtractor.extract` call makes at most ``settings.attempts`` answers (attempts
from an earlier part of the same run, passed as ``prior``, count too). Each answer is judged in
this order:

1. **cut off** (``finish_reason == "length"``, or an object that never closes:
   :class:`~triage.extraction.parse.TruncatedError`): ``truncated``, retried with twice the token
   budget, up to ``settings.max_completion_tokens_cap``; never completed by a repair;
2. **no usable object** (:func:`~triage.extraction.parse.parse_answer` raises): ``unparseable``;
3. :func:`~triage.extraction.choose.choose` over every object, with the fields the routing rules
   read (``routing_fields``, passed in: this room does not know the rules): the last valid one is
   ``valid``; valid ones that disagree on a routing field are ``ambiguous`` (re-asked once with
   "answer with exactly one"; a second ambiguous answer fails the run with ``ambiguous_answer``);
   none valid is ``invalid`` (re-asked with the schema's issues).

Each call's model is the failure chain's current one (:class:`~triage.extraction.model_chain.ModelChain`:
404s and open circuits), or, when that one has no rate budget in this window, the first overflow
model that has (:class:`~triage.extraction.budget.ModelBudgets`); when none has, the run stops with
:class:`~triage.extraction.types.RateLimitedError` (the caller defers).

A re-ask's size does not grow: it is always system + conversation + the last bad answer + its
problems. Every attempt records its parse path and repairs, and its raw output made storable
(:func:`triage.text.repair_text`). What was sent is scanned for instruction-like text
(:class:`~triage.extraction.injection.InjectionDetector`): the match is the result's ``injection``.
API errors propagate with every attempt of this call.

    extractor = LLMExtractor(LLMClient.from_settings(settings), schema, settings.model,
                             settings.extraction, routing_fields={"problem_type", "urgent_level"})
    result = extractor.extract(Conversation.from_text("My speaker can't connect Wi-Fi"))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import date
from typing import Any

from triage import metrics
from triage.conversation import Conversation
from triage.extraction.budget import Acquire, ModelBudgets
from triage.extraction.choose import Ambiguous, Chosen, choose
from triage.extraction.injection import InjectionDetector
from triage.extraction.llm import Completion, LLMClient
from triage.extraction.logprobs import value_confidence
from triage.extraction.model_chain import NOT_FOUND, ModelChain
from triage.extraction.parse import ParseError, TruncatedError, is_truncated, parse_answer
from triage.extraction.prompt import ChatMessage, TicketPrompt
from triage.extraction.redact import redact_conversation
from triage.extraction.trim import Trimmed, trim
from triage.extraction.types import APIError, Attempt, ExtractionResult, RateLimitedError
from triage.schema import TicketSchema
from triage.settings import ExtractionSettings, PrivacySettings
from triage.states.tickets import AttemptOutcome, ExtractionFailure
from triage.text import repair_text

logger = logging.getLogger(__name__)

BUDGET_GROWTH = 2
#: Conservative characters per token for the budget estimate (Chinese runs near 1, English near 4).
CHARS_PER_TOKEN = 2
#: Outcomes whose answer is sent back, with its problems, in the next re-ask.
REASK_OUTCOMES = (AttemptOutcome.INVALID, AttemptOutcome.UNPARSEABLE, AttemptOutcome.AMBIGUOUS)
#: Ambiguous answers in one run that fail it with ``ambiguous_answer``: the first one is re-asked once.
AMBIGUOUS_LIMIT = 2


class LLMExtractor:
    """Extracts a ticket from a conversation with the LLM.

    ::

        extractor = LLMExtractor(client, TicketSchema.load(path), "mimo-v2-flash", ExtractionSettings(),
                                 routing_fields=router.fields)
        result = extractor.extract(conversation)
        result.ticket        # {"problem_type": "device_fault", ...} or None
        result.attempts      # every call made by this extract(), in order
        result.injection     # InjectionMatch(pattern=..., text=...) or None

    ``routing_fields`` are the fields the routing rules read: two valid objects in one answer that
    disagree on one of them make it ambiguous (none given: the last valid object always wins).
    ``detector`` defaults to the one ``settings.injection_patterns`` configures.
    """

    def __init__(self, client: LLMClient, schema: TicketSchema, model: str | ModelChain,
                 settings: ExtractionSettings, today: Callable[[], date] = date.today,
                 acquire: Acquire | None = None, privacy: PrivacySettings | None = None, *,
                 routing_fields: Collection[str] = (), detector: InjectionDetector | None = None,
                 overflow_models: Sequence[str] = ()) -> None:
        self.client = client
        self.routing_fields = frozenset(routing_fields)
        self.detector = detector or InjectionDetector.from_settings(settings)
        self.privacy = privacy or PrivacySettings()
        self.schema = schema
        self.models = model if isinstance(model, ModelChain) else ModelChain.single(model)
        self.budgets = ModelBudgets(acquire, overflow_models, self.models.available)
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
        result.injection = self.detector.scan(outgoing.conversation)
        return result

    def _attempt_loop(self, conversation: Conversation, prior: Sequence[Attempt]) -> ExtractionResult:
        today = self.today()
        made: list[Attempt] = []
        while answered_count([*prior, *made]) < self.settings.attempts:
            history = [*prior, *made]
            n, budget = next_number(history), next_budget(history, self.settings)
            messages = self._messages(conversation, today, history)
            first = self.models.pick()
            grant = self.budgets.take(first, estimate_tokens(messages, budget))
            if grant.model is None:  # no model has budget in this window: defer
                metrics.ratelimit_wait(first, grant.wait)
                raise RateLimitedError(grant.wait, made)
            model = grant.model
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
                result = self._result(made, ticket, model)
                result.logprob_confidence = value_confidence(completion.text, completion.logprobs, ticket,
                                                             self.routing_fields)
                return result
            if ambiguous_count([*prior, *made]) >= AMBIGUOUS_LIMIT:
                break
        history = [*prior, *made]
        result = self._result(made, None, made[-1].model if made else self.models.pick())
        result.failure_reason = failure_reason(history)
        result.failure_detail = last_error(history)
        return result

    def _messages(self, conversation: Conversation, today: date,
                  history: Sequence[Attempt]) -> list[ChatMessage]:
        bad = next((a for a in reversed(history) if a.outcome in REASK_OUTCOMES), None)
        if bad is None:
            return self.prompt.messages(conversation, today)
        if bad.outcome == AttemptOutcome.AMBIGUOUS:
            return self.prompt.ambiguous_reask_messages(conversation, today, bad.raw_output or "",
                                                        object_count(bad.raw_output))
        return self.prompt.reask_messages(conversation, today, bad.raw_output or "",
                                          (bad.error or "").splitlines())

    def _judge(self, completion: Completion, model: str, n: int,
               budget: int) -> tuple[Attempt, dict[str, Any] | None]:
        """The attempt record for ``completion`` and, when it is valid, the projected ticket."""
        def record(outcome: AttemptOutcome, error: str | None, path: str | None = None,
                   repairs: tuple[str, ...] = ()) -> Attempt:
            return _attempt(completion, model, n, budget, outcome, error, path, repairs)

        if is_truncated(completion.finish_reason):
            return record(AttemptOutcome.TRUNCATED, f"the answer was cut off at max_completion_tokens={budget} "
                                       "(finish_reason=length)"), None
        try:
            answer = parse_answer(completion.text)
        except TruncatedError as exc:
            cut_off = f"the answer was cut off at max_completion_tokens={budget}: {exc}"
            return record(AttemptOutcome.TRUNCATED, cut_off), None
        except ParseError as exc:
            return record(AttemptOutcome.UNPARSEABLE, f"the answer is not usable JSON: {exc}"), None
        choice = choose(answer.candidates, self.schema.validate, self.routing_fields)
        if isinstance(choice, Chosen):
            return record(AttemptOutcome.VALID, None, answer.path, choice.repairs), self.schema.project(choice.value)
        if isinstance(choice, Ambiguous):
            error = f"{choice.reask} (the objects disagree on {', '.join(choice.fields)})"
            return record(AttemptOutcome.AMBIGUOUS, error, answer.path, answer.repairs), None
        issues = "\n".join(map(str, choice.issues))
        return record(AttemptOutcome.INVALID, issues, answer.path, choice.candidate.repairs), None

    def _result(self, made: list[Attempt], ticket: dict[str, Any] | None, model: str) -> ExtractionResult:
        return ExtractionResult(extractor="llm", ticket=ticket, attempts=made, model=model,
                                schema_version=self.schema.version, prompt_version=self.prompt.version)


def _attempt(completion: Completion, model: str, n: int, budget: int, outcome: AttemptOutcome,
             error: str | None, parse_path: str | None, repairs: tuple[str, ...]) -> Attempt:
    """The record of one answer; its raw text and error made storable (no NUL, no lone surrogate)."""
    return Attempt(n=n, model=model, outcome=outcome, raw_output=repair_text(completion.text).text,
                   finish_reason=completion.finish_reason, error=repair_text(error).text if error else None,
                   prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                   reasoning_tokens=completion.reasoning_tokens, latency_ms=completion.latency_ms,
                   max_completion_tokens=budget, parse_path=parse_path, repairs=repairs)


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
    return sum(attempt.outcome != AttemptOutcome.API_ERROR for attempt in attempts)


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
        if attempt.outcome == AttemptOutcome.TRUNCATED:
            budget = max(budget, min(budget * BUDGET_GROWTH, settings.max_completion_tokens_cap))
    return budget


def ambiguous_count(attempts: Sequence[Attempt]) -> int:
    """How many answers of the run were ambiguous.

    >>> ambiguous_count([Attempt(1, "m", "ambiguous"), Attempt(2, "m", "invalid")])
    1
    """
    return sum(attempt.outcome == AttemptOutcome.AMBIGUOUS for attempt in attempts)


def object_count(answer: str | None) -> int:
    """How many JSON objects an (ambiguous) answer holds: it is read again, the count is not stored.

    >>> object_count('{"a": 1} or rather {"a": 2}')
    2
    """
    return len(parse_answer(answer).candidates)


def failure_reason(attempts: Sequence[Attempt]) -> ExtractionFailure:
    """Why a run without a valid answer failed: ``ambiguous_answer`` when its last answer was
    ambiguous, else ``invalid_after_attempts``.

    >>> failure_reason([Attempt(1, "m", "ambiguous"), Attempt(2, "m", "api_error")]).value
    'ambiguous_answer'
    """
    last = next((a for a in reversed(attempts) if a.outcome != AttemptOutcome.API_ERROR), None)
    if last is not None and last.outcome == AttemptOutcome.AMBIGUOUS:
        return ExtractionFailure.AMBIGUOUS_ANSWER
    return ExtractionFailure.INVALID_AFTER_ATTEMPTS


def last_error(attempts: Sequence[Attempt]) -> str | None:
    """The problems of the last answered attempt: why the run failed.

    >>> last_error([Attempt(1, "m", "invalid", error="$.x: bad"), Attempt(2, "m", "api_error", error="503")])
    '$.x: bad'
    """
    return next((a.error for a in reversed(attempts) if a.outcome != AttemptOutcome.API_ERROR), None)
