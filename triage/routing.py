"""Routing: ordered rules from config turn a ticket's fields into a route, a priority and an SLA.

The first rule whose ``when`` matches wins; a ticket no rule matches, and every ticket that
ended in the fallback queue, goes to the configured fallback target (``manual-review``).

>>> from datetime import datetime, timezone
>>> from triage.settings import RouteRule, RouteTarget, RoutingSettings
>>> router = Router(RoutingSettings(
...     rules=[RouteRule(when={"problem_type": "consult"}, route="general-inquiries",
...                      priority="P3", sla_hours=24)],
...     fallback=RouteTarget(route="manual-review", priority="P2", sla_hours=4)))
>>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> decision = router.route({"problem_type": "consult"}, now)
>>> decision.route, decision.priority, decision.sla_due_at.isoformat()
('general-inquiries', 'P3', '2026-01-02T00:00:00+00:00')
>>> router.route({"problem_type": "device_fault"}, now).matched
False
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from triage.settings import RouteRule, RouteTarget, RoutingSettings


@dataclass(frozen=True)
class RouteDecision:
    route: str
    priority: str
    sla_due_at: datetime
    matched: bool


def _matches(rule: RouteRule, fields: dict[str, Any]) -> bool:
    for key, expected in rule.when.items():
        allowed = expected if isinstance(expected, list) else [expected]
        if fields.get(key) not in allowed:
            return False
    return True


def _decide(target: RouteTarget, now: datetime, matched: bool) -> RouteDecision:
    due = now + timedelta(hours=target.sla_hours)
    return RouteDecision(target.route, target.priority, due, matched)


class Router:
    """Applies the routing rules of :class:`~triage.settings.RoutingSettings`."""

    def __init__(self, settings: RoutingSettings) -> None:
        self.settings = settings

    def route(self, fields: dict[str, Any], now: datetime) -> RouteDecision:
        """The first matching rule's decision, or the fallback target (``matched=False``)."""
        for rule in self.settings.rules:
            if _matches(rule, fields):
                return _decide(rule, now, matched=True)
        return self.fallback(now)

    def fallback(self, now: datetime) -> RouteDecision:
        """Where tickets that need a person go (``manual-review`` by default)."""
        return _decide(self.settings.fallback, now, matched=False)
