"""Store a platform's inbound message exactly once, then enqueue it (after the commit).

Only a normalised message is stored (:func:`triage.intake.normalise.normalise_inbound`): its ids
are checked, its text storable, and the keys built from its ids fit their column.

>>> from triage.conversation import Conversation
>>> intake_keys(InboundMessage("zendesk", "35436", "m1", "01HN", Conversation.from_text("hi")))
['delivery:01HN', 'message:35436:m1']
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from triage.intake.normalise import Normalised, bounded_key
from triage.intake.platforms import InboundMessage
from triage.intake.receive import PlatformIds, Received, receive
from triage.outbox.outbox import Outbox


def intake_keys(message: InboundMessage) -> list[str]:
    """The redelivery keys: the platform's delivery id (when it has one) and conversation + message."""
    keys = [bounded_key("delivery", message.delivery_id)] if message.delivery_id else []
    return [*keys, bounded_key("message", message.conversation_key, message.message_key)]


def accept_inbound(sessions: sessionmaker[Session], normalised: Normalised[InboundMessage],
                   enqueue: Callable[[int], None], now: datetime, *, outbox: Outbox) -> Received:
    """Store the message durably (a new message's decision recorded into ``outbox``); enqueue its ticket when it
    needs (re-)triage."""
    message = normalised.value
    received = receive(sessions, message.source, message.conversation_key, message.conversation,
                       intake_keys(message), now, customer=message.customer, raw=message.raw,
                       repaired=normalised.repaired, sent_at=message.sent_at,
                       platform=PlatformIds(message.platform_ticket_id, message.platform_account_id), outbox=outbox)
    if received.enqueue:
        enqueue(received.ticket_id)
    return received
