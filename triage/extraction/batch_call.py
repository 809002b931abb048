"""One LLM call for several conversations, each item judged on its own as a single answer would be.

:func:`extract_batch` sends the batch prompt (:meth:`~triage.extraction.prompt.TicketPrompt.batch_messages`:
each conversation in its own ``<<<CONVERSATION id="cN">>>`` block, ``cN`` an opaque key), charges the
rate limiter once for the whole call, and reads the answer with
:func:`~triage.extraction.batch_answer.parse_batch_answer`. Every asked key's object goes through the
chooser and the schema like a single answer's (:func:`~triage.extraction.choose.choose`); what is
valid becomes that conversation's result (with its own trim flag and injection scan), and what is
not (missing, given twice, cut off, not an object, invalid) is left for the caller to ask again
alone, with the batch item's attempt as the run's prior attempt. A key nobody asked for is
ignored; a key is bound to its conversation by position, so fields cannot move between tickets.

The call is stored once (:class:`BatchCall`); each item's :class:`~triage.extraction.types.Attempt`
holds its own object as ``raw_output``, the batch's size, and an even share of the call's tokens::

    run = extract_batch(extractor, [(conversation, prior_attempts), ...])
    run.call.raw_output            # the whole answer
    run.items[0].result            # an ExtractionResult with a valid ticket, or None: ask it alone
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from triage import metrics
from triage.conversation import Conversation
from triage.extraction.batch_answer import BatchAnswer, BatchItem, parse_batch_answer
from triage.extraction.choose import Chosen, NoneValid, choose
from triage.extraction.extractor import CHARS_PER_TOKEN, LLMExtractor, estimate_tokens, next_number
from triage.extraction.llm import Completion
from triage.extraction.logprobs import TokenLogprob, item_span, value_confidence
from triage.extraction.parse import Candidate, is_truncated
from triage.extraction.prompt import batch_keys, render_conversation
from triage.extraction.trim import Trimmed
from triage.extraction.types import APIError, Attempt, ExtractionResult, RateLimitedError
from triage.settings import ExtractionSettings
from triage.states.tickets import AttemptOutcome
from triage.text import repair_text


@dataclass(frozen=True)
class BatchCall:
    """One batch call as it happened: stored once, every item's attempt points to it."""

    model: str
    size: int
    raw_output: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    latency_ms: int
    max_completion_tokens: int


@dataclass(frozen=True)
class ItemOutcome:
    """One conversation's share of the call: its attempt and, when its item was valid, the result."""

    attempt: Attempt
    result: ExtractionResult | None


@dataclass(frozen=True)
class BatchRun:
    """The call and, in the order of the conversations asked, each one's outcome."""

    call: BatchCall
    items: list[ItemOutcome]


def completion_budget(size: int, settings: ExtractionSettings) -> int:
    """A batch's ``max_completion_tokens``: the single budget per conversation, capped.

    >>> completion_budget(3, ExtractionSettings()), completion_budget(10, ExtractionSettings())
    (3072, 8192)
    """
    return min(settings.max_completion_tokens * size, settings.batch_max_completion_tokens)


def conversation_tokens(conversation: Conversation) -> int:
    """The estimated prompt tokens of one conversation's block (as :func:`estimate_tokens` counts).

    >>> conversation_tokens(Conversation.from_text("x" * 100))
    76
    """
    return len(render_conversation(conversation)) // CHARS_PER_TOKEN


def fill_batches(tokens: Sequence[int], limit: int, size: int) -> list[list[int]]:
    """Indexes of ``tokens`` in order, grouped into calls of at most ``size`` whose sum stays within
    ``limit`` (a conversation larger than ``limit`` goes alone).

    >>> fill_batches([10, 10, 10, 30, 5], limit=25, size=10)
    [[0, 1], [2], [3], [4]]
    >>> fill_batches([1, 1, 1], limit=100, size=2)
    [[0, 1], [2]]
    """
    groups: list[list[int]] = []
    total = 0
    for index, count in enumerate(tokens):
        if groups and len(groups[-1]) < size and total + count <= limit:
            groups[-1].append(index)
            total += count
        else:
            groups.append([index])
            total = count
    return groups


def build_batches(extractor: LLMExtractor, conversations: Sequence[Conversation], limit: int,
                  size: int) -> list[list[int]]:
    """Indexes of ``conversations`` grouped into calls, as :func:`fill_batches` groups them, but each
    conversation is scanned for injection first (what is sent of it, :meth:`LLMExtractor.prepare`) and a
    flagged one is asked in a call of its own, first: one customer's instructions never share a prompt with
    another customer's text."""
    sent = [extractor.prepare(conversation).conversation for conversation in conversations]
    flagged = [extractor.detector.scan(conversation) is not None for conversation in sent]
    alone = [[index] for index, suspect in enumerate(flagged) if suspect]
    others = [index for index, suspect in enumerate(flagged) if not suspect]
    groups = fill_batches([conversation_tokens(sent[index]) for index in others], limit, size)
    return alone + [[others[position] for position in group] for group in groups]


def share(total: int | None, parts: int) -> list[int | None]:
    """``total`` split into ``parts`` whole shares that add up to it (None stays None).

    >>> share(10, 3), share(None, 2)
    ([4, 3, 3], [None, None])
    """
    if total is None:
        return [None] * parts
    base, extra = divmod(total, parts)
    return [base + (index < extra) for index in range(parts)]


