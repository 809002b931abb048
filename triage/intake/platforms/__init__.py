"""Webhook adapters, one per support platform: verify the raw request, then normalise its payload.

Pure code (no web framework, no database); :mod:`.registry` lists them by name.
"""

from __future__ import annotations

from .base import (
    DEFAULT_TOLERANCE_SECONDS,
    HelpdeskChange,
    IdFields,
    Ignored,
    InboundMessage,
    Platform,
    WebhookAuthError,
    WebhookConfigError,
    WebhookError,
    WebhookPayloadError,
)
from .chatwoot import CHATWOOT, Chatwoot
from .freshdesk import FRESHDESK, FRESHDESK_RULE_BODY, Freshdesk
from .generic import GENERIC, Generic
from .htmltext import html_to_text
from .intercom import INTERCOM, Intercom
from .registry import PLATFORMS, get_platform, sample_payloads
from .signing import sign, signed_request
from .zammad import ZAMMAD, Zammad
from .zendesk import ZENDESK, Zendesk

__all__ = [
    "CHATWOOT", "DEFAULT_TOLERANCE_SECONDS", "FRESHDESK", "FRESHDESK_RULE_BODY", "GENERIC", "INTERCOM",
    "PLATFORMS", "ZAMMAD", "ZENDESK", "Chatwoot", "Freshdesk", "Generic", "HelpdeskChange", "IdFields", "Ignored",
    "InboundMessage", "Intercom", "Platform", "WebhookAuthError", "WebhookConfigError", "WebhookError",
    "WebhookPayloadError", "Zammad", "Zendesk", "get_platform", "html_to_text", "sample_payloads", "sign",
    "signed_request",
]
