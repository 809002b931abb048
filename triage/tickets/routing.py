"""Routing: ordered rules from config turn a ticket's fields into a route, a priority and an SLA.

The first rule whose ``when`` matches wins; a ticket no rule matches, and every ticket that
ended in the fallback queue, goes to the configured fallback target (``manual-review``). A rule
may name any field of the ticket schema; :class:`Router` checks every rule against the schema
when it is built, so a rule naming an unknown field or a value the field cannot hold stops
start-up with :class:`RuleError` naming the rule.

>>> from datetime import datetime, timezone
>>> from triage.schema import TicketSchema
>>> from triage.settings import RouteRule, RouteTarget, RoutingSettings
>>> schema = TicketSchema.from_dict({"type": "object", "properties": {
...     "problem_type": {"enum": ["consult", "device_fault"]}}})
>>> router = Router(RoutingSettings(
...     rules=[RouteRule(when={"problem_type": "consult"}, route="general-inquiries",
...                      priority="P3", sla_hours=24)],
...     fallback=RouteTarget(route="manual-review", priority="P2", sla_hours=4)), schema)
>>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> decision = router.route({"problem_type": "consult"}, now)
>>> decision.route, decision.priority, decision.sla_due_at.isoformat()
('general-inquiries', 'P3', '2026-01-02T00:00:00+00:00')
>>> router.route({"problem_type": "device_fault"}, now).matched
False
>>> sorted(router.fields)
['problem_type']
>>> Router(RoutingSettings(rules=[RouteRule(when={"sentiment": "negative"}, route="care", priority="P2",
...                                          sla_hours=8)]), schema)
Traceback (most recent call last):
...
triage.tickets.routing.RuleError: routing.rules[0] (route 'care'): when.sentiment: not a field of the ticket schema \
(its fields: problem_type)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from triage.errors import ConfigError
from triage.schema import TicketSchema
from triage.settings import RouteRule, RouteTarget, RoutingSettings, RuleValue


class RuleError(ConfigError):
    """A routing rule names a field the schema lacks, or a value the field cannot hold."""


@dataclass(frozen=True)
class RouteDecision:
    route: str
    priority: str
    sla_due_at: datetime
    matched: bool


def _same(expected: RuleValue, actual: object) -> bool:
    """Equal and of the same kind (``True`` is not ``1`` here)."""
    return expected == actual and isinstance(expected, bool) == isinstance(actual, bool)


def _allowed(rule_value: RuleValue | list[RuleValue]) -> list[RuleValue]:
    return rule_value if isinstance(rule_value, list) else [rule_value]


def _matches(rule: RouteRule, fields: dict[str, Any]) -> bool:
    return all(any(_same(value, fields.get(key)) for value in _allowed(expected))
               for key, expected in rule.when.items())


def _decide(target: RouteTarget, start: datetime, matched: bool) -> RouteDecision:
    due = start + timedelta(hours=target.sla_hours)
    return RouteDecision(target.route, target.priority, due, matched)


def check_rules(settings: RoutingSettings, schema: TicketSchema) -> None:
    """Raise :class:`RuleError` for the first rule naming an unknown field or a value its field cannot hold."""
    for index, rule in enumerate(settings.rules):
        where = f"routing.rules[{index}] (route {rule.route!r})"
        for name, expected in rule.when.items():
            if name not in schema.properties:
                known = ", ".join(schema.properties)
                raise RuleError(f"{where}: when.{name}: not a field of the ticket schema (its fields: {known})")
            for value in _allowed(expected):
                issues = schema.field_issues(name, value)
                if issues:
                    raise RuleError(f"{where}: when.{name}={value!r}: {issues[0]}")


class Router:
    """Applies the routing rules of :class:`~triage.settings.RoutingSettings`, checked against ``schema``."""

    def __init__(self, settings: RoutingSettings, schema: TicketSchema) -> None:
        check_rules(settings, schema)
        self.settings = settings
        #: The fields some rule reads (what an answer must not be ambiguous about).
        self.fields = frozenset(name for rule in settings.rules for name in rule.when)

    def rule_for(self, fields: dict[str, Any]) -> tuple[int, RouteRule] | None:
        """The first rule matching ``fields`` and its index in ``routing.rules``; None when none does."""
        return next(((index, rule) for index, rule in enumerate(self.settings.rules) if _matches(rule, fields)), None)

    def route(self, fields: dict[str, Any], start: datetime) -> RouteDecision:
        """The first matching rule's decision, or the fallback target (``matched=False``); the SLA is due
        its hours after ``start``, when the customer's wait began."""
        found = self.rule_for(fields)
        return _decide(found[1], start, matched=True) if found else self.fallback(start)

    def fallback(self, start: datetime) -> RouteDecision:
        """Where tickets that need a person go (``manual-review`` by default), due its hours after ``start``."""
        return _decide(self.settings.fallback, start, matched=False)
