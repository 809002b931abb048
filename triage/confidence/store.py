"""Calibration versions in the database: numbers, never a pickle.

A version is a row of ``calibrations`` (when, how many decisions from where, the last review read,
its held-out report) and one row per fitted head in ``calibration_heads`` (routing field, extractor
group, intercept, and the coefficients as a JSON object signal -> weight). A head not stored is the
default combination's.

Every worker scores with the newest version: :class:`CalibrationSource` asks for the newest version
number at most every ``learn.poll_seconds`` (at most a minute) and loads a version only when it is newer.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, sessionmaker

from triage.clock import Clock
from triage.confidence.combine import DEFAULT, Combination, Head
from triage.confidence.signals import GROUPS, Group
from triage.learning.store import delete_beyond
from triage.store.models import Base, utcnow

if TYPE_CHECKING:
    from triage.confidence.calibrate import CalibrationReport


class CalibrationRow(Base):
    """One calibration version (its id is the version number)."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decisions: Mapped[int] = mapped_column(Integer)
    #: data set name (or ``reviews``) -> labelled decisions
    sources: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The last review event read; later reviews are the scheduled job's new labels.
    reviews_through: Mapped[int] = mapped_column(Integer, default=0)
    #: The held-out report (:class:`~triage.confidence.calibrate.CalibrationReport`): ECE, thresholds...
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: scikit-learn's version it was fitted with.
    library: Mapped[dict[str, Any]] = mapped_column(JSON)

    heads: Mapped[list[CalibrationHeadRow]] = relationship(back_populates="calibration",
                                                           cascade="all, delete-orphan",
                                                           order_by="CalibrationHeadRow.id")


class CalibrationHeadRow(Base):
    """One (routing field, extractor group)'s fitted logistic combination within a version."""

    __tablename__ = "calibration_heads"
    __table_args__ = (UniqueConstraint("calibration_id", "field", "extractor_group"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    calibration_id: Mapped[int] = mapped_column(ForeignKey("calibrations.id", ondelete="CASCADE"), index=True)
    field: Mapped[str] = mapped_column(String(64))
    extractor_group: Mapped[str] = mapped_column(String(16))
    intercept: Mapped[float] = mapped_column(Float)
    #: signal name -> coefficient
    weights: Mapped[dict[str, Any]] = mapped_column(JSON)
    labels: Mapped[int] = mapped_column(Integer)

    calibration: Mapped[CalibrationRow] = relationship(back_populates="heads")


def save_calibration(sessions: sessionmaker[Session], combination: Combination, report: CalibrationReport,
                     sources: dict[str, int], reviews_through: int, now: datetime, *, keep: int,
                     library: dict[str, str]) -> int:
    """Store ``combination`` as the newest version (versions beyond the newest ``keep`` are deleted)."""
    with sessions.begin() as session:
        row = CalibrationRow(created_at=now, decisions=report.decisions, sources=dict(sources),
                             reviews_through=reviews_through, report=report.to_json(), library=dict(library))
        row.heads = [CalibrationHeadRow(field=name, extractor_group=group, intercept=head.intercept,
                                        weights=dict(head.weights),
                                        labels=int(report.heads.get(f"{name}/{group}", {}).get("labels", 0)))
                     for (name, group), head in combination.heads.items()]
        session.add(row)
        session.flush()
        version = row.id
        delete_beyond(session, CalibrationRow.id, CalibrationHeadRow.calibration_id, keep)
    return version


def latest_calibration(sessions: sessionmaker[Session]) -> int | None:
    with sessions() as session:
        return session.scalar(select(func.max(CalibrationRow.id)))


def _group(value: str) -> Group:
    return next(group for group in GROUPS if group == value)


def load_calibration(sessions: sessionmaker[Session], version: int | None = None) -> Combination | None:
    """Version ``version`` (default: the newest) as a combination; None when it is not stored."""
    with sessions() as session:
        query = (select(CalibrationRow).order_by(CalibrationRow.id.desc()).limit(1) if version is None
                 else select(CalibrationRow).where(CalibrationRow.id == version))
        row = session.scalar(query)
        if row is None:
            return None
        heads = {(head.field, _group(head.extractor_group)):
                 Head(head.intercept, {str(k): float(v) for k, v in head.weights.items()})
                 for head in row.heads if head.extractor_group in GROUPS}
        return Combination(heads, row.id, row.created_at)


def reviews_through(sessions: sessionmaker[Session]) -> int:
    """The last review event the newest version read (0 without a version)."""
    with sessions() as session:
        return int(session.scalar(select(CalibrationRow.reviews_through).order_by(CalibrationRow.id.desc())
                                  .limit(1)) or 0)


class CalibrationSource:
    """The newest stored version (else the default), re-checked at most every ``poll_seconds``; thread-safe."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, poll_seconds: float) -> None:
        self.sessions = sessions
        self.clock = clock
        self.poll = timedelta(seconds=poll_seconds)
        self._lock = threading.Lock()
        self._combination: Combination = DEFAULT
        self._checked_at: datetime | None = None

    def current(self) -> Combination:
        now = self.clock.now()
        with self._lock:
            if self._checked_at is None or now - self._checked_at >= self.poll:
                self._checked_at = now
                newest = latest_calibration(self.sessions)
                if newest is not None and self._combination.version != newest:
                    self._combination = load_calibration(self.sessions, newest) or self._combination
            return self._combination
