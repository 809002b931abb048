"""Ticket statuses, fallback reasons and audit event kinds, and the transitions allowed between statuses.

The table :data:`TRANSITIONS` is the whole state machine: for each :class:`Action`, the statuses
it may start from and where each one goes. :mod:`triage.tickets.lifecycle` applies it to every
status change; a transition the table does not hold raises :class:`TransitionError`::

    queued ──lease──▶ processing ──finish──▶ routed ──resolve──▶ resolved
      ▲                 │  │  │               │                    │
      │ release_for_retry  │  └─send_to_fallback─▶ fallback ──finish_fallback──▶ needs_review
      │ / requeue          └──hold_for_review (a suspected injection on a P1 route) ──▶ needs_review
      │                                              routed ──confirm (a suggestion) ──▶ corrected
      └──────── reprocess / reextract / a new customer message (a new extraction run) ◀┘

Reopening: a new customer message on a ``resolved`` ticket reopens it (``queued``, a new run),
even when a person had corrected it before it was resolved; on an open ``corrected`` ticket the
message is appended without a new extraction.

>>> transition(Action.RESOLVE, Status.ROUTED)
Transition(target=<Status.RESOLVED: 'resolved'>, new_run=False)
>>> transition(Action.FINISH, Status.QUEUED)
Traceback (most recent call last):
...
triage.states.tickets.TransitionError: cannot finish a ticket that is queued (allowed from: processing)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus

from triage.errors import ConflictError

#: The extractor recorded when a person set the fields.
HUMAN_EXTRACTOR = "human"


class ExtractionFailure(StrEnum):
    """Why an extractor returned no ticket (a ticket's fallback reasons include these)."""

    INVALID_AFTER_ATTEMPTS = "invalid_after_attempts"  # every answer was unparseable, invalid or cut off
    RULES_INVALID = "rules_invalid"                    # the rules extractor could not fill the schema
    AMBIGUOUS_ANSWER = "ambiguous_answer"              # still several objects that route differently after the re-ask


class AttemptOutcome(StrEnum):
    """How one call to the LLM went (:attr:`triage.extraction.types.Attempt.outcome`, stored in ``attempts``)."""

    VALID = "valid"
    INVALID = "invalid"
    UNPARSEABLE = "unparseable"
    TRUNCATED = "truncated"
    AMBIGUOUS = "ambiguous"            # objects that validate disagree on a routing field (re-asked once for one)
    API_ERROR = "api_error"
    BATCH_UNUSABLE = "batch_unusable"  # a batch answer had no usable item for the conversation (missing, twice...)


class Status(StrEnum):
    QUEUED = "queued"              # stored, its extraction message published (or due)
    PROCESSING = "processing"      # a worker holds it (lease)
    FALLBACK = "fallback"          # extraction failed: waiting for the fallback queue's rules pass
    ROUTED = "routed"              # extracted and routed automatically
    NEEDS_REVIEW = "needs_review"  # routed to a person (manual-review) because automation could not decide
    CORRECTED = "corrected"        # a person set the fields; no automatic step touches it again
    RESOLVED = "resolved"          # closed by a person; only a new customer message reopens it


#: Tickets a team still has to handle: their SLA clock runs.
OPEN = (Status.ROUTED, Status.NEEDS_REVIEW, Status.CORRECTED)
#: Tickets with an outcome (for waiting on a run to end).
FINISHED = (*OPEN, Status.RESOLVED)


class FallbackReason(StrEnum):
    """Why a ticket left automatic routing (stored in ``fallback_reason``); an extractor's own failures
    (:class:`ExtractionFailure`) are among them."""

    INVALID_AFTER_ATTEMPTS = ExtractionFailure.INVALID_AFTER_ATTEMPTS.value
    RULES_INVALID = ExtractionFailure.RULES_INVALID.value
    AMBIGUOUS_ANSWER = ExtractionFailure.AMBIGUOUS_ANSWER.value
    INJECTION_SUSPECTED = "injection_suspected"        # the model's answer would put a flagged ticket on a P1 route
    LOW_CONFIDENCE = "low_confidence"                  # the ticket's confidence is below its route's review_below
    REVIEW_ROUTE = "review_route"                      # its route's autonomy level is review
    INTERNAL_ERROR = "internal_error"                  # an unexpected exception in a task (its type and message kept)
    RETRIES_EXHAUSTED = "retries_exhausted"            # 429/5xx/timeouts past retry.max_retries
    POISON = "poison"                                  # re-enqueued jobs.max_requeues times without finishing
    API_ERROR = "api_error"                            # a non-retryable API error of another status
    API_ERROR_400 = "api_error_400"
    API_ERROR_401 = "api_error_401"
    API_ERROR_402 = "api_error_402"
    API_ERROR_403 = "api_error_403"
    API_ERROR_404 = "api_error_404"
    API_ERROR_421 = "api_error_421"
    API_ERROR_429 = "api_error_429"
    API_ERROR_500 = "api_error_500"
    API_ERROR_502 = "api_error_502"
    API_ERROR_503 = "api_error_503"
    API_ERROR_504 = "api_error_504"

    @classmethod
    def for_api_status(cls, status_code: int | None) -> FallbackReason:
        """``api_error_<status>`` for the statuses MiMo documents, else ``api_error``.

        >>> FallbackReason.for_api_status(401), FallbackReason.for_api_status(418)
        (<FallbackReason.API_ERROR_401: 'api_error_401'>, <FallbackReason.API_ERROR: 'api_error'>)
        """
        try:
            return cls(f"{cls.API_ERROR.value}_{HTTPStatus(status_code).value}") if status_code else cls.API_ERROR
        except ValueError:
            return cls.API_ERROR


class Flag(StrEnum):
    """A ticket's flags (``tickets.flags``): something about how it was read that a person should see."""

    TEXT_REPAIRED = "text_repaired"                # intake removed NUL or replaced lone surrogates
    INJECTION_SUSPECTED = "injection_suspected"    # the customer text holds instruction-like text aimed at the model


class EventKind(StrEnum):
    """The ``kind`` of an audit event."""

    ROUTED = "routed"
    FALLBACK = "fallback"
    NEEDS_REVIEW = "needs_review"
    CORRECTED = "corrected"
    CONFIRMED = "confirmed"
    ASSIGNED = "claimed"
    RELEASED = "released"
    REPROCESS = "reprocess"
    RETRY_FALLBACK = "retry-fallback"
    NEW_MESSAGE = "new_message"
    REOPENED = "reopened"
    RESOLVED = "resolved"
    #: A person changed the ticket's group or priority in the helpdesk triage wrote it to: a review label
    #: (triage.intake.labels); the ticket itself is left as it was and nothing is written back.
    HELPDESK_REVIEW = "helpdesk_review"


#: The audit events that are a person's review of a ticket's fields (labels for learning, accuracy, calibration).
REVIEW_KINDS = (EventKind.CORRECTED, EventKind.RESOLVED, EventKind.CONFIRMED, EventKind.HELPDESK_REVIEW)


class Action(StrEnum):
    LEASE = "lease"                          # a worker takes a queued ticket (or one whose lease ran out)
    LEASE_FALLBACK = "lease_fallback"        # the fallback task takes a fallback ticket
    RENEW = "renew"                          # a worker extends its lease while it works
    FINISH = "finish"                        # a valid extraction is stored with its route
    SEND_TO_FALLBACK = "send_to_fallback"    # extraction failed for good
    FINISH_FALLBACK = "finish_fallback"      # the rules ticket is stored for a person
    HOLD_FOR_REVIEW = "hold_for_review"      # the model's ticket is stored, but for a person (a suspected injection)
    RELEASE_FOR_RETRY = "release_for_retry"  # back to the queue until a retry is due
    REQUEUE = "requeue"                      # the sweep takes back a ticket whose worker's lease ran out
    POISON = "poison"                        # the sweep gives up on a ticket that never finishes
    CORRECT = "correct"                      # a person sets the fields
    ASSIGN = "assign"                        # a person takes the ticket (its assignment)
    UNASSIGN = "unassign"                    # the holder releases it
    REPROCESS = "reprocess"                  # a person sends it through extraction again
    REEXTRACT = "reextract"                  # a job does (new schema or prompt, one fresh pass)
    APPEND_MESSAGE = "append_message"        # the customer wrote again
    RESOLVE = "resolve"                      # a person closes it
    CONFIRM = "confirm"                      # a person confirms a suggestion as it is (a review)


@dataclass(frozen=True)
class Transition:
    """Where an action takes a ticket; ``new_run`` starts a new extraction run (the old one's lease dies)."""

    target: Status
    new_run: bool = False


Q, P, F, R, N, C, X = (Status.QUEUED, Status.PROCESSING, Status.FALLBACK, Status.ROUTED, Status.NEEDS_REVIEW,
                       Status.CORRECTED, Status.RESOLVED)
_RERUN = Transition(Q, new_run=True)
_NOT_RESOLVED = (Q, P, F, R, N, C)

#: The state machine. A ``processing`` (or ``fallback``) ticket is leasable only once its lease ran out:
#: that condition is the lease's, checked where the lease is made.
TRANSITIONS: dict[Action, dict[Status, Transition]] = {
    Action.LEASE: {Q: Transition(P), P: Transition(P)},
    Action.LEASE_FALLBACK: {F: Transition(F)},
    Action.RENEW: {P: Transition(P), F: Transition(F)},
    Action.FINISH: {P: Transition(R)},
    Action.SEND_TO_FALLBACK: {P: Transition(F)},
    Action.FINISH_FALLBACK: {F: Transition(N)},
    Action.HOLD_FOR_REVIEW: {P: Transition(N)},
    Action.RELEASE_FOR_RETRY: {P: Transition(Q)},
    Action.REQUEUE: {P: Transition(Q), F: Transition(F)},
    Action.POISON: {Q: Transition(N), P: Transition(N), F: Transition(N)},
    Action.CORRECT: {status: Transition(C) for status in _NOT_RESOLVED},
    Action.ASSIGN: {status: Transition(status) for status in Status},
    Action.UNASSIGN: {status: Transition(status) for status in Status},
    Action.REPROCESS: dict.fromkeys(_NOT_RESOLVED, _RERUN),
    Action.REEXTRACT: {R: _RERUN, N: _RERUN},
    # queued: its coming extraction reads the new text; corrected: a person owns the fields.
    Action.APPEND_MESSAGE: {Q: Transition(Q), P: _RERUN, F: _RERUN, R: _RERUN, N: _RERUN, C: Transition(C),
                            X: _RERUN},
    Action.RESOLVE: {R: Transition(X), N: Transition(X), C: Transition(X)},
    # a suggestion a person confirmed is theirs, as a correction that changed nothing
    Action.CONFIRM: {R: Transition(C)},
}


class TransitionError(ConflictError):
    """The ticket's status does not allow the action."""


def transition(action: Action, current: str) -> Transition:
    """Where ``action`` takes a ticket that is ``current``; :class:`TransitionError` when it may not."""
    allowed = TRANSITIONS[action]
    found = allowed.get(Status(current))
    if found is None:
        sources = ", ".join(allowed) or "nothing"
        raise TransitionError(f"cannot {action.value.replace('_', ' ')} a ticket that is {current} "
                              f"(allowed from: {sources})")
    return found


def sources(action: Action) -> tuple[Status, ...]:
    """The statuses ``action`` may start from (for conditional UPDATEs).

    >>> sources(Action.LEASE)
    (<Status.QUEUED: 'queued'>, <Status.PROCESSING: 'processing'>)
    """
    return tuple(TRANSITIONS[action])


def single_target(action: Action) -> Status:
    """The one status ``action`` leads to from every source (for actions applied by a conditional UPDATE).

    >>> single_target(Action.LEASE)
    <Status.PROCESSING: 'processing'>
    """
    (target,) = {step.target for step in TRANSITIONS[action].values()}
    return target
