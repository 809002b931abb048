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
from typing import TYPE_CHECKING

from sqlalchemy import select

from triage.confidence.calibrate import CalibrationReport, Decision, FitSettings, calibrate
from triage.confidence.signals import SignalRecord
from triage.confidence.store import reviews_through, save_calibration
from triage.learning.reviews import count_reviews, review_labels
from triage.store.models import Ticket

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
            for ticket_id, stored in session.execute(select(Ticket.id, Ticket.confidence_signals)
                                                     .where(Ticket.id.in_(chunk)).order_by(Ticket.id)):
                record = SignalRecord.from_json(stored) if isinstance(stored, dict) else None
                if record is not None:
                    decisions.append(Decision(record, labels[ticket_id], route(record.values)))
    return decisions, reviews.through


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
