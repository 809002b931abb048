"""``zammad``: a trigger's webhook with Zammad's default ``{ticket, article}`` payload.

Signature: ``X-Hub-Signature: sha1=<hex HMAC-SHA1(token, raw body)>``, sent only when the
webhook has a "HMAC SHA1 Signature Token". Only the body is signed (no replay window): dedupe on
``X-Zammad-Delivery`` or the article id. Without a token, requests are accepted only with
``allow_unsigned=True`` and no secret configured.

Only customer articles count (``article.sender == "Customer"``, not ``internal``); text is
``ticket.title`` + ``article.body`` (HTML made plain when ``content_type`` is ``text/html``).

>>> import json
>>> body = json.dumps(SAMPLE).encode()
>>> headers = ZAMMAD.sign(body, "zammad-token", now=0, delivery_id="0b6c2a1e")
>>> ZAMMAD.verify(headers, body, "zammad-token")
>>> msg = ZAMMAD.parse(headers, body)
>>> msg.conversation_key, msg.message_key, msg.delivery_id
('5', '104', '0b6c2a1e')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from triage.conversation import Conversation

from .base import (
    SHA1_SIGNATURE_HEADER,
    IdFields,
    Ignored,
    InboundMessage,
    MayBeUnsigned,
    check_sha1_signature,
    customer_of,
    derived_id,
    header,
    ident,
    join_text,
    load_json,
    obj,
    object_or_empty,
    platform_time,
    sha1_signature,
    text_of,
)
from .htmltext import html_to_text

DELIVERY_HEADER = "X-Zammad-Delivery"
TRIGGER_HEADER = "X-Zammad-Trigger"

SAMPLE: dict[str, Any] = {
    "ticket": {
        "id": 5, "number": "31005", "title": "Washing machine error E21",
        "group": "Support", "state": "new", "priority": "2 normal", "customer_id": 17,
        "customer": {"id": 17, "email": "jane.doe@example.com", "firstname": "Jane", "lastname": "Doe"},
        "created_at": "2024-05-02T09:14:03.116Z",
    },
    "article": {
        "id": 104, "ticket_id": 5, "type": "email", "sender": "Customer", "internal": False,
        "from": "Jane Doe <jane.doe@example.com>", "subject": "Washing machine error E21",
        "content_type": "text/html",
        "body": "<div>Hello,</div><div>my washing machine stops mid-cycle and shows error E21. "
                "It is 8 months old, model WM-800.</div>",
        "created_at": "2024-05-02T09:14:03.116Z",
    },
}


@dataclass(frozen=True)
class Zammad(MayBeUnsigned):
    name: ClassVar[str] = "zammad"
    id_fields: ClassVar[IdFields] = IdFields('"ticket.id"', '"article.id"', "the X-Zammad-Delivery header",
                                             '"ticket.id"')
    no_secret: ClassVar[str] = ("no webhook token configured for zammad (set one on the webhook and here, "
                                "or allow_unsigned)")

    def verify_signed(self, headers: Mapping[str, str], body: bytes, secret: str, now: float | None) -> None:
        """Check the body signature (Zammad signs no timestamp, so ``now`` is unused)."""
        check_sha1_signature(headers, body, secret)

    def parse(self, headers: Mapping[str, str], body: bytes) -> InboundMessage | Ignored:
        data = load_json(body)
        ticket = obj(data, "ticket")
        ticket_id = ident(ticket, "id", "ticket.")
        article = data.get("article")
        if not isinstance(article, dict) or not article:
            return Ignored("trigger carried no article")
        article_id = ident(article, "id", "article.")
        if article.get("sender") != "Customer":
            return Ignored(f"article from {article.get('sender')!s}, not the customer")
        if article.get("internal") is True:
            return Ignored("internal note")
        body_text = text_of(article.get("body"))
        if str(article.get("content_type") or "").lower().startswith("text/html"):
            body_text = html_to_text(body_text)
        if not body_text:
            return Ignored("no customer text")
        text = join_text(text_of(ticket.get("title")), body_text)
        person = object_or_empty(ticket.get("customer"))
        name = " ".join(text_of(person.get(k)) for k in ("firstname", "lastname")).strip()
        return InboundMessage(
            source=self.name, conversation_key=ticket_id, message_key=article_id,
            delivery_id=header(headers, DELIVERY_HEADER) or None,
            conversation=Conversation.from_text(text),
            customer=customer_of(id=person.get("id", ticket.get("customer_id")), name=name,
                                 email=person.get("email")),
            raw=data, platform_ticket_id=ticket_id, sent_at=platform_time(article.get("created_at")))

    def sign(self, body: bytes, secret: str, now: float, delivery_id: str | None = None) -> dict[str, str]:
        """Headers Zammad sends with a token set (``delivery_id`` defaults to one derived from the body)."""
        return {"Content-Type": "application/json", "User-Agent": "Zammad User Agent",
                TRIGGER_HEADER: "triage", DELIVERY_HEADER: delivery_id or derived_id("", body),
                SHA1_SIGNATURE_HEADER: sha1_signature(secret, body)}


ZAMMAD = Zammad()
