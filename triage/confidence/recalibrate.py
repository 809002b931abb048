"""Calibrating the confidence on the desk's reviews: the decisions they label, a fit stored as a new version.

The labels are the reviews as ``triage learn`` reads them (:mod:`triage.learning.reviews`), each joined to
the signals its ticket was decided on (``tickets.confidence_signals``). The fit and its held-out report are
:mod:`triage.confidence.calibrate`; the version is stored as data (:mod:`triage.confidence.store`).
:func:`recalibrate` is the scheduled job (``jobs.calibrate_interval_hours``): it refits once
``calibrate.min_new_labels`` reviews arrived after the newest version's. ``triage calibrate``
(:mod:`triage.cli.calibrate`) adds labelled data sets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.confidence.calibrate import CalibrationReport, Decision, FitSettings, calibrate
from triage.confidence.signals import SignalRecord
from triage.confidence.store import reviews_through, save_calibration
from triage.learning.reviews import count_reviews, review_labels
from triage.settings import RouteRule
from triage.states.tickets import REVIEW_KINDS, EventKind
from triage.store.models import Event, Ticket

if TYPE_CHECKING:
    from triage.app import App

CALIBRATE = "calibrate"
#: The key prefix of a review's training row (:func:`triage.learning.reviews.review_labels`).
TICKET_KEY = "ticket:"


def fit_settings(app: App) -> FitSettings:
    return FitSettings(app.settings.calibrate.min_labels, app.settings.learn.folds, app.settings.learn.seed,
                       app.settings.quality.target_precision)


def route_of(app: App) -> Callable[[Mapping[str, str]], str]:
    """The route the routing rules give a decision's field values, now."""
    now = app.clock.now()
    return lambda values: app.router.route(dict(values), now).route


def review_decisions(app: App, since: datetime | None = None) -> tuple[list[Decision], int]:
    """Every reviewed ticket's machine decision with its review's labels, and the last review event read.
    A ticket no machine scored (decided before confidence existed, or by a person only) gives none."""
    fields = sorted(app.router.fields)
    reviews = review_labels(app.sessions, fields, since=since)
    labels = {int(row.key.removeprefix(TICKET_KEY)): row.labels for row in reviews.rows
              if row.key.startswith(TICKET_KEY)}
    route = route_of(app)
    decisions: list[Decision] = []
    with app.sessions() as session:
        ids = sorted(labels)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            moved_to = helpdesk_moves(session, chunk, since)
            for ticket_id, stored in session.execute(select(Ticket.id, Ticket.confidence_signals)
                                                     .where(Ticket.id.in_(chunk)).order_by(Ticket.id)):
                record = SignalRecord.from_json(stored) if isinstance(stored, dict) else None
                if record is not None:
                    moved = moved_to.get(ticket_id)
                    machine_route = route(record.values)
                    refuted = (frozenset() if moved is None or moved == machine_route
                               else refuted_fields(app.settings.routing.rules, moved, record.values, labels[ticket_id]))
                    decisions.append(Decision(record, labels[ticket_id], machine_route, refuted=refuted))
    return decisions, reviews.through


def helpdesk_moves(session: Session, ticket_ids: Sequence[int], since: datetime | None) -> dict[int, str]:
    """The route each of ``ticket_ids`` was moved to when its latest review is an agent's route change in the
    helpdesk (a ``helpdesk_review`` whose label names a route)."""
    query = (select(Event.ticket_id, Event.kind, Event.after)
             .where(Event.ticket_id.in_(ticket_ids), Event.kind.in_(REVIEW_KINDS)).order_by(Event.id))
    if since is not None:
        query = query.where(Event.created_at >= since)
    latest: dict[int, str | None] = {}
    for ticket_id, kind, after in session.execute(query):
        label = (after or {}).get("label") if kind == EventKind.HELPDESK_REVIEW else None
        route = label.get("route") if isinstance(label, dict) else None
        if kind != EventKind.HELPDESK_REVIEW or route is not None:
            latest[int(ticket_id)] = route if isinstance(route, str) else None
    return {ticket_id: route for ticket_id, route in latest.items() if route is not None}


def refuted_fields(rules: Sequence[RouteRule], route: str, values: Mapping[str, str],
                   labels: Mapping[str, str]) -> frozenset[str]:
    """The routing fields of ``values`` (the machine's) that a move to ``route`` shows wrong without a right value:
    no rule of ``route`` agreeing with ``labels`` takes the machine's value.

    >>> rule = lambda when: RouteRule(when=when, route="hw", priority="P2", sla_hours=1)
    >>> sorted(refuted_fields([rule({"p": "fault", "u": ["normal", "low"]})], "hw", {"p": "fault", "u": "high"},
    ...                       {"p": "fault"}))
    ['u']
    """
    def takes(when: Mapping[str, Any], name: str, value: str) -> bool:
        allowed = when.get(name)
        return allowed is None or value in {str(v) for v in (allowed if isinstance(allowed, list) else [allowed])}

    candidates = [r.when for r in rules if r.route == route
                  and all(takes(r.when, name, value) for name, value in labels.items())]
    return frozenset(name for name, value in values.items() if name not in labels
                     and not any(takes(when, name, value) for when in candidates))


def run_calibration(app: App, decisions: Sequence[Decision], through: int,
                    progress: Callable[[int, int], None] | None = None) -> tuple[int, CalibrationReport]:
    """Fit on ``decisions``, store the version; its number and held-out report."""
    fields = sorted(app.router.fields)
    combination, report = calibrate(decisions, fields, fit_settings(app), progress)
    sources = dict(Counter(decision.source for decision in decisions))
    version = save_calibration(app.sessions, combination, report, sources, through, app.clock.now(),
                               keep=app.settings.calibrate.keep_versions,
                               library={"scikit-learn": package_version("scikit-learn")})
    return version, report


def recalibrate(app: App) -> str:
    """The scheduled calibration on the reviews; a one-line summary of what it did."""
    after = reviews_through(app.sessions)
    new = count_reviews(app.sessions, after)
    minimum = app.settings.calibrate.min_new_labels
    if new < minimum:
        return f"{CALIBRATE}: {new} new reviews since the last calibration, refitting at {minimum}"
    decisions, through = review_decisions(app)
    if not decisions:
        return f"{CALIBRATE}: {new} new reviews, but no reviewed ticket was scored by the machine"
    version, report = run_calibration(app, decisions, through)
    ece = report.ece.get("ticket")
    return (f"{CALIBRATE}: stored v{version} ({len(decisions)} reviewed decisions; held-out ticket ECE "
            f"{'-' if ece is None else f'{ece:.3f}'})")
