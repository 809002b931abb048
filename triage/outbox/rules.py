"""Which deliveries a decision needs: pure rules over the audit event's kind and its before/after snapshots.

- **write-back** for the decisions that change what the helpdesk's agents route on: a ticket
  routed, sent to review, corrected, confirmed or resolved, when its conversation came from a
  platform write-back is on for (and intake stored the platform's own id), unless its autonomy
  level is ``shadow`` (nothing at all is written); a ticket routed in ``suggest`` gets a
  suggestion (an internal note only) until a person confirms or corrects it;
- **events**: the event type of the decision, to every ``[[events.endpoints]]`` entry that lists it;
- **a P1 alert** when an automatic decision (routed, sent to review) gives the ticket an alerting
  priority (``alerts.priorities``) it did not have before, so a reprocessed P1 ticket alerts once.

>>> writes_back(EventKind.CORRECTED), writes_back(EventKind.ASSIGNED), writes_back(EventKind.ROUTED, "shadow")
(True, False, False)
>>> suggestion_only(EventKind.ROUTED, "suggest"), suggestion_only(EventKind.CONFIRMED, "suggest")
(True, False)
>>> marked("P1 ticket 7", "shadow"), marked("P1 ticket 7", "auto")
('P1 ticket 7 (autonomy: shadow)', 'P1 ticket 7')
>>> event_type(EventKind.REOPENED), event_type(EventKind.RELEASED) is None
('ticket.reopened', True)
>>> raises_p1_alert(EventKind.ROUTED, {"priority": None}, {"priority": "P1"}, ["P1"])
True
>>> raises_p1_alert(EventKind.ROUTED, {"priority": "P1"}, {"priority": "P1"}, ["P1"])  # reprocessed
False
>>> raises_p1_alert(EventKind.CORRECTED, {"priority": "P2"}, {"priority": "P1"}, ["P1"])  # a person decided
False
>>> platform_ref("zendesk", "35436", "22129848", ["zendesk"])
PlatformRef(platform='zendesk', ticket_id='35436', account_id='22129848')
>>> platform_ref("zendesk", None, None, ["zendesk"]) is None, platform_ref("shop", "1", None, ["zendesk"]) is None
(True, True)
>>> endpoint_key("https://hooks.example.com/triage?token=s3cret")
'endpoint:a9ae8a28ed069521'
>>> endpoint_name("https://user:pw@hooks.example.com:8443/triage?token=s3cret")
'events endpoint hooks.example.com:8443'
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from triage.delivery import PlatformRef
from triage.states.autonomy import Level
from triage.states.tickets import EventKind

#: Decisions written back to the helpdesk.
WRITEBACK_KINDS = frozenset({EventKind.ROUTED, EventKind.NEEDS_REVIEW, EventKind.CORRECTED, EventKind.CONFIRMED,
                             EventKind.RESOLVED})
#: The outbound event type of each decision that has one.
EVENT_TYPES = {
    EventKind.ROUTED: "ticket.routed",
    EventKind.NEEDS_REVIEW: "ticket.needs_review",
    EventKind.CORRECTED: "ticket.corrected",
    EventKind.CONFIRMED: "ticket.confirmed",
    EventKind.ASSIGNED: "ticket.claimed",
    EventKind.RESOLVED: "ticket.resolved",
    EventKind.REOPENED: "ticket.reopened",
}
DELIVERY_FAILED = "delivery.failed"
#: Decisions made by the pipeline, not by a person: only these raise a P1 alert.
AUTOMATIC = frozenset({EventKind.ROUTED, EventKind.NEEDS_REVIEW})
ENDPOINT_KEY_CHARS = 16


def writes_back(kind: str, autonomy: str | None = None) -> bool:
    """Whether decision ``kind`` on a ticket of autonomy level ``autonomy`` is written to the helpdesk."""
    return kind in WRITEBACK_KINDS and autonomy != Level.SHADOW


def suggestion_only(kind: str, autonomy: str | None) -> bool:
    """Whether the write-back is a suggestion (an internal note, no group, priority or route tags): the pipeline
    routed the ticket in ``suggest``; a person's confirmation or correction writes the whole decision."""
    return kind == EventKind.ROUTED and autonomy == Level.SUGGEST


def marked(text: str, autonomy: str | None) -> str:
    """An alert's text, marked ``(autonomy: shadow)`` for a ticket of a shadow route (the helpdesk has nothing)."""
    return f"{text} (autonomy: {Level.SHADOW})" if autonomy == Level.SHADOW else text


def event_type(kind: str) -> str | None:
    return EVENT_TYPES.get(EventKind(kind))


def raises_p1_alert(kind: str, before: Mapping[str, Any], after: Mapping[str, Any],
                    priorities: Collection[str]) -> bool:
    return kind in AUTOMATIC and after.get("priority") in priorities and before.get("priority") != after.get("priority")


def platform_ref(source: str, ticket_id: str | None, account_id: str | None,
                 enabled: Collection[str]) -> PlatformRef | None:
    """Where a conversation's write-back goes: its source is a platform write-back is on for, and intake
    stored the platform's id; else None (submissions, the generic source, platforms switched off)."""
    if source not in enabled or not ticket_id:
        return None
    return PlatformRef(source, ticket_id, account_id)


def endpoint_key(url: str) -> str:
    """How a delivery names its events endpoint: a hash of the configured URL (a URL can hold a credential,
    so it is not stored); the sender finds the endpoint again by it."""
    return "endpoint:" + hashlib.sha256(url.encode()).hexdigest()[:ENDPOINT_KEY_CHARS]


def endpoint_name(url: str) -> str:
    """What people see of an endpoint: its host and port, never its path, query or user info."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"events endpoint {parts.hostname}{port}"
