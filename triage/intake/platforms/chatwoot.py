"""``chatwoot``: account webhooks from Chatwoot (open source, often self-hosted).

Signature: ``X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>``
with ``X-Chatwoot-Timestamp`` (unix seconds), checked whenever a secret is configured. Installs
that predate signing send neither header and have no secret: they are accepted only with
``allow_unsigned=True`` *and* no secret (with a secret, a request without a signature is refused).

Events: ``message_created`` (only ``message_type`` incoming and not ``private``) and
``conversation_created`` (its incoming messages, if any). The conversation key is
``{account id}:{conversation display id}``; the delivery id is ``X-Chatwoot-Delivery``, else
``{event}:{id}``.

>>> import json
>>> body = json.dumps(SAMPLE).encode()
>>> headers = CHATWOOT.sign(body, "cw-secret", now=1_700_000_000, delivery_id="d-1")
>>> CHATWOOT.verify(headers, body, "cw-secret", now=1_700_000_000)
>>> msg = CHATWOOT.parse(headers, body)
>>> msg.conversation_key, msg.message_key, msg.delivery_id
('1:12', '4821', 'd-1')
>>> Chatwoot(allow_unsigned=True).verify({}, body, None)  # a pre-signing install, explicitly allowed
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from triage.conversation import Conversation, Message

from .base import (
    IdFields,
    Ignored,
    InboundMessage,
    MayBeUnsigned,
    WebhookAuthError,
    WebhookPayloadError,
    check_fresh,
    customer_of,
    derived_id,
    header,
    hmac_digest,
    ident,
    load_json,
    obj,
    object_or_empty,
    optional_ident,
    platform_time,
    require_header,
    same,
    text_of,
    unix_timestamp,
)

SIGNATURE_HEADER = "X-Chatwoot-Signature"
TIMESTAMP_HEADER = "X-Chatwoot-Timestamp"
DELIVERY_HEADER = "X-Chatwoot-Delivery"
INCOMING = ("incoming", 0)  # message_created says "incoming"; conversation messages carry the enum's 0

SAMPLE: dict[str, Any] = {
    "event": "message_created",
    "id": 4821,
    "content": "Hi, my router keeps rebooting every few minutes since this morning. "
               "The power light blinks orange.",
    "content_type": "text",
    "message_type": "incoming",
    "private": False,
    "created_at": "2024-07-23T18:02:49.353Z",
    "source_id": None,
    "sender": {"id": 57, "name": "Jane Doe", "email": "jane.doe@example.com", "type": "contact"},
    "inbox": {"id": 3, "name": "Website"},
    "conversation": {"id": 12, "display_id": 12, "channel": "Channel::WebWidget", "status": "open",
                     "inbox_id": 3, "meta": {"sender": {"id": 57, "email": "jane.doe@example.com"}}},
    "account": {"id": 1, "name": "Acme Inc"},
}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>``."""
    return "sha256=" + hmac_digest(secret.encode(), f"{timestamp}.".encode() + body, "sha256").hex()


