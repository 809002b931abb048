"""The LLM measured like the rest: the real extraction path over a data set, resumable.

Every conversation goes through what a worker runs (:class:`~triage.extraction.extractor.LLMExtractor`:
prompt, parse, validation, re-ask, the model chain, the fleet's rate limiter; batches through
:func:`~triage.extraction.batch_call.extract_batch` when ``extraction.batch_mode`` says so, an item that
was not valid asked again alone) against ``MIMO_BASE_URL``, which may be any OpenAI-compatible
endpoint. ``concurrency`` threads ask at once; a call the rate budget refuses waits for its slot, a
retryable API error is retried with the worker's backoff (``[retry]``), then counted as an error.

Each answer is stored in the answer cache (:mod:`triage.evaluation.cache`) as soon as it is in, so a
rerun after Ctrl-C or a crash asks only what is missing; identical conversations are asked once.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from triage.conversation import Conversation
from triage.evaluation import cache
from triage.evaluation.labels import Sample, conversation_hash
from triage.evaluation.scoring import Outcome, Progress
from triage.extraction.batch_call import conversation_tokens, extract_batch, fill_batches
from triage.extraction.extractor import LLMExtractor
from triage.extraction.types import APIError, Attempt, ExtractionResult, RateLimitedError
from triage.ratelimit.backoff import retry_countdown
from triage.settings import Settings

MIN_BATCH = 2


@dataclass(frozen=True)
class LLMRun:
    """One sample's outcome each (in order), and how many were read from the cache."""

    outcomes: list[Outcome]
    cached: int
    asked: int


class _Asker:
    """Asks one conversation (or one batch), waiting out the rate budget and retrying transient errors."""

    def __init__(self, extractor: LLMExtractor, settings: Settings, sleep: Callable[[float], None]) -> None:
        self.extractor = extractor
        self.settings = settings
        self.sleep = sleep
        self.rng = random.Random()

    def _patiently(self, call: Callable[[], ExtractionResult], made: list[Attempt]) -> ExtractionResult:
        retries = 0
        while True:
            try:
                return call()
            except RateLimitedError as exc:  # nothing was sent: wait for the window's next slot
                made.extend(exc.attempts)
                self.sleep(exc.wait_seconds)
            except APIError as exc:
                made.extend(exc.attempts)
                if not exc.retryable or retries >= self.settings.retry.max_retries:
                    exc.attempts = list(made)
                    raise
                self.sleep(retry_countdown(self.settings.retry, retries, exc.retry_after, self.rng))
                retries += 1

    def one(self, conversation: Conversation, before: Sequence[Attempt] = ()) -> Outcome:
        made: list[Attempt] = list(before)
        try:
            result = self._patiently(lambda: self.extractor.extract(conversation, made), made)
        except APIError as exc:
            return exc
        result.attempts = [*made, *result.attempts]
        return result

    def batch(self, conversations: Sequence[Conversation]) -> list[Outcome]:
        while True:
            try:
                run = extract_batch(self.extractor, [(c, []) for c in conversations])
                break
            except RateLimitedError as exc:
                self.sleep(exc.wait_seconds)
            except APIError:  # the whole call failed: each conversation is asked alone (with its own retries)
                return [self.one(c) for c in conversations]
        outcomes: list[Outcome] = []
        for conversation, item in zip(conversations, run.items, strict=True):
            if item.result is not None:
                outcomes.append(item.result)
            else:
                outcomes.append(self.one(conversation, [replace(item.attempt)]))
        return outcomes


def _groups(extractor: LLMExtractor, settings: Settings, conversations: Sequence[Conversation]) -> list[list[int]]:
    """Which missing conversations go in one call: batches when ``extraction.batch_mode`` is ``always``, or
    ``auto`` with more conversations than the model's requests per window; else one each."""
    options = settings.extraction
    budget = settings.rate_limit.budget(settings.model).rpm
    batching = options.batch_size >= MIN_BATCH and (
        options.batch_mode == "always" or (options.batch_mode == "auto" and len(conversations) > budget))
    if not batching:
        return [[index] for index in range(len(conversations))]
    tokens = [conversation_tokens(extractor.prepare(c).conversation) for c in conversations]
    return fill_batches(tokens, options.batch_max_input_tokens, options.batch_size)


def run_llm(samples: Sequence[Sample], extractor: LLMExtractor, settings: Settings, store: cache.AnswerStore, *,
            concurrency: int = 1, progress: Progress | None = None,
            sleep: Callable[[float], None] = time.sleep) -> LLMRun:
    """Every sample's LLM outcome: cached answers first, then the missing ones asked (``concurrency`` at once)."""
    hashes = [conversation_hash(sample.conversation) for sample in samples]
    answers: dict[str, Outcome] = dict(store.cached(hashes))
    cached_count = sum(h in answers for h in hashes)
    missing: dict[str, Conversation] = {}
    for digest, sample in zip(hashes, samples, strict=True):
        if digest not in answers:
            missing.setdefault(digest, sample.conversation)
    keys, conversations = list(missing), list(missing.values())
    rows_of = Counter(hashes)
    asker = _Asker(extractor, settings, sleep)
    lock = threading.Lock()
    done = cached_count

    def ask(group: list[int]) -> None:
        nonlocal done
        asked = [conversations[i] for i in group]
        outcomes = asker.batch(asked) if len(asked) >= MIN_BATCH else [asker.one(asked[0])]
        got = [(keys[i], outcome) for i, outcome in zip(group, outcomes, strict=True)]
        store.put([(key, outcome) for key, outcome in got if isinstance(outcome, ExtractionResult)])
        with lock:
            answers.update(got)
            done += sum(rows_of[key] for key, _ in got)
            if progress is not None:
                progress(done, len(samples))

    if progress is not None:
        progress(done, len(samples))
    pool = ThreadPoolExecutor(max_workers=max(concurrency, 1), thread_name_prefix="evaluate-llm")
    try:
        for future in [pool.submit(ask, group) for group in _groups(extractor, settings, conversations)]:
            future.result()
    finally:  # Ctrl-C: nothing new is asked; the calls under way finish and store their answers
        pool.shutdown(wait=False, cancel_futures=True)
    return LLMRun([answers[h] for h in hashes], cached_count, len(missing))
