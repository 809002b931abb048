"""How often the extractors' values survive review: every person's correction is a label.

A *review* is a person's verdict on a machine's ticket (an extractor's fields, not a person's):

- a correction (event ``corrected`` whose before-snapshot was written by an extractor): each field
  the person changed was wrong, each field they left was right;
- a resolve without a correction (event ``resolved`` whose before-snapshot is an extractor's): every
  field was right;
- a confirmation of a suggestion (event ``confirmed``, the desk's "Confirm"): every field was right; the
  ticket is then the person's (``corrected``), so resolving it later is not a second label.

Reviews of a person's fields (extractor ``human``) and of tickets never extracted are not labels.
Counts are per field, and per extractor, model and prompt version (taken from the reviewed
snapshot), with the most common corrections (``problem_type: consult -> device_fault``)::

    report = accuracy(sessions, ["problem_type", "urgent_level"], since=None)
    report.fields[0].survived_share   # 0.83: 83% of the reviewed problem_type values were kept
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.store.models import Event
from triage.tickets.lifecycle import HUMAN_EXTRACTOR
from triage.tickets.states import REVIEW_KINDS, EventKind, Status

#: How many of the most common corrections a report lists.
TOP_CORRECTIONS = 10


@dataclass(frozen=True)
class FieldAccuracy:
    field: str
    reviewed: int
    corrected: int

    @property
    def survived(self) -> int:
        return self.reviewed - self.corrected

    @property
    def survived_share(self) -> float | None:
        """The share of reviewed values a person kept (None before any review)."""
        return self.survived / self.reviewed if self.reviewed else None


@dataclass(frozen=True)
class VersionAccuracy:
    """One extractor / model / prompt version's reviews."""

    extractor: str
    model: str | None
    prompt_version: str | None
    reviewed: int
    corrected: int
    fields: list[FieldAccuracy]


@dataclass(frozen=True)
class Correction:
    field: str
    before: str
    after: str
    count: int


@dataclass(frozen=True)
class Accuracy:
    since: datetime | None
    #: Reviews counted, and how many of them changed at least one field.
    reviewed: int
    corrected: int
    fields: list[FieldAccuracy]
    versions: list[VersionAccuracy]
    corrections: list[Correction]


@dataclass(frozen=True)
class _Review:
    version: tuple[str, str | None, str | None]
    changed: dict[str, tuple[Any, Any]]


def _review(event: Event, names: Sequence[str]) -> _Review | None:
    """The label an audit event gives, if it is one."""
    before, after = event.before or {}, event.after or {}
    extractor, fields = before.get("extractor"), before.get("fields")
    if extractor in (None, HUMAN_EXTRACTOR) or not fields:
        return None
    if event.kind == EventKind.RESOLVED and before.get("status") == Status.CORRECTED:
        return None  # a confirmed suggestion: its confirmation was the review
    changed = {}
    if event.kind == EventKind.CORRECTED:
        new = after.get("fields") or {}
        changed = {name: (fields.get(name), new.get(name)) for name in names if fields.get(name) != new.get(name)}
    return _Review((str(extractor), before.get("model"), before.get("prompt_version")), changed)


def _show(value: object) -> str:
    """A field value as a correction lists it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _per_field(reviews: Sequence[_Review], names: Sequence[str]) -> list[FieldAccuracy]:
    return [FieldAccuracy(name, len(reviews), sum(name in r.changed for r in reviews)) for name in names]


def accuracy(sessions: sessionmaker[Session], names: Sequence[str], since: datetime | None,
             top: int = TOP_CORRECTIONS) -> Accuracy:
    """Accuracy of fields ``names`` over the reviews made since ``since`` (all of them when None)."""
    query = select(Event).where(Event.kind.in_(REVIEW_KINDS)).order_by(Event.id)
    if since is not None:
        query = query.where(Event.created_at >= since)
    with sessions() as session:
        reviews = [r for r in (_review(e, names) for e in session.scalars(query)) if r is not None]
    by_version: dict[tuple[str, str | None, str | None], list[_Review]] = {}
    for review in reviews:
        by_version.setdefault(review.version, []).append(review)
    versions = [VersionAccuracy(extractor, model, prompt, len(group), sum(bool(r.changed) for r in group),
                                _per_field(group, names))
                for (extractor, model, prompt), group in sorted(by_version.items(), key=lambda kv: -len(kv[1]))]
    counted = Counter((name, _show(old), _show(new)) for r in reviews for name, (old, new) in r.changed.items())
    return Accuracy(since, len(reviews), sum(bool(r.changed) for r in reviews), _per_field(reviews, names), versions,
                    [Correction(name, old, new, count) for (name, old, new), count in counted.most_common(top)])