@dataclass(frozen=True)
class Chatwoot(MayBeUnsigned):
    name: ClassVar[str] = "chatwoot"
    id_fields: ClassVar[IdFields] = IdFields('"account.id" with "conversation.id"', '"id" (of the message)',
                                             "the X-Chatwoot-Delivery header", '"display_id"', '"account.id"')
    no_secret: ClassVar[str] = ("no webhook secret configured for chatwoot (set one, or allow_unsigned for installs "
                                "that predate webhook signing)")

    def verify_signed(self, headers: Mapping[str, str], body: bytes, secret: str, now: float | None) -> None:
        given = require_header(headers, SIGNATURE_HEADER)
        timestamp = require_header(headers, TIMESTAMP_HEADER)
        check_fresh(unix_timestamp(timestamp, TIMESTAMP_HEADER), now, self.tolerance)
        if not same(signature(secret, timestamp, body), given.lower()):
            raise WebhookAuthError(f"{SIGNATURE_HEADER} does not match")

    def parse(self, headers: Mapping[str, str], body: bytes) -> InboundMessage | Ignored:
        data = load_json(body)
        event = data.get("event")
        if not isinstance(event, str) or not event:
            raise WebhookPayloadError('"event" is required and must be a string')
        if event == "message_created":
            return self._message_created(headers, data)
        if event == "conversation_created":
            return self._conversation_created(headers, data)
        return Ignored(f"event {event} is not handled")

    def _message_created(self, headers: Mapping[str, str], data: dict[str, Any]) -> InboundMessage | Ignored:
        message_id = ident(data, "id")
        conversation = obj(data, "conversation")
        conversation_id = ident(conversation, "id", "conversation.")
        if data.get("private") is True:
            return Ignored("private note")
        if data.get("message_type") not in INCOMING:
            return Ignored(f"{data.get('message_type')} message, not from the customer")
        text = text_of(data.get("content"))
        if not text:
            return Ignored("no customer text")
        sender = object_or_empty(data.get("sender"))
        account_id = _account_id(data, conversation)
        return InboundMessage(
            source=self.name, conversation_key=_key(account_id, conversation_id),
            message_key=message_id,
            delivery_id=header(headers, DELIVERY_HEADER) or f"message_created:{message_id}",
            conversation=Conversation.from_text(text),
            customer=customer_of(id=sender.get("id"), name=sender.get("name"), email=sender.get("email"),
                                 phone=sender.get("phone_number")),
            raw=data, platform_ticket_id=optional_ident(conversation, "display_id") or conversation_id,
            platform_account_id=account_id, sent_at=platform_time(data.get("created_at")))

    def _conversation_created(self, headers: Mapping[str, str], data: dict[str, Any]) -> InboundMessage | Ignored:
        conversation_id = ident(data, "id")
        listed = data.get("messages") or []
        if not isinstance(listed, list):
            raise WebhookPayloadError('"messages" must be a list when given')
        incoming = [m for m in listed if isinstance(m, dict) and m.get("message_type") in INCOMING
                    and m.get("private") is not True and text_of(m.get("content"))]
        if not incoming:
            return Ignored("no customer text")
        meta = object_or_empty(data.get("meta"))
        sender = object_or_empty(meta.get("sender"))
        last = incoming[-1]
        message_key = str(last["id"]) if last.get("id") is not None else derived_id("sha256:", str(last).encode())
        account_id = _account_id(data, last)
        return InboundMessage(
            source=self.name, conversation_key=_key(account_id, conversation_id),
            message_key=message_key,
            delivery_id=header(headers, DELIVERY_HEADER) or f"conversation_created:{conversation_id}",
            conversation=Conversation(tuple(Message("customer", text_of(m.get("content"))) for m in incoming)),
            customer=customer_of(id=sender.get("id"), name=sender.get("name"), email=sender.get("email"),
                                 phone=sender.get("phone_number")),
            raw=data, platform_ticket_id=optional_ident(data, "display_id") or conversation_id,
            platform_account_id=account_id, sent_at=platform_time(incoming[0].get("created_at")))

    def sign(self, body: bytes, secret: str, now: float, delivery_id: str | None = None) -> dict[str, str]:
        """Headers a signing Chatwoot sends (``delivery_id`` defaults to one derived from the body)."""
        timestamp = str(int(now))
        return {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(secret, timestamp, body),
                DELIVERY_HEADER: delivery_id or derived_id("", body)}


def _account_id(data: dict[str, Any], fallback: dict[str, Any]) -> str | None:
    account = data.get("account")
    for value in (account.get("id") if isinstance(account, dict) else None, data.get("account_id"),
                  fallback.get("account_id")):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _key(account_id: str | None, conversation_id: str) -> str:
    return f"{account_id}:{conversation_id}" if account_id else conversation_id


CHATWOOT = Chatwoot()