def extract_batch(extractor: LLMExtractor,
                  conversations: Sequence[tuple[Conversation, Sequence[Attempt]]]) -> BatchRun:
    """Ask for every ``(conversation, prior attempts)`` in one call (at least two).

    Raises :class:`RateLimitedError` (nothing was sent) or :class:`APIError` (its one attempt).
    """
    if len(conversations) < 2:
        raise ValueError("a batch holds at least two conversations")
    settings = extractor.settings
    outgoing = [extractor.prepare(conversation) for conversation, _ in conversations]
    keys = batch_keys(len(outgoing))
    messages = extractor.prompt.batch_messages(
        [(key, sent.conversation) for key, sent in zip(keys, outgoing, strict=True)], extractor.today())
    budget = completion_budget(len(keys), settings)
    first = extractor.models.pick()
    grant = extractor.budgets.take(first, estimate_tokens(messages, budget))  # primary, then overflow models
    if grant.model is None:
        metrics.ratelimit_wait(first, grant.wait)
        raise RateLimitedError(grant.wait, [])
    model = grant.model
    try:
        completion = extractor.client.complete(model, messages, budget, 1)
    except APIError as exc:
        for failed in exc.attempts:
            metrics.llm_attempt(failed)
        extractor.models.failed(model, exc.status_code)
        raise
    extractor.models.succeeded(model)
    call = _call(completion, model, len(keys), budget)
    # an answer cut off at the budget keeps every item that closed before the cut
    answer = parse_batch_answer(completion.text, keys)
    judge = _Judge(extractor, call, answer, completion.text, completion.logprobs)
    items = [judge(index, key, sent, prior)
             for index, (key, sent, (_, prior)) in enumerate(zip(keys, outgoing, conversations, strict=True))]
    metrics.llm_call(model, batch_outcome(call, items), call.latency_ms,
                     {"prompt": call.prompt_tokens, "completion": call.completion_tokens,
                      "reasoning": call.reasoning_tokens})
    return BatchRun(call, items)


def batch_outcome(call: BatchCall, items: Sequence[ItemOutcome]) -> AttemptOutcome:
    """A batch call's outcome in the metrics (one call, counted once): ``valid`` when every item was,
    ``truncated`` when the answer was cut off, else ``invalid`` (some items are asked again alone)."""
    if all(item.attempt.outcome == AttemptOutcome.VALID for item in items):
        return AttemptOutcome.VALID
    return AttemptOutcome.TRUNCATED if is_truncated(call.finish_reason) else AttemptOutcome.INVALID


def _call(completion: Completion, model: str, size: int, budget: int) -> BatchCall:
    return BatchCall(model=model, size=size, raw_output=repair_text(completion.text).text,
                     finish_reason=completion.finish_reason, prompt_tokens=completion.prompt_tokens,
                     completion_tokens=completion.completion_tokens, reasoning_tokens=completion.reasoning_tokens,
                     latency_ms=completion.latency_ms, max_completion_tokens=budget)


class _Judge:
    """Turns each asked key's item into that conversation's attempt (and result when valid)."""

    def __init__(self, extractor: LLMExtractor, call: BatchCall, answer: BatchAnswer, text: str,
                 logprobs: Sequence[TokenLogprob] | None) -> None:
        self.extractor = extractor
        self.call = call
        self.answer = answer
        self.text = text
        self.logprobs = logprobs
        self.prompt_tokens = share(call.prompt_tokens, call.size)
        self.completion_tokens = share(call.completion_tokens, call.size)
        self.reasoning_tokens = share(call.reasoning_tokens, call.size)

    def __call__(self, index: int, key: str, sent: Trimmed, prior: Sequence[Attempt]) -> ItemOutcome:
        attempt = Attempt(n=next_number(prior), model=self.call.model, outcome=AttemptOutcome.BATCH_UNUSABLE,
                          finish_reason=self.call.finish_reason, prompt_tokens=self.prompt_tokens[index],
                          completion_tokens=self.completion_tokens[index],
                          reasoning_tokens=self.reasoning_tokens[index], latency_ms=self.call.latency_ms,
                          max_completion_tokens=self.call.max_completion_tokens // self.call.size,
                          parse_path=self.answer.path, batch_size=self.call.size)
        item = self.answer.items[key]
        if not isinstance(item, BatchItem):
            outcome = AttemptOutcome.TRUNCATED if item.reason == "truncated" else AttemptOutcome.BATCH_UNUSABLE
            return ItemOutcome(replace(attempt, outcome=outcome, error=item.detail, parse_path=None), None)
        repairs = tuple(sorted({*self.answer.repairs, *item.repairs}))
        raw = repair_text(json.dumps(item.value, ensure_ascii=False)).text
        choice = choose([Candidate(item.value, repairs)], self.extractor.schema.validate,
                        self.extractor.routing_fields)
        if not isinstance(choice, Chosen):
            issues = choice.issues if isinstance(choice, NoneValid) else (choice.reask,)
            error = repair_text("\n".join(map(str, issues))).text
            return ItemOutcome(replace(attempt, outcome=AttemptOutcome.INVALID, raw_output=raw, error=error,
                                       repairs=repairs), None)
        valid = replace(attempt, outcome=AttemptOutcome.VALID, raw_output=raw, repairs=choice.repairs)
        ticket = self.extractor.schema.project(choice.value)
        span = item_span(self.text, key) if self.logprobs else None
        result = ExtractionResult(extractor="llm", ticket=ticket,
                                  attempts=[valid], model=self.call.model,
                                  schema_version=self.extractor.schema.version,
                                  prompt_version=self.extractor.prompt.version, trimmed=sent.trimmed,
                                  injection=self.extractor.detector.scan(sent.conversation),
                                  logprob_confidence=None if span is None else value_confidence(
                                      self.text, self.logprobs, ticket, self.extractor.routing_fields, span))
        return ItemOutcome(valid, result)
