"""One extraction run of leased tickets, without Celery: what each one's outcome is.

A recent identical conversation's extraction is reused (:func:`dedupe_lookup`: no LLM call);
otherwise a ticket is asked alone (:func:`single`), or several in one batch call
(:func:`batch`), where every item that was not valid is asked again alone after it. The tasks
(:mod:`triage.worker.tasks`) lease the tickets, ask the policy what each outcome means and apply it.
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


def single(app: App, lease: lifecycle.Lease) -> Outcome:
    """A recent identical conversation's extraction reused (no LLM call), else the extractor's run, keyed."""
    lookup = dedupe_lookup(app, lease.ticket_id, lease.conversation)
    if lookup is not None and lookup.reused is not None:
        return lookup.reused
    outcome = attempt_extraction(app.extractor.extract, lease.conversation, lease.prior_attempts)
    return outcome if lookup is None else dedupe.keyed(outcome, lookup.key)


def batch(app: App, leases: Sequence[lifecycle.Lease]) -> list[Outcome]:
    """One batch call for ``leases`` (a lone lease: its single run), then each invalid item alone."""
    extractor = app.llm
    if len(leases) == 1:
        return [attempt_extraction(extractor.extract, leases[0].conversation, leases[0].prior_attempts)]
    try:
        run = batch_call.extract_batch(extractor, [(lease.conversation, lease.prior_attempts) for lease in leases])
    except RateLimitedError as exc:
        return [RateLimitedError(exc.wait_seconds, []) for _ in leases]
    except RetryableAPIError as exc:  # the whole call failed: each ticket's run records it and retries
        return [_own_error(exc, lease) for lease in leases]
    except APIError as exc:  # e.g. a retired model: each ticket asks alone (the model chain moved on)
        return [_alone(extractor, lease, _renumbered(exc.attempts, lease)) for lease in leases]
    batch_id = store_call(app.sessions, run.call, app.clock.now())
    outcomes: list[Outcome] = []
    for lease, item in zip(leases, run.items, strict=True):
        attempt = replace(item.attempt, batch_id=batch_id)
        if item.result is not None:
            item.result.attempts = [attempt]
            outcomes.append(item.result)
        else:
            outcomes.append(_alone(extractor, lease, [attempt]))
    return outcomes


def _alone(extractor: LLMExtractor, lease: lifecycle.Lease, before: list[Attempt]) -> Outcome:
    """``lease``'s single run after ``before`` (its batch attempt), which its outcome's attempts start with."""
    outcome = attempt_extraction(extractor.extract, lease.conversation, [*lease.prior_attempts, *before])
    outcome.attempts = [*before, *outcome.attempts]
    return outcome


def _renumbered(attempts: Sequence[Attempt], lease: lifecycle.Lease) -> list[Attempt]:
    """The batch call's attempts as ``lease``'s run numbers them."""
    start = next_number(lease.prior_attempts)
    return [replace(attempt, n=start + offset) for offset, attempt in enumerate(attempts)]


def _own_error(exc: RetryableAPIError, lease: lifecycle.Lease) -> RetryableAPIError:
    return RetryableAPIError(str(exc), _renumbered(exc.attempts, lease), status_code=exc.status_code,
                             retry_after=exc.retry_after)
