"""``generic``: any producer that signs per the Standard Webhooks spec v1.

Headers ``webhook-id``, ``webhook-timestamp`` (unix seconds) and ``webhook-signature`` (a
space-separated list of ``v1,<base64>``; other or malformed entries are skipped). The signature
is HMAC-SHA256, keyed by the base64 bytes after ``whsec_``, over ``{id}.{timestamp}.{body}``
(:mod:`triage.standard_webhooks`, shared with the outbound events).

Body: ``{"external_id": str, "text": str}`` or ``{"external_id": str, "messages": [{"role":
"customer"|"agent", "text": str}, ...]}``, plus optional ``"customer": {...}`` and
``"message_id": str`` (dedupe key; defaults to ``webhook-id``, which is stable across retries).

>>> body = b'{"external_id": "A-1", "text": "My router keeps rebooting"}'
>>> secret = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="
>>> headers = GENERIC.sign(body, secret, now=1_700_000_000, delivery_id="msg_1")
>>> GENERIC.verify(headers, body, secret, now=1_700_000_100)
>>> msg = GENERIC.parse(headers, body)
>>> msg.conversation_key, msg.message_key, msg.conversation.customer_text()
('A-1', 'msg_1', 'My router keeps rebooting')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from triage.conversation import Conversation
from triage.intake.messages import parse_messages
from triage.standard_webhooks import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SecretFormatError,
    secret_key,
    signature,
    signed_headers,
)

from .base import (
    BasePlatform,
    IdFields,
    Ignored,
    InboundMessage,
    WebhookAuthError,
    WebhookConfigError,
    WebhookPayloadError,
    check_fresh,
    derived_id,
    header,
    load_json,
    require_header,
    same,
    unix_timestamp,
)

SAMPLE: dict[str, Any] = {
    "external_id": "ORDER-10023",
    "messages": [
        {"role": "customer", "text": "Hi, my smart speaker won't connect to Wi-Fi since yesterday's update. "
                                     "I've restarted it three times. Order ORDER-10023."},
        {"role": "agent", "text": "Sorry to hear that! Which app version are you on?"},
        {"role": "customer", "text": "Version 4.2.1 on Android. It still fails at the pairing step."},
    ],
    "customer": {"email": "jane.doe@example.com", "name": "Jane Doe"},
}


@dataclass(frozen=True)
class Generic(BasePlatform):
    name: ClassVar[str] = "generic"
    id_fields: ClassVar[IdFields] = IdFields('"external_id"', '"message_id" (or the webhook-id header)',
                                             "the webhook-id header")

    def check_secret(self, secret: str | None) -> None:
        super().check_secret(secret)
        try:
            secret_key(secret or "")
        except SecretFormatError as exc:
            raise WebhookConfigError(f"generic webhook secret: {exc}") from None

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str | None, now: float | None = None) -> None:
        self.check_secret(secret)
        msg_id = require_header(headers, ID_HEADER)
        timestamp = require_header(headers, TIMESTAMP_HEADER)
        given = require_header(headers, SIGNATURE_HEADER)
        check_fresh(unix_timestamp(timestamp, "webhook-timestamp"), now, self.tolerance)
        expected = signature(secret or "", msg_id, timestamp, body)
        if not any(same(expected, entry) for entry in given.split() if entry.startswith("v1,")):
            raise WebhookAuthError("no valid v1 signature in webhook-signature")

    def parse(self, headers: Mapping[str, str], body: bytes) -> InboundMessage | Ignored:
        data = load_json(body)
        external_id = data.get("external_id")
        if not isinstance(external_id, str) or not external_id.strip():
            raise WebhookPayloadError('"external_id" is required and must be a non-empty string')
        customer = data.get("customer")
        if customer is not None and not isinstance(customer, dict):
            raise WebhookPayloadError('"customer" must be an object when given')
        message_id = data.get("message_id")
        if message_id is not None and (not isinstance(message_id, str) or not message_id.strip()):
            raise WebhookPayloadError('"message_id" must be a non-empty string when given')
        messages = parse_messages(data, WebhookPayloadError)
        if not any(m.role == "customer" and m.text.strip() for m in messages):
            return Ignored("no customer text")
        delivery_id = header(headers, ID_HEADER) or None
        return InboundMessage(
            source=self.name,
            conversation_key=external_id.strip(),
            message_key=message_id or delivery_id or derived_id("sha256:", body),
            delivery_id=delivery_id,
            conversation=Conversation(messages),
            customer=customer,
            raw=data,
        )

    def sign(self, body: bytes, secret: str, now: float, delivery_id: str | None = None) -> dict[str, str]:
        """Headers a Standard Webhooks producer sends (``delivery_id`` defaults to one derived from the body)."""
        return signed_headers(secret, delivery_id or derived_id("msg_", body), int(now), body)


GENERIC = Generic()
