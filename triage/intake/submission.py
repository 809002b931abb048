"""A submission: one conversation to triage, parsed and checked, with a clear error when bad.

>>> sub = parse_submission({"source": "shop", "external_id": "A-1", "text": "Wi-Fi is down"})
>>> sub.source, sub.external_id, sub.conversation.customer_text()
('shop', 'A-1', 'Wi-Fi is down')
>>> parse_submission({"source": "shop", "text": "hi"})
Traceback (most recent call last):
...
triage.intake.submission.SubmissionError: "external_id" is required and must be a non-empty string
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from triage.conversation import Conversation, Message
from triage.errors import InputError
from triage.intake.messages import parse_messages
from triage.intake.platforms.base import platform_time
from triage.intake.receive import Arrival, NewConversation, Received, submit

if TYPE_CHECKING:
    from triage.intake.normalise import Normalised


class SubmissionError(InputError):
    """The submission is malformed; the message says which field and why."""


@dataclass(frozen=True)
class Submission:
    source: str
    external_id: str
    conversation: Conversation
    customer: dict[str, Any] | None = None
    #: When the customer wrote (the line's ``created_at``): the SLA counts from it.
    sent_at: datetime | None = None


def _required_string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SubmissionError(f'"{key}" is required and must be a non-empty string')
    return value


def _messages(data: dict[str, Any]) -> tuple[Message, ...]:
    parsed = parse_messages(data, SubmissionError)
    if not any(m.role == "customer" for m in parsed):
        raise SubmissionError('"messages" has no customer message')
    return parsed


def parse_submission(data: object) -> Submission:
    """Check one ``{"source", "external_id", "text" | "messages", "customer"?, "created_at"?}`` object
    (``created_at``: when the customer wrote, ISO 8601 or unix seconds)."""
    if not isinstance(data, dict):
        raise SubmissionError("expected a JSON object")
    source = _required_string(data, "source")
    external_id = _required_string(data, "external_id")
    customer = data.get("customer")
    if customer is not None and not isinstance(customer, dict):
        raise SubmissionError('"customer" must be an object when given')
    created = data.get("created_at")
    sent_at = platform_time(created) if created is not None else None
    if created is not None and sent_at is None:
        raise SubmissionError('"created_at" must be an ISO 8601 time or unix seconds when given')
    return Submission(source, external_id, Conversation(_messages(data)), customer, sent_at)


def new_conversation(normalised: Normalised[Submission], now: datetime) -> NewConversation:
    """The (normalised) submission as a conversation to store (the line is the conversation: no raw copy)."""
    submission = normalised.value
    return NewConversation(submission.source, submission.external_id, submission.conversation,
                           Arrival(now, normalised.repaired, submission.sent_at), submission.customer)


def accept(sessions: sessionmaker[Session], normalised: Normalised[Submission], enqueue: Callable[[int], None],
           now: datetime) -> Received:
    """Store the (normalised) submission, then (after the commit) enqueue its ticket unless it already existed."""
    submission = normalised.value
    received = submit(sessions, submission.source, submission.external_id, submission.conversation, now,
                      customer=submission.customer, repaired=normalised.repaired, sent_at=submission.sent_at)
    if received.enqueue:
        enqueue(received.ticket_id)
    return received
