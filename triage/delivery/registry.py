"""The write-back adapters by platform name, built from the settings.

>>> sorted(ADAPTERS)
['chatwoot', 'freshdesk', 'intercom', 'zammad', 'zendesk']
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from triage.settings import WritebackSettings

from .adapter import BaseAdapter, WritebackAdapter
from .chatwoot import ChatwootAdapter
from .freshdesk import FreshdeskAdapter
from .intercom import IntercomAdapter
from .zammad import ZammadAdapter
from .zendesk import ZendeskAdapter

ADAPTERS: dict[str, type[BaseAdapter[Any]]] = {adapter.platform: adapter for adapter in (
    ZendeskAdapter, IntercomAdapter, ChatwootAdapter, ZammadAdapter, FreshdeskAdapter)}


def build_adapter(platform: str, settings: WritebackSettings, *,
                  clock: Callable[[], float] = time.time) -> WritebackAdapter:
    """The adapter for ``platform``; KeyError for a platform without one, ValueError when write-back to it is off."""
    adapter = ADAPTERS[platform]
    if not settings.platform(platform).enabled:
        raise ValueError(f"write-back to {platform} is off: its URL (Intercom: its token) is not set")
    return adapter(settings, clock=clock)


def build_adapters(settings: WritebackSettings, *,
                   clock: Callable[[], float] = time.time) -> dict[str, WritebackAdapter]:
    """One adapter per platform write-back is on for (each holds an HTTP client: close them at shutdown)."""
    return {name: build_adapter(name, settings, clock=clock) for name in settings.enabled_platforms()}
