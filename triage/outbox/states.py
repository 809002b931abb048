"""What a delivery is and where it is.

    pending ──claim──▶ delivering ──▶ delivered
       ▲                  │  │ └─────▶ gone       (404 / 410: the target is no more; not retried)
       └── retryable ─────┘  └───────▶ failed     (401/403/409/422..., or writeback.max_attempts spent)
    pending ─────────────────────────▶ superseded (a newer write-back of the ticket replaced it first)

``triage deliveries --retry`` puts a ``failed`` or ``gone`` delivery back to ``pending``.

>>> DeliveryStatus.FAILED in FINAL, DeliveryStatus.PENDING in FINAL
(True, False)
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
    GONE = "gone"                # the target no longer exists (the ticket was deleted there): ended, not retried
    FAILED = "failed"            # refused for good, or out of attempts: last_error says why
    SUPERSEDED = "superseded"    # a newer write-back of the same ticket was recorded before this one ran


#: Statuses nothing changes by itself any more.
FINAL = (DeliveryStatus.DELIVERED, DeliveryStatus.GONE, DeliveryStatus.FAILED, DeliveryStatus.SUPERSEDED)
#: Statuses a person may retry.
RETRYABLE_BY_HAND = (DeliveryStatus.FAILED, DeliveryStatus.GONE)


class AlertTopic(StrEnum):
    P1 = "p1"
    SLA_BREACH = "sla_breach"
