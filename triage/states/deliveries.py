"""What a delivery is and where it is: its statuses and the transitions between them.

    pending ──claim──▶ delivering ──▶ delivered
       ▲                  │  │ │ └───▶ gone       (the platform says the record does not exist; a 410)
       │                  │  │ └─────▶ skipped    (the record takes no change: a closed ticket; no alert)
       └── retryable ─────┘  └───────▶ failed     (refused; misaddressed; the deadline or max_attempts spent)
    pending ─────────────────────────▶ superseded (a newer write-back of the ticket replaced it first)

Transient answers (429, 5xx, timeouts...) go back to ``pending`` until ``writeback.give_up_after_hours``
after the delivery's creation or its last manual retry; answers nobody can classify at most
``writeback.max_attempts`` times. ``triage deliveries --retry ID`` puts a ``failed``, ``gone`` or
``skipped`` delivery back to ``pending``; ``--retry-all`` takes only the ``failed`` ones.

>>> DeliveryStatus.FAILED in FINAL, DeliveryStatus.SKIPPED in FINAL, DeliveryStatus.PENDING in FINAL
(True, True, False)
"""

from __future__ import annotations

from enum import StrEnum


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


class AlertTopic(StrEnum):
    P1 = "p1"
    SLA_BREACH = "sla_breach"
