"""``intercom``: conversation notifications from an Intercom app's webhooks.

Signature: ``X-Hub-Signature: sha1=<hex HMAC-SHA1(app client secret, raw body)>``. Only the
body is signed, so there is no replay window: dedupe on the notification ``id`` (``notif_...``).

Topics: ``conversation.user.created`` (text = ``data.item.source`` subject + body, HTML made
plain; legacy ``data.item.conversation_message``) and ``conversation.user.replied`` (the latest
customer part of ``data.item.conversation_parts``, else the source). ``ping`` and other topics
are ignored.

>>> import json
>>> body = json.dumps(SAMPLE).encode()
>>> headers = INTERCOM.sign(body, "client-secret", now=0)
>>> INTERCOM.verify(headers, body, "client-secret")
>>> INTERCOM.parse(headers, body).conversation.customer_text()
'My invoice for March shows the Pro plan, but I downgraded to Basic in February.\\nCan you fix it?'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from triage.conversation import Conversation

from .base import (
    SHA1_SIGNATURE_HEADER,
    BasePlatform,
    IdFields,
    Ignored,
    InboundMessage,
    WebhookPayloadError,
    check_sha1_signature,
    customer_of,
    derived_id,
    ident,
    join_text,
    load_json,
    obj,
    optional_ident,
    platform_time,
    sha1_signature,
    text_of,
)
from .htmltext import html_to_text

USER_CREATED = "conversation.user.created"
USER_REPLIED = "conversation.user.replied"
CUSTOMER_AUTHORS = frozenset({"user", "lead", "contact"})

SAMPLE: dict[str, Any] = {
    "type": "notification_event",
    "app_id": "a86dr8yl",
    "topic": USER_CREATED,
    "id": "notif_3f1e2a40-8b7c-4d2e-9a61-5c0b7e2f9d11",
    "created_at": 1700000000,
    "delivery_attempts": 1,
    "data": {"type": "notification_event_data", "item": {
        "type": "conversation",
        "id": "147",
        "created_at": 1700000000,
        "source": {
            "type": "conversation", "id": "403918316", "delivered_as": "customer_initiated", "subject": "",
            "body": "<p>My invoice for March shows the Pro plan, but I downgraded to Basic in February.</p>"
                    "<p>Can you fix it?</p>",
            "author": {"type": "user", "id": "5310d8e7598c9a0b24000002", "name": "Jane Doe",
                       "email": "jane.doe@example.com"},
        },
        "conversation_parts": {"type": "conversation_part.list", "conversation_parts": [], "total_count": 0},
    }},
}


@dataclass(frozen=True)
class Intercom(BasePlatform):
    name: ClassVar[str] = "intercom"
    id_fields: ClassVar[IdFields] = IdFields('"data.item.id"', 'the conversation part\'s or source\'s "id"', '"id"',
                                             platform_account_id='"app_id"')

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str | None, now: float | None = None) -> None:
        """Check the body signature (Intercom signs no timestamp, so ``now`` is unused)."""
        self.check_secret(secret)
        check_sha1_signature(headers, body, secret or "")

    def parse(self, headers: Mapping[str, str], body: bytes) -> InboundMessage | Ignored:
        data = load_json(body)
        topic = data.get("topic")
        if not isinstance(topic, str) or not topic:
            raise WebhookPayloadError('"topic" is required and must be a string')
        if topic == "ping":
            return Ignored("ping")
        if topic not in (USER_CREATED, USER_REPLIED):
            return Ignored(f"topic {topic} is not handled")
        item = obj(obj(data, "data"), "item", "data.")
        conversation_id = ident(item, "id", "data.item.")
        part = _latest_customer_part(item) if topic == USER_REPLIED else None
        if part is not None:
            text, author, sent = html_to_text(text_of(part.get("body"))), part.get("author"), part.get("created_at")
            key = f"part:{part['id']}" if part.get("id") else derived_id("sha256:", text.encode())
        else:
            source = item.get("source") or item.get("conversation_message")
            if not isinstance(source, dict):
                raise WebhookPayloadError('"data.item.source" is required and must be an object')
            text = join_text(html_to_text(text_of(source.get("subject"))), html_to_text(text_of(source.get("body"))))
            key, author = f"source:{source['id']}" if source.get("id") else "source", source.get("author")
            sent = item.get("created_at")
        if not text:
            return Ignored("no customer text")
        author = author if isinstance(author, dict) else {}
        notification_id = data.get("id")
        return InboundMessage(
            source=self.name, conversation_key=conversation_id, message_key=key,
            delivery_id=notification_id if isinstance(notification_id, str) and notification_id else None,
            conversation=Conversation.from_text(text),
            customer=customer_of(id=author.get("id"), name=author.get("name"), email=author.get("email")),
            raw=data, platform_ticket_id=conversation_id, platform_account_id=optional_ident(data, "app_id"),
            sent_at=platform_time(sent))

    def sign(self, body: bytes, secret: str, now: float, delivery_id: str | None = None) -> dict[str, str]:
        """Headers Intercom sends; ``now`` and ``delivery_id`` are unused (the notification id is in the body)."""
        return {"Content-Type": "application/json", SHA1_SIGNATURE_HEADER: sha1_signature(secret, body)}


def _latest_customer_part(item: dict[str, Any]) -> dict[str, Any] | None:
    parts = item.get("conversation_parts")
    listed = parts.get("conversation_parts") if isinstance(parts, dict) else parts
    if not isinstance(listed, list):
        return None
    for part in reversed(listed):
        if not isinstance(part, dict):
            continue
        author = part.get("author")
        if (isinstance(author, dict) and author.get("type") in CUSTOMER_AUTHORS
                and html_to_text(text_of(part.get("body")))):
            return part
    return None


INTERCOM = Intercom()
