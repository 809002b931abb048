"""What a delivery is and where it is: its statuses and the transitions between them.

    pending ──lease──▶ delivering ──▶ delivered
       ▲                  │  │ │ └───▶ gone       (the platform says the record does not exist; a 410)
       │                  │  │ └─────▶ skipped    (the record takes no change: a closed ticket; no alert)
       └── retryable ─────┘  └───────▶ failed     (refused; misaddressed; the deadline or max_attempts spent)
    pending ─────────────────────────▶ superseded (a newer write-back of the ticket replaced it first)

Transient answers (429, 5xx, timeouts...) go back to ``pending`` until ``writeback.give_up_after_hours``
after the delivery's creation or its last manual retry; answers nobody can classify at most
``writeback.max_attempts`` times. ``triage deliveries --retry ID`` puts a ``failed``, ``gone`` or
``skipped`` delivery back to ``pending``; ``--retry-all`` takes only the ``failed`` ones.

The diagram is :data:`TRANSITIONS`; :func:`transition` refuses a move it does not hold, and
:class:`~triage.outbox.outbox.Outbox` (the one writer of a delivery) makes every move through it.

>>> DeliveryStatus.FAILED in FINAL, DeliveryStatus.SKIPPED in FINAL, DeliveryStatus.PENDING in FINAL
(True, True, False)
>>> transition(DeliveryStatus.PENDING, DeliveryStatus.DELIVERING)
<DeliveryStatus.DELIVERING: 'delivering'>
>>> transition(DeliveryStatus.DELIVERED, DeliveryStatus.PENDING)
Traceback (most recent call last):
...
triage.states.deliveries.DeliveryTransitionError: a delivery that is delivered cannot become pending \
(delivered goes nowhere)
"""

from __future__ import annotations

from enum import StrEnum

from triage.errors import ConflictError


class DeliveryKind(StrEnum):
    WRITEBACK = "writeback"   # the decision written to the helpdesk the conversation came from
    EVENT = "event"           # a signed Standard Webhooks event to one [[events.endpoints]] entry
    ALERT = "alert"           # a message to the [alerts] incoming webhook


class DeliveryStatus(StrEnum):
    PENDING = "pending"          # waiting for its first attempt or its next retry
    DELIVERING = "delivering"    # a worker holds it (a lease) and is sending it
    DELIVERED = "delivered"      # done
    GONE = "gone"                # the platform says the record does not exist: ended, not retried
    SKIPPED = "skipped"          # the record takes no change (a closed ticket): ended, not retried, no alert
    FAILED = "failed"            # refused for good, misaddressed, or out of time or attempts: last_error says why
    SUPERSEDED = "superseded"    # a newer write-back of the same ticket was recorded before this one ran


#: Statuses nothing changes by itself any more.
FINAL = (DeliveryStatus.DELIVERED, DeliveryStatus.GONE, DeliveryStatus.SKIPPED, DeliveryStatus.FAILED,
         DeliveryStatus.SUPERSEDED)
#: Statuses a person may retry (``triage deliveries --retry ID``); ``--retry-all`` takes the failed ones only.
RETRYABLE_BY_HAND = (DeliveryStatus.FAILED, DeliveryStatus.GONE, DeliveryStatus.SKIPPED)
#: Write-backs the platform did not take: the next decision does not count on what they carried.
NOT_APPLIED = (DeliveryStatus.FAILED, DeliveryStatus.GONE, DeliveryStatus.SKIPPED)


_P, _D, _OK, _GONE, _SKIP, _FAIL, _SUP = (DeliveryStatus.PENDING, DeliveryStatus.DELIVERING, DeliveryStatus.DELIVERED,
                                         DeliveryStatus.GONE, DeliveryStatus.SKIPPED, DeliveryStatus.FAILED,
                                         DeliveryStatus.SUPERSEDED)

#: The state machine: where a delivery may go from each status. A ``delivering`` delivery whose lease ran
#: out is leased again (``delivering`` to ``delivering``); a ``pending`` or abandoned one runs out of
#: attempts (``failed``) or is superseded when it is leased; a person's retry brings a failed, gone or
#: skipped one back to ``pending``.
TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    _P: frozenset({_D, _FAIL, _SUP}),
    _D: frozenset({_D, _OK, _GONE, _SKIP, _FAIL, _P, _SUP}),
    _OK: frozenset(),
    _GONE: frozenset({_P}),
    _SKIP: frozenset({_P}),
    _FAIL: frozenset({_P}),
    _SUP: frozenset(),
}


class DeliveryTransitionError(ConflictError):
    """The delivery's status does not allow the move."""


def transition(current: str, target: DeliveryStatus) -> DeliveryStatus:
    """``target``, when a delivery that is ``current`` may go there; :class:`DeliveryTransitionError` otherwise."""
    allowed = TRANSITIONS[DeliveryStatus(current)]
    if target not in allowed:
        where = ", ".join(sorted(allowed)) or "nowhere"
        raise DeliveryTransitionError(f"a delivery that is {current} cannot become {target} ({current} goes {where})")
    return target


class AlertTopic(StrEnum):
    P1 = "p1"
    SLA_BREACH = "sla_breach"
