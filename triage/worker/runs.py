"""One extraction run of claimed tickets, without Celery: what each one's outcome is.

A recent identical conversation's extraction is reused (:func:`dedupe_lookup`: no LLM call);
otherwise a ticket is asked alone (:func:`single`), or several in one batch call
(:func:`batch`), where every item that was not valid is asked again alone after it. The tasks
(:mod:`triage.worker.tasks`) claim the tickets, ask the policy what each outcome means and apply it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from triage.app import App
from triage.conversation import Conversation
from triage.extraction import batch_call, dedupe
from triage.extraction.dedupe import Lookup
from triage.extraction.extractor import LLMExtractor, next_number
from triage.extraction.types import APIError, Attempt, RateLimitedError, RetryableAPIError
from triage.store.batches import store_call
from triage.store.dedupe import find_earlier
from triage.tickets import lifecycle
from triage.worker.policy import Outcome, attempt_extraction


def dedupe_lookup(app: App, ticket_id: int, conversation: Conversation) -> Lookup | None:
    """``conversation``'s de-duplication key and, when a recent ticket's LLM extraction matches, its reuse;
    ``None`` when de-duplication is off (the rules extractor, or ``extraction.dedupe_window_seconds = 0``)."""
    options = app.settings.extraction
    if app.settings.extractor != "llm" or not options.dedupe_window_seconds:
        return None
    key = dedupe.extractor_key(app.llm, conversation)
    earlier = find_earlier(app.sessions, ticket_id, key, app.clock.now(), options.dedupe_window_seconds,
                           options.dedupe_sources_off)
    if earlier is None:
        return Lookup(key, None)
    return Lookup(key, dedupe.reuse(app.llm, conversation, key, earlier.ticket_id, earlier.fields, earlier.model))


def single(app: App, claim: lifecycle.Claim) -> Outcome:
    """A recent identical conversation's extraction reused (no LLM call), else the extractor's run, keyed."""
    lookup = dedupe_lookup(app, claim.ticket_id, claim.conversation)
    if lookup is not None and lookup.reused is not None:
        return lookup.reused
    outcome = attempt_extraction(app.extractor.extract, claim.conversation, claim.prior_attempts)
    return outcome if lookup is None else dedupe.keyed(outcome, lookup.key)


def batch(app: App, claims: Sequence[lifecycle.Claim]) -> list[Outcome]:
    """One batch call for ``claims`` (a lone claim: its single run), then each invalid item alone."""
    extractor = app.llm
    if len(claims) == 1:
        return [attempt_extraction(extractor.extract, claims[0].conversation, claims[0].prior_attempts)]
    try:
        run = batch_call.extract_batch(extractor, [(claim.conversation, claim.prior_attempts) for claim in claims])
    except RateLimitedError as exc:
        return [RateLimitedError(exc.wait_seconds, []) for _ in claims]
    except RetryableAPIError as exc:  # the whole call failed: each ticket's run records it and retries
        return [_own_error(exc, claim) for claim in claims]
    except APIError as exc:  # e.g. a retired model: each ticket asks alone (the model chain moved on)
        return [_alone(extractor, claim, _renumbered(exc.attempts, claim)) for claim in claims]
    batch_id = store_call(app.sessions, run.call, app.clock.now())
    outcomes: list[Outcome] = []
    for claim, item in zip(claims, run.items, strict=True):
        attempt = replace(item.attempt, batch_id=batch_id)
        if item.result is not None:
            item.result.attempts = [attempt]
            outcomes.append(item.result)
        else:
            outcomes.append(_alone(extractor, claim, [attempt]))
    return outcomes


def _alone(extractor: LLMExtractor, claim: lifecycle.Claim, before: list[Attempt]) -> Outcome:
    """``claim``'s single run after ``before`` (its batch attempt), which its outcome's attempts start with."""
    outcome = attempt_extraction(extractor.extract, claim.conversation, [*claim.prior_attempts, *before])
    outcome.attempts = [*before, *outcome.attempts]
    return outcome


def _renumbered(attempts: Sequence[Attempt], claim: lifecycle.Claim) -> list[Attempt]:
    """The batch call's attempts as ``claim``'s run numbers them."""
    start = next_number(claim.prior_attempts)
    return [replace(attempt, n=start + offset) for offset, attempt in enumerate(attempts)]


def _own_error(exc: RetryableAPIError, claim: lifecycle.Claim) -> RetryableAPIError:
    return RetryableAPIError(str(exc), _renumbered(exc.attempts, claim), status_code=exc.status_code,
                             retry_after=exc.retry_after)
