"""Webhook adapters, one per support platform: verify the raw request, then normalise its payload.

Pure code, no web framework and no database. The web layer reads the raw body, then::

    platform = get_platform(name, **options)        # KeyError -> 404
    result = platform.receive(headers, body, secret, now=time.time())
    # WebhookError subclasses carry .status (401 auth, 400 payload, 500 our config) and .reason
    # Ignored -> 200, store nothing; InboundMessage -> store durably, then 2xx

>>> sorted(PLATFORMS)
['chatwoot', 'freshdesk', 'generic', 'intercom', 'zammad', 'zendesk']
>>> import json
>>> body = json.dumps(sample_payloads()["chatwoot"]).encode()
>>> headers = sign("chatwoot", body, "s3cret", now=1_700_000_000)
>>> get_platform("chatwoot").receive(headers, body, "s3cret", now=1_700_000_000).source
'chatwoot'
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from .base import (
    DEFAULT_TOLERANCE_SECONDS,
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
from .registry import PLATFORMS, SAMPLES
from .signing import sign, signed_request
from .zammad import ZAMMAD, Zammad
from .zendesk import ZENDESK, Zendesk


def get_platform(name: str, **options: Any) -> Platform:
    """The adapter for ``name``, with options such as ``tolerance=`` or ``allow_unsigned=`` applied.

    Raises KeyError for an unknown platform and TypeError for an option the platform lacks
    (``allow_unsigned`` exists only for chatwoot and zammad).

    >>> get_platform("chatwoot", allow_unsigned=True, tolerance=60)
    Chatwoot(tolerance=60, allow_unsigned=True)
    """
    platform = PLATFORMS[name]
    return dataclasses.replace(platform, **options) if options else platform  # type: ignore[type-var]


def sample_payloads() -> dict[str, dict[str, Any]]:
    """A realistic payload per platform (customer text in English); fresh copies, safe to mutate."""
    return copy.deepcopy(SAMPLES)


__all__ = [
    "CHATWOOT", "DEFAULT_TOLERANCE_SECONDS", "FRESHDESK", "FRESHDESK_RULE_BODY", "GENERIC", "INTERCOM",
    "PLATFORMS", "ZAMMAD", "ZENDESK", "Chatwoot", "Freshdesk", "Generic", "Ignored", "InboundMessage",
    "Intercom", "Platform", "WebhookAuthError", "WebhookConfigError", "WebhookError", "WebhookPayloadError",
    "Zammad", "Zendesk", "get_platform", "html_to_text", "sample_payloads", "sign", "signed_request",
]
