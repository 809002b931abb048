"""The platform registry: every webhook adapter by name, with its sample payload.

The web layer reads the raw body, then::

    platform = get_platform(name, **options)        # KeyError -> 404
    result = platform.receive(headers, body, secret, now=time.time())
    # WebhookError subclasses carry .status (401 auth, 400 payload, 500 our config) and .reason
    # Ignored -> 200, store nothing; InboundMessage -> store durably, then 2xx

>>> sorted(PLATFORMS)
['chatwoot', 'freshdesk', 'generic', 'intercom', 'zammad', 'zendesk']
>>> sorted(PLATFORMS) == sorted(SAMPLES)
True
>>> import json
>>> body = json.dumps(sample_payloads()["chatwoot"]).encode()
>>> headers = PLATFORMS["chatwoot"].sign(body, "s3cret", now=1_700_000_000)
>>> get_platform("chatwoot").receive(headers, body, "s3cret", now=1_700_000_000).source
'chatwoot'
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from . import chatwoot, freshdesk, generic, intercom, zammad, zendesk
from .base import Platform

#: Each platform's module and its default-configured adapter (tolerance 300 s, unsigned refused).
_ENTRIES: tuple[tuple[Any, Platform], ...] = (
    (generic, generic.GENERIC), (zendesk, zendesk.ZENDESK), (intercom, intercom.INTERCOM),
    (chatwoot, chatwoot.CHATWOOT), (zammad, zammad.ZAMMAD), (freshdesk, freshdesk.FRESHDESK),
)

#: Default-configured adapters by name.
PLATFORMS: dict[str, Platform] = {adapter.name: adapter for _, adapter in _ENTRIES}
#: A realistic payload per platform (customer text in English); copy before mutating.
SAMPLES: dict[str, dict[str, Any]] = {adapter.name: module.SAMPLE for module, adapter in _ENTRIES}


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
