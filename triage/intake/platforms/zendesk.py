"""``zendesk``: event webhooks for new tickets and messaging (chat) messages.

Signature: ``X-Zendesk-Webhook-Signature`` = base64(HMAC-SHA256(signing secret,
``X-Zendesk-Webhook-Signature-Timestamp`` header text + raw body)); the timestamp is ISO-8601.

Events: ``zen:event-type:ticket.created`` (text = ``detail.subject`` + ``detail.description``)
and ``zen:event-type:messaging_ticket.message_added`` (``event.message.body``, only when
``event.actor.type`` is ``end_user``) are customer messages. ``zen:event-type:ticket.group_assignment_changed``
and ``zen:event-type:ticket.priority_changed`` are a person's (or a bot's) change of the ticket:
``event.previous`` / ``event.current`` hold the old and new group id or priority, ``detail`` the ticket
after the change and ``detail.actor_id`` who made it (developer.zendesk.com/api-reference/webhooks/
event-types/ticket-events); they become a :class:`~triage.intake.platforms.base.HelpdeskChange`, which
:mod:`triage.intake.labels` may take as a review label. Anything else is ignored. The event ``id`` is
the delivery id.

>>> import json
>>> body = json.dumps(SAMPLE).encode()
>>> headers = ZENDESK.sign(body, "zd-secret", now=1_713_374_290)
>>> headers["X-Zendesk-Webhook-Signature-Timestamp"]
'2024-04-17T17:18:10Z'
>>> ZENDESK.verify(headers, body, "zd-secret", now=1_713_374_290)
>>> ZENDESK.parse(headers, body).conversation_key
'35436'
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from triage.conversation import Conversation

from .base import (
    BasePlatform,
    HelpdeskChange,
    IdFields,
    Ignored,
    InboundMessage,
    WebhookAuthError,
    WebhookPayloadError,
    check_fresh,
    customer_of,
    hmac_digest,
    ident,
    join_text,
    load_json,
    obj,
    optional_ident,
    platform_time,
    require_header,
    same,
    text_of,
)

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
TICKET_CREATED = "zen:event-type:ticket.created"
MESSAGE_ADDED = "zen:event-type:messaging_ticket.message_added"
GROUP_CHANGED = "zen:event-type:ticket.group_assignment_changed"
PRIORITY_CHANGED = "zen:event-type:ticket.priority_changed"
#: The change events, and what each one changes.
CHANGES: dict[str, Literal["group", "priority"]] = {GROUP_CHANGED: "group", PRIORITY_CHANGED: "priority"}

SAMPLE: dict[str, Any] = {
    "type": TICKET_CREATED,
    "account_id": 22129848,
    "id": "01HVPZ5T4Q8X2JX6Y7M9N0B1C2",
    "time": "2024-04-17T17:18:10Z",
    "zendesk_event_version": "2022-11-06",
    "subject": "zen:ticket:35436",
    "detail": {
        "id": "35436",
        "subject": "Refund for a double charge",
        "description": "Hello, I was charged twice for order #88231 on April 15. "
                       "Please refund the duplicate payment of $49.99.",
        "requester_id": "8537190016125",
        "status": "OPEN",
        "via": {"channel": "web"},
    },
}

MESSAGING_SAMPLE: dict[str, Any] = {
    "type": MESSAGE_ADDED,
    "account_id": 22129848,
    "id": "01JQMQH83YNAKWSWJ8B1QH2NSC",
    "time": "2025-02-11T14:32:05.254571515Z",
    "zendesk_event_version": "2022-11-06",
    "subject": "zen:ticket:141",
    "detail": {"id": "141"},
    "event": {
        "actor": {"id": "8537190016125", "name": "Jane Doe", "type": "end_user"},
        "conversation_id": "67ab5f53a96f98663935c3f2",
        "message": {"body": "The app logs me out every time I open the orders page.",
                    "id": "67ab5f55155becd183e284cb"},
    },
}


#: A group change in the shape Zendesk documents for ticket events (the values are made up).
GROUP_CHANGED_SAMPLE: dict[str, Any] = {
    "type": GROUP_CHANGED,
    "account_id": 22129848,
    "id": "9b1f5c9e-3d7a-4b8e-9a51-2f0c6d4e8a17",
    "time": "2024-04-17T18:02:41.118235104Z",
    "zendesk_event_version": "2022-11-06",
    "subject": "zen:ticket:35436",
    "detail": {
        "actor_id": "8537190099001", "assignee_id": None, "brand_id": "360000122341",
        "created_at": "2024-04-17T17:18:10Z", "custom_status": "360000877411",
        "description": "Hello, I was charged twice for order #88231 on April 15.", "external_id": None,
        "form_id": "360000431372", "group_id": "360002", "id": "35436", "is_public": True,
        "organization_id": None, "priority": "HIGH", "requester_id": "8537190016125", "status": "OPEN",
        "subject": "Refund for a double charge", "submitter_id": "8537190016125", "tags": ["billing"],
        "type": "QUESTION", "updated_at": "2024-04-17T18:02:41Z", "via": {"channel": "web_service"},
    },
    "event": {"current": "360002", "previous": "360001"},
}


def parse_timestamp(value: str) -> float:
    """Unix seconds of an ISO-8601 timestamp (naive means UTC; >6 fractional digits allowed)."""
    moment = platform_time(value)
    if moment is None:
        raise WebhookAuthError(f"{TIMESTAMP_HEADER} is not ISO-8601: {value[:40]!r}")
    return moment.timestamp()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, timestamp + body))."""
    return base64.b64encode(hmac_digest(secret.encode(), timestamp.encode() + body, "sha256")).decode()


