"""Signed outbound events: Standard Webhooks to each ``[[events.endpoints]]`` entry that takes the type.

The body is built once, when the event happens, and stored as the delivery's payload; every
attempt sends those exact bytes, signed anew (``webhook-timestamp`` is the attempt's time) with
the same ``webhook-id``, the delivery's id, which receivers use to de-duplicate::

    body = event_body("ticket.routed", ticket_json, occurred_at=now)      # at decision time
    sender.send(endpoint.url, delivery_id, body)                           # on every attempt

Signing is :mod:`triage.standard_webhooks`, the code that verifies ``POST /webhooks/generic``.
Answers follow the spec: 2xx is delivered; 410 means the receiver wants no more (the delivery
ends); anything else, redirects included (never followed), is retried, honouring Retry-After: 408,
429 and 5xx (the receiver is busy or away) until the delivery's deadline, any other answer at most
``writeback.max_attempts`` times (a receiver answering 400 or 401 forever is misconfigured).

>>> from datetime import datetime, timezone
>>> event_body("ticket.routed", {"id": 42, "route": "hardware-escalation"},
...            datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc))
b'{"type":"ticket.routed","timestamp":"2026-12-01T09:30:00Z","data":{"ticket":{"id":42,"route":"hardware-escalation"}}}'
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from triage.settings import EVENT_TYPES, EventsSettings
from triage.standard_webhooks import signed_headers

from .failures import FailedDeliveryError, GoneDeliveryError, RetryableDeliveryError, TransientDeliveryError
from .http import USER_AGENT, Outcome, Peer, transient_status

#: A ``webhook-id`` must not contain ``.`` (the signed string joins id, timestamp and body with dots).
WEBHOOK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
ENDPOINT_GONE = 410
STEP = "event"


def event_outcome(status: int) -> Outcome:
    """A receiver's answer per the spec: 2xx done, 410 gone (stop), anything else retried (408, 429 and
    5xx as transient).

    >>> [getattr(event_outcome(status), "__name__", None) for status in (204, 410, 503, 401)]
    [None, 'GoneDeliveryError', 'TransientDeliveryError', 'RetryableDeliveryError']
    """
    if 200 <= status < 300:
        return None
    if status == ENDPOINT_GONE:
        return GoneDeliveryError
    return TransientDeliveryError if transient_status(status) else RetryableDeliveryError


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` (a naive time is taken as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_body(event_type: str, ticket: Mapping[str, Any], occurred_at: datetime, **data: Any) -> bytes:
    """``{"type", "timestamp", "data": {"ticket": ..., **data}}`` as compact UTF-8 JSON.

    ``ticket`` is the ticket as the API shows it; ``data`` adds other members, e.g.
    ``delivery={...}`` for ``delivery.failed``.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")
    payload = {"type": event_type, "timestamp": iso_utc(occurred_at), "data": {"ticket": dict(ticket), **data}}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class EventSender:
    """Sends stored event bodies to the configured endpoints (one HTTP client for all of them)."""

    def __init__(self, settings: EventsSettings, *, retry_after_max: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings, self.clock = settings, clock
        self._client = httpx.Client(timeout=httpx.Timeout(settings.timeout_seconds), follow_redirects=False,
                                    headers={"User-Agent": USER_AGENT})
        self._retry_after_max = retry_after_max

    def close(self) -> None:
        self._client.close()

    def send(self, url: str, delivery_id: str, body: bytes) -> None:
        """POST ``body`` to the endpoint configured at ``url``, signed, with ``webhook-id`` = ``delivery_id``."""
        name = f"events endpoint {urlsplit(url).hostname}"
        endpoint = self.settings.endpoint(url)
        if endpoint is None:
            raise FailedDeliveryError(name, STEP, "is no longer in [[events.endpoints]]")
        if not WEBHOOK_ID.fullmatch(delivery_id):
            raise FailedDeliveryError(name, STEP, "the delivery id is not a valid webhook-id")
        secret = endpoint.secret.get_secret_value()
        peer = Peer(name, self._client, retry_after_max=self._retry_after_max, secrets=[secret],
                    classify=event_outcome, clock=self.clock)
        peer.request(STEP, "POST", url, content=body,
                     headers=signed_headers(secret, delivery_id, int(self.clock()), body))
