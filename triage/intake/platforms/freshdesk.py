'''``freshdesk``: an automation rule's "Trigger webhook" action with a body *we* define.

Freshdesk signs nothing. The admin adds a custom header ``X-Triage-Secret: <secret>`` to the
action; we compare it in constant time. There is no timestamp and no delivery id: Freshdesk
retries after 5, 30 and 60 minutes, and dedupe on the ticket id is the only replay defence.

Setup (Admin > Workflows > Automations > Ticket creation > New rule): action "Trigger webhook",
request type POST, the intake URL, "Add custom headers" = ``X-Triage-Secret: <secret>``,
encoding JSON, content "Advanced", and exactly :data:`FRESHDESK_RULE_BODY`::

    {
      "event": "ticket_created",
      "ticket_id": "{{ticket.id}}",
      "subject": "{{ticket.subject}}",
      "description": "{{ticket.description_text}}",
      "requester_name": "{{ticket.requester.name}}",
      "requester_email": "{{ticket.requester.email}}"
    }

Raw line breaks or tabs inside the substituted text are tolerated; a placeholder left
unsubstituted (``{{...}}`` in ``ticket_id``) is refused with 400.

>>> import json
>>> body = json.dumps(SAMPLE).encode()
>>> FRESHDESK.verify(FRESHDESK.sign(body, "fd-secret", now=0), body, "fd-secret")
>>> FRESHDESK.parse({}, body).conversation_key
'5123'
'''

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from triage.conversation import Conversation

from .base import (
    BasePlatform,
    IdFields,
    Ignored,
    InboundMessage,
    WebhookAuthError,
    WebhookPayloadError,
    customer_of,
    ident,
    join_text,
    load_json,
    require_header,
    same,
    text_of,
)

SECRET_HEADER = "X-Triage-Secret"
TICKET_CREATED = "ticket_created"

#: The JSON an admin pastes into the Freshdesk rule's "Trigger webhook" action (content: Advanced).
FRESHDESK_RULE_BODY = """{
  "event": "ticket_created",
  "ticket_id": "{{ticket.id}}",
  "subject": "{{ticket.subject}}",
  "description": "{{ticket.description_text}}",
  "requester_name": "{{ticket.requester.name}}",
  "requester_email": "{{ticket.requester.email}}"
}"""

SAMPLE: dict[str, Any] = {
    "event": TICKET_CREATED,
    "ticket_id": "5123",
    "subject": "Package marked delivered but not received",
    "description": "Hi, tracking for order 77812 says delivered yesterday at 2pm, but nothing arrived. "
                   "Neighbours haven't seen it either. Can you resend or refund?",
    "requester_name": "Jane Doe",
    "requester_email": "jane.doe@example.com",
}


@dataclass(frozen=True)
class Freshdesk(BasePlatform):
    name: ClassVar[str] = "freshdesk"
    id_fields: ClassVar[IdFields] = IdFields('"ticket_id"', '"event"', "no delivery id", '"ticket_id"')

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str | None, now: float | None = None) -> None:
        """Compare the shared-secret header in constant time (nothing is signed, ``now`` is unused)."""
        self.check_secret(secret)
        if not same(secret or "", require_header(headers, SECRET_HEADER)):
            raise WebhookAuthError(f"{SECRET_HEADER} does not match")

    def parse(self, headers: Mapping[str, str], body: bytes) -> InboundMessage | Ignored:
        data = load_json(body, strict=False)  # substituted text may carry raw line breaks
        event = data.get("event")
        if not isinstance(event, str) or not event:
            raise WebhookPayloadError('"event" is required: use the rule body documented in FRESHDESK_RULE_BODY')
        if event != TICKET_CREATED:
            return Ignored(f"event {event} is not handled")
        ticket_id = ident(data, "ticket_id")
        if "{{" in ticket_id:
            raise WebhookPayloadError(f'"ticket_id" holds an unsubstituted placeholder: {ticket_id[:40]!r}')
        text = join_text(text_of(data.get("subject")), text_of(data.get("description")))
        if not text:
            return Ignored("no customer text")
        return InboundMessage(
            source=self.name, conversation_key=ticket_id, message_key=TICKET_CREATED, delivery_id=None,
            conversation=Conversation.from_text(text),
            customer=customer_of(name=data.get("requester_name"), email=data.get("requester_email")),
            raw=data, platform_ticket_id=ticket_id)

    def sign(self, body: bytes, secret: str, now: float, delivery_id: str | None = None) -> dict[str, str]:
        """Headers the documented rule sends; ``now`` and ``delivery_id`` are unused."""
        return {"Content-Type": "application/json", SECRET_HEADER: secret}


FRESHDESK = Freshdesk()
