"""The platform registry: every webhook adapter by name, with its sample payload.

>>> sorted(PLATFORMS) == sorted(SAMPLES)
True
"""

from __future__ import annotations

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
