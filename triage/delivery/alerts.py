"""Alerts: a short message to a Slack-compatible incoming webhook (``[alerts] webhook_url``).

The text is built when the alert is raised and stored as the delivery's payload; sending posts
``{"text": ...}``. Slack's answers: 2xx delivered; 400 (``invalid_payload``), 403
(``action_prohibited``), 404 (``channel_not_found``, ``no_service``) and 410
(``channel_is_archived``) are permanent, so the delivery fails with Slack's words; 429 (with
``Retry-After``) and 5xx are retried. The URL is a credential: it appears in no message.

Customer-derived values are escaped (``&``, ``<``, ``>``), so a ticket cannot ping ``<!channel>``:

>>> print(p1_text({"id": 42, "route": "hw", "priority": "P1", "problem_type": "device_fault",
...                "urgent_level": "high", "device_model": "<!channel> Watch"}, "https://t.example/tickets/42"))
P1 ticket 42 on hw: device_fault, urgency high, &lt;!channel&gt; Watch <https://t.example/tickets/42|open in triage>
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from triage.settings import AlertsSettings

from .failures import FailedDeliveryError, TransientDeliveryError
from .http import USER_AGENT, Outcome, Peer, transient_status

TARGET = "alerts webhook"
STEP = "alert"


def alert_outcome(status: int) -> Outcome:
    """2xx done; 408, 429 and 5xx transient (retried until the deadline); every other answer (400, 403,
    404, 410...) is permanent."""
    if 200 <= status < 300:
        return None
    if transient_status(status):
        return TransientDeliveryError
    return FailedDeliveryError


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: ``&``, ``<`` and ``>`` as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(link: str | None) -> str:
    return f" <{link}|open in triage>" if link else ""


def p1_text(ticket: Mapping[str, Any], link: str | None) -> str:
    """The alert for a ticket routed with an alerting priority."""
    facts = [str(ticket.get("problem_type") or "unknown problem")]
    if ticket.get("urgent_level"):
        facts.append(f"urgency {ticket['urgent_level']}")
    if ticket.get("device_model"):
        facts.append(str(ticket["device_model"]))
    head = f"{ticket.get('priority')} ticket {ticket.get('id')} on {ticket.get('route')}"
    return escape(f"{head}: {', '.join(facts)}") + _link(link)


def sla_breach_text(ticket: Mapping[str, Any], link: str | None) -> str:
    """The alert for a ticket whose SLA due time passed while it was still open."""
    text = (f"SLA breached: ticket {ticket.get('id')} ({ticket.get('priority')}, {ticket.get('route')}) "
            f"was due {ticket.get('sla_due_at')}, status {ticket.get('status')}")
    return escape(text) + _link(link)


class AlertSender:
    """Posts alert texts to the configured incoming webhook."""

    def __init__(self, settings: AlertsSettings, *, retry_after_max: float,
                 clock: Callable[[], float] = time.time) -> None:
        url = settings.webhook_url.get_secret_value() if settings.webhook_url else ""
        self.enabled = bool(url)
        self._url = url
        client = httpx.Client(timeout=httpx.Timeout(settings.timeout_seconds), follow_redirects=False,
                              headers={"User-Agent": USER_AGENT})
        self.peer = Peer(TARGET, client, retry_after_max=retry_after_max, secrets=[url], classify=alert_outcome,
                         clock=clock)

    def close(self) -> None:
        self.peer.close()

    def send(self, text: str) -> None:
        if not self.enabled:
            raise FailedDeliveryError(TARGET, STEP, "[alerts] webhook_url is not set")
        self.peer.request(STEP, "POST", self._url, json={"text": text})
