"""Store a platform's inbound message exactly once, then enqueue it (after the commit).

>>> from triage.conversation import Conversation
>>> intake_keys(InboundMessage("zendesk", "35436", "m1", "01HN", Conversation.from_text("hi")))
['delivery:01HN', 'message:35436:m1']
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from triage.intake.platforms import InboundMessage
from triage.intake.receive import Received, receive


def intake_keys(message: InboundMessage) -> list[str]:
    """The redelivery keys: the platform's delivery id (when it has one) and conversation + message."""
    keys = [f"delivery:{message.delivery_id}"] if message.delivery_id else []
    return [*keys, f"message:{message.conversation_key}:{message.message_key}"]


def accept_inbound(sessions: sessionmaker[Session], message: InboundMessage, enqueue: Callable[[int], None],
                   now: datetime) -> Received:
    """Store ``message`` durably; enqueue its ticket when it needs (re-)triage."""
    received = receive(sessions, message.source, message.conversation_key, message.conversation,
                       intake_keys(message), now, customer=message.customer, raw=message.raw, sent_at=message.sent_at)
    if received.enqueue:
        enqueue(received.ticket_id)
    return received
