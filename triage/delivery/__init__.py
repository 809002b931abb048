"""Outbound deliveries: write-back to the helpdesks, signed outbound events, alerts.

Everything here makes the HTTP calls of one delivery and says how it went; the outbox (the
``deliveries`` table and its Celery task) decides when to call it again. Three kinds:

- write-back (one adapter per helpdesk, one module each: :mod:`.zendesk`, :mod:`.intercom`,
  :mod:`.chatwoot`, :mod:`.zammad`, :mod:`.freshdesk`), driven by a :class:`Write`::

      adapters = build_adapters(settings.writeback)           # the platforms that are on
      deliver(adapters[write.ref.platform], write, done=steps_done, record=save_step, resumed=attempts > 0)

- outbound events: :func:`event_body` when the event happens, :meth:`EventSender.send` per attempt;
- alerts: :func:`p1_text` / :func:`sla_breach_text` when raised, :meth:`AlertSender.send` per attempt.

Every call raises one of :class:`TransientDeliveryError` (the peer is busy or away: retried until
the deadline; ``wait``: the peer's own wait, or None for backoff), :class:`RetryableDeliveryError`
(an answer nobody could classify: retried at most ``writeback.max_attempts`` times),
:class:`GoneDeliveryError` (the record does not exist: stop), :class:`SkippedDeliveryError` (it
exists but takes no change: stop, no alert) or :class:`FailedDeliveryError` (fail now, with the
peer's message), all :class:`DeliveryError`.
"""

from __future__ import annotations

from .adapter import WritebackAdapter, deliver
from .alerts import AlertSender, p1_text, sla_breach_text
from .events import EventSender, event_body
from .failures import (
    DeliveryError,
    FailedDeliveryError,
    GoneDeliveryError,
    RetryableDeliveryError,
    SkippedDeliveryError,
    TransientDeliveryError,
)
from .registry import ADAPTERS, build_adapter, build_adapters
from .write import PlatformRef, Write, ticket_link

__all__ = [
    "ADAPTERS", "AlertSender", "DeliveryError", "EventSender", "FailedDeliveryError", "GoneDeliveryError",
    "PlatformRef", "RetryableDeliveryError", "SkippedDeliveryError", "TransientDeliveryError", "Write",
    "WritebackAdapter", "build_adapter", "build_adapters", "deliver", "event_body", "p1_text", "sla_breach_text",
    "ticket_link",
]
