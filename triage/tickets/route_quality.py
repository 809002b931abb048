"""How far triage can be let go, per route: coverage against accuracy from the team's reviews.

A *route review* is a person's verdict on a machine's decision (:data:`~triage.states.tickets.REVIEW_KINDS`
of a ticket an extractor filled, its latest review only): the route the machine's fields give, and
whether the reviewed fields give the same route and priority (it *survived*; a resolve or a
confirmation keeps them; a correction may move the ticket; a helpdesk agent's change reviews the route
or the priority it names). The route is the predicted one, so a
ticket held for review (low confidence, a review route) counts on the route it would have had.

For each route, the coverage-accuracy curve accepts the reviewed tickets at or above each confidence
seen, most confident first: the share of the route's scored tickets accepted, and the share of those
that survived. The thresholds that reach a target precision are the lowest confidence whose accepted
tickets survive at least that often. The route-accuracy alert reads :func:`route_accuracy` over the
last day (``triage_route_review_accuracy``, :mod:`triage.api.metrics`).

>>> points = curve([(0.9, True), (0.8, True), (0.7, False), (0.6, True)])
>>> [(p.threshold, p.coverage, round(p.precision, 2)) for p in points]
[(0.9, 0.25, 1.0), (0.8, 0.5, 1.0), (0.7, 0.75, 0.67), (0.6, 1.0, 0.75)]
>>> reaching(points, 0.95).threshold, reaching(points, 0.7).threshold
(0.8, 0.6)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.settings import AutonomySettings
from triage.states.autonomy import Level
from triage.states.tickets import HUMAN_EXTRACTOR, REVIEW_KINDS, EventKind, Status
from triage.store.models import Event, Ticket
from triage.tickets.routing import Router


@dataclass(frozen=True)
class RouteReview:
    ticket_id: int
    route: str
    confidence: float | None
    survived: bool


@dataclass(frozen=True)
class CurvePoint:
    """Accept the tickets at or above ``threshold``: ``coverage`` of the scored ones, ``precision`` survived."""

    threshold: float
    coverage: float
    precision: float
    accepted: int


@dataclass(frozen=True)
class RouteQuality:
    route: str
    level: Level
    reviewed: int
    survived: int
    #: Reviewed tickets that had a confidence (the curve's tickets).
    scored: int
    curve: list[CurvePoint]
    auto_above: float
    review_below: float
    #: The curve at the current thresholds (what each lets through), None without scored tickets.
    at_auto_above: CurvePoint | None
    at_review_below: CurvePoint | None
    #: The lowest threshold whose accepted tickets reach the target precision, None when none does.
    reaching_target: CurvePoint | None

    @property
    def agreement(self) -> float | None:
        """How often the machine's route survived review (for a shadow route: agreed with what people decided)."""
        return self.survived / self.reviewed if self.reviewed else None


def _routed(router: Router, fields: Mapping[str, Any], when: datetime) -> tuple[str, str]:
    decision = router.route(dict(fields), when)
    return decision.route, decision.priority


def _review(router: Router, event: Event) -> tuple[str, bool] | None:
    """The predicted route and whether it survived, when the event is a review of a machine's fields."""
    before, after = event.before or {}, event.after or {}
    fields = before.get("fields")
    if before.get("extractor") in (None, HUMAN_EXTRACTOR) or not isinstance(fields, dict) or not fields:
        return None
    if event.kind == EventKind.RESOLVED and before.get("status") == Status.CORRECTED:
        return None  # a confirmed suggestion, resolved: the confirmation was the review
    predicted = _routed(router, fields, event.created_at)
    if event.kind == EventKind.HELPDESK_REVIEW:
        return _helpdesk_verdict(predicted, after.get("label"))
    reviewed = after.get("fields") if event.kind == EventKind.CORRECTED else fields
    kept = _routed(router, reviewed if isinstance(reviewed, dict) else {}, event.created_at) == predicted
    return predicted[0], kept


def _helpdesk_verdict(predicted: tuple[str, str], label: Any) -> tuple[str, bool] | None:
    """A helpdesk agent's change (triage.intake.labels) reviews the route, or the priority, it names."""
    if not isinstance(label, dict):
        return None
    if label.get("route") is not None:
        return predicted[0], label["route"] == predicted[0]
    if label.get("priority") is not None:
        return predicted[0], label["priority"] == predicted[1]
    return None


def route_reviews(sessions: sessionmaker[Session], router: Router, since: datetime | None = None) -> list[RouteReview]:
    """Each reviewed machine ticket's latest review (made at or after ``since``) as a route review."""
    query = (select(Event, Ticket.confidence).join(Ticket, Ticket.id == Event.ticket_id)
             .where(Event.kind.in_(REVIEW_KINDS)).order_by(Event.id))
    if since is not None:
        query = query.where(Event.created_at >= since)
    latest: dict[int, RouteReview] = {}
    with sessions() as session:
        for event, confidence in session.execute(query):
            found = _review(router, event)
            if found is not None:
                latest[event.ticket_id] = RouteReview(event.ticket_id, found[0], confidence, found[1])
    return list(latest.values())


def curve(scored: Iterable[tuple[float, bool]]) -> list[CurvePoint]:
    """The coverage-accuracy curve of ``(confidence, survived)`` pairs: one point per distinct confidence."""
    ranked = sorted(scored, key=lambda pair: -pair[0])
    points: list[CurvePoint] = []
    kept = 0
    for index, (confidence, survived) in enumerate(ranked):
        kept += survived
        if index + 1 < len(ranked) and ranked[index + 1][0] == confidence:
            continue  # a threshold accepts every ticket of its confidence
        points.append(CurvePoint(confidence, (index + 1) / len(ranked), kept / (index + 1), index + 1))
    return points


def reaching(points: Sequence[CurvePoint], target: float) -> CurvePoint | None:
    """The lowest threshold whose accepted tickets survive at least ``target`` of the time."""
    good = [point for point in points if point.precision >= target]
    return min(good, key=lambda point: point.threshold) if good else None


def at(points: Sequence[CurvePoint], threshold: float) -> CurvePoint | None:
    """What ``threshold`` lets through: the curve's point of the lowest confidence at or above it."""
    above = [point for point in points if point.threshold >= threshold]
    return min(above, key=lambda point: point.threshold) if above else None


def route_quality(sessions: sessionmaker[Session], router: Router, autonomy: AutonomySettings, target: float,
                  since: datetime | None = None) -> list[RouteQuality]:
    """Every configured route's curve, current thresholds and target thresholds, from the reviews since ``since``."""
    reviews = route_reviews(sessions, router, since)
    routes = sorted({rule.route for rule in [*router.settings.rules, router.settings.fallback]})
    found = []
    for route in routes:
        mine = [review for review in reviews if review.route == route]
        points = curve((r.confidence, r.survived) for r in mine if r.confidence is not None)
        limits = autonomy.thresholds(route)
        found.append(RouteQuality(
            route, autonomy.level(route), len(mine), sum(r.survived for r in mine),
            sum(r.confidence is not None for r in mine), points, limits.auto_above, limits.review_below,
            at(points, limits.auto_above), at(points, limits.review_below), reaching(points, target)))
    return found


def route_accuracy(sessions: sessionmaker[Session], router: Router, since: datetime) -> dict[str, tuple[int, int]]:
    """Per route, the reviews since ``since`` and how many of them kept the machine's route: (reviewed, survived)."""
    counts: dict[str, tuple[int, int]] = {}
    for review in route_reviews(sessions, router, since):
        reviewed, survived = counts.get(review.route, (0, 0))
        counts[review.route] = (reviewed + 1, survived + review.survived)
    return counts
