"""The shipped routing table, rule by rule, and the fallback target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import CONFIG_PATH, SCHEMA
from triage.settings import load_settings
from triage.tickets.routing import Router

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ROUTER = Router(load_settings({"TRIAGE_CONFIG": str(CONFIG_PATH)}).routing, SCHEMA)


@pytest.mark.parametrize(("problem_type", "urgent_level", "route", "priority", "hours"), [
    ("device_fault", "high", "hardware-escalation", "P1", 1),
    ("device_fault", "normal", "hardware-support", "P2", 8),
    ("device_fault", "low", "hardware-support", "P3", 24),
    ("complaint", "high", "customer-relations", "P1", 1),
    ("complaint", "normal", "customer-relations", "P2", 8),
    ("complaint", "low", "customer-relations", "P2", 8),
    ("consult", "high", "general-inquiries", "P3", 24),
    ("consult", "normal", "general-inquiries", "P3", 24),
    ("consult", "low", "general-inquiries", "P3", 24),
    ("other", "high", "general-inquiries", "P2", 8),
    ("other", "normal", "general-inquiries", "P4", 48),
    ("other", "low", "general-inquiries", "P4", 48),
])
def test_shipped_rules(problem_type: str, urgent_level: str, route: str, priority: str, hours: int) -> None:
    decision = ROUTER.route({"problem_type": problem_type, "urgent_level": urgent_level}, NOW)
    assert (decision.route, decision.priority, decision.matched) == (route, priority, True)
    assert decision.sla_due_at == NOW + timedelta(hours=hours)


def test_fallback_is_manual_review_within_four_hours() -> None:
    decision = ROUTER.fallback(NOW)
    assert (decision.route, decision.priority, decision.sla_due_at) == ("manual-review", "P2", NOW + timedelta(hours=4))


def test_unmatched_ticket_goes_to_the_fallback_target() -> None:
    decision = ROUTER.route({"problem_type": "unknown"}, NOW)
    assert (decision.route, decision.matched) == ("manual-review", False)