@dataclass(frozen=True)
class Zendesk(BasePlatform):
    name: ClassVar[str] = "zendesk"
    id_fields: ClassVar[IdFields] = IdFields('"detail.id"', '"event.message.id"', '"id"',
                                             platform_account_id='"account_id"')

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str | None, now: float | None = None) -> None:
        self.check_secret(secret)
        given = require_header(headers, SIGNATURE_HEADER)
        timestamp = require_header(headers, TIMESTAMP_HEADER)
        check_fresh(parse_timestamp(timestamp), now, self.tolerance)
        if not same(signature(secret or "", timestamp, body), given):
            raise WebhookAuthError(f"{SIGNATURE_HEADER} does not match")

    def parse(self, headers: Mapping[str, str], body: bytes) -> InboundMessage | HelpdeskChange | Ignored:
        data = load_json(body)
        kind = data.get("type")
        if not isinstance(kind, str) or not kind:
            raise WebhookPayloadError('"type" is required and must be a string')
        if kind == TICKET_CREATED:
            return self._ticket_created(data)
        if kind == MESSAGE_ADDED:
            return self._message_added(data)
        if kind in CHANGES:
            return self._changed(data, CHANGES[kind])
        return Ignored(f"event type {kind} is not handled")

    def _changed(self, data: dict[str, Any], change: Literal["group", "priority"]) -> HelpdeskChange:
        """A group or priority change: who (``detail.actor_id``), on which ticket, from what to what."""
        detail = obj(data, "detail")
        event = obj(data, "event")
        values = [_changed_value(event, name, change) for name in ("previous", "current")]
        event_id = data.get("id")
        return HelpdeskChange(source=self.name, platform_ticket_id=ident(detail, "id", "detail."), change=change,
                              previous=values[0], current=values[1], actor_id=ident(detail, "actor_id", "detail."),
                              delivery_id=str(event_id) if isinstance(event_id, str | int) and str(event_id) else None,
                              at=platform_time(data.get("time")))

    def _ticket_created(self, data: dict[str, Any]) -> InboundMessage | Ignored:
        detail = obj(data, "detail")
        ticket_id = ident(detail, "id", "detail.")
        text = join_text(text_of(detail.get("subject")), text_of(detail.get("description")))
        if not text:
            return Ignored("no customer text")
        return self._message(data, ticket_id, "ticket.created", text, customer_of(id=detail.get("requester_id")),
                             detail.get("created_at"))

    def _message_added(self, data: dict[str, Any]) -> InboundMessage | Ignored:
        event = obj(data, "event")
        actor = obj(event, "actor", "event.")
        message = obj(event, "message", "event.")
        ticket_id = _ticket_id(data)
        if actor.get("type") != "end_user":
            return Ignored(f"message from {actor.get('type')!s}, not an end user")
        text = text_of(message.get("body"))
        if not text:
            return Ignored("no customer text")
        customer = customer_of(id=actor.get("id"), name=actor.get("name"))
        return self._message(data, ticket_id, ident(message, "id", "event.message."), text, customer)

    def _message(self, data: dict[str, Any], ticket_id: str, message_key: str, text: str,
                 customer: dict[str, Any] | None, sent: object = None) -> InboundMessage:
        """The message; it was written at ``sent`` when the payload says, else at the event's ``time``."""
        event_id = data.get("id")
        return InboundMessage(
            source=self.name, conversation_key=ticket_id, message_key=message_key,
            delivery_id=str(event_id) if isinstance(event_id, str | int) and str(event_id) else None,
            conversation=Conversation.from_text(text), customer=customer, raw=data,
            platform_ticket_id=ticket_id, platform_account_id=optional_ident(data, "account_id"),
            sent_at=platform_time(sent) or platform_time(data.get("time")))

    def sign(self, body: bytes, secret: str, now: float, delivery_id: str | None = None) -> dict[str, str]:
        """Headers Zendesk sends; ``delivery_id`` is unused (Zendesk's event id is in the body)."""
        timestamp = datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(secret, timestamp, body)}


def _changed_value(event: dict[str, Any], name: str, change: str) -> str | None:
    """``event.previous`` or ``event.current`` of a change: a group id or a priority (in lower case: Zendesk
    writes ``HIGH``), None when unset; anything else is refused.

    >>> _changed_value({"current": "HIGH"}, "current", "priority"), _changed_value({}, "previous", "group")
    ('high', None)
    """
    value = event.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise WebhookPayloadError(f'"event.{name}" of a {change} change must be a string, an integer or null')
    text = str(value).strip()
    return text.lower() if change == "priority" else text


def _ticket_id(data: dict[str, Any]) -> str:
    detail = data.get("detail")
    if isinstance(detail, dict) and detail.get("id") not in (None, ""):
        return ident(detail, "id", "detail.")
    subject = data.get("subject")
    if isinstance(subject, str) and subject.startswith("zen:ticket:") and subject[len("zen:ticket:"):]:
        return subject[len("zen:ticket:"):]
    raise WebhookPayloadError('"detail.id" or a "subject" of "zen:ticket:<id>" is required')


ZENDESK = Zendesk()
