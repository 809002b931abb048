"""How often the extractors' values survive review: every person's correction is a label.

A *review* is a person's verdict on a machine's ticket (an extractor's fields, not a person's):

- a correction (event ``corrected`` whose before-snapshot was written by an extractor): each field
  the person changed was wrong, each field they left was right;
- a resolve without a correction (event ``resolved`` whose before-snapshot is an extractor's): every
  field was right;
- a helpdesk agent's group or priority change on a ticket triage wrote back (event ``helpdesk_review``,
  :mod:`triage.intake.labels`): a route-level (or priority-level) label. It reviews the route (or the
  priority), and only the fields its label implies (``after.label.fields``): a field it says nothing of is
  not counted as reviewed.

Besides the fields, each report counts the route and the priority per machine decision (``routes``,
``priorities``: how often the route the extractor's fields led to survived review).
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.states.tickets import HUMAN_EXTRACTOR, REVIEW_KINDS, EventKind, Status
from triage.store.models import Event

#: How many of the most common corrections a report lists.
TOP_CORRECTIONS = 10


class Survival:
    """``reviewed`` values, ``corrected`` of them by a person: how many survived, and their share."""

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
class FieldAccuracy(Survival):
    field: str
    reviewed: int
    corrected: int


@dataclass(frozen=True)
class DecisionAccuracy(Survival):
    """How often one machine route (or priority) survived the reviews that tell a route (or priority)."""

    value: str
    reviewed: int
    corrected: int


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
    #: Per machine route and priority: the reviews that tell one, and how many changed it.
    routes: list[DecisionAccuracy] = field(default_factory=list)
    priorities: list[DecisionAccuracy] = field(default_factory=list)


#: A decision a review tells: (the machine's, the reviewer's).
Verdict = tuple[str | None, str | None]


@dataclass(frozen=True)
class _Review:
    version: tuple[str, str | None, str | None]
    changed: dict[str, tuple[Any, Any]]
    #: The fields the review tells (None: every one).
    labelled: frozenset[str] | None = None
    route: Verdict | None = None
    priority: Verdict | None = None

    @property
    def corrected(self) -> bool:
        return bool(self.changed) or any(v is not None and v[0] != v[1] for v in (self.route, self.priority))

    def tells(self, name: str) -> bool:
        return self.labelled is None or name in self.labelled



def _review(event: Event, names: Sequence[str]) -> _Review | None:
    """The label an audit event gives, if it is one."""
    before, after = event.before or {}, event.after or {}
    extractor, fields = before.get("extractor"), before.get("fields")
    if extractor in (None, HUMAN_EXTRACTOR) or not fields:
        return None
    version = (str(extractor), before.get("model"), before.get("prompt_version"))
    if event.kind == EventKind.HELPDESK_REVIEW:
        return _helpdesk_review(version, before, after.get("label") or {}, fields, names)
    if event.kind == EventKind.RESOLVED and before.get("status") == Status.CORRECTED:
        return None  # a confirmed suggestion: its confirmation was the review
    changed = {}
    reviewed = before
    if event.kind == EventKind.CORRECTED:
        new = after.get("fields") or {}
        changed = {name: (fields.get(name), new.get(name)) for name in names if fields.get(name) != new.get(name)}
        reviewed = after
    return _Review(version, changed, route=(before.get("route"), reviewed.get("route")),
                   priority=(before.get("priority"), reviewed.get("priority")))


def _helpdesk_review(version: tuple[str, str | None, str | None], before: Mapping[str, Any],
                     label: Mapping[str, Any], fields: Mapping[str, Any], names: Sequence[str]) -> _Review:
    """A helpdesk label: the route or priority it names, and the fields it implies (no others)."""
    given = label.get("fields")
    implied: Mapping[str, Any] = given if isinstance(given, dict) else {}
    told = frozenset(name for name in names if name in implied)
    changed = {name: (fields.get(name), implied[name]) for name in told if fields.get(name) != implied[name]}
    route = (before.get("route"), label["route"]) if label.get("route") else None
    priority = (before.get("priority"), label["priority"]) if label.get("priority") else None
    return _Review(version, changed, told, route, priority)


def _show(value: object) -> str:
    """A field value as a correction lists it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _per_field(reviews: Sequence[_Review], names: Sequence[str]) -> list[FieldAccuracy]:
    return [FieldAccuracy(name, sum(r.tells(name) for r in reviews), sum(name in r.changed for r in reviews))
            for name in names]


def _per_decision(verdicts: Sequence[Verdict | None]) -> list[DecisionAccuracy]:
    """Per machine value (most reviewed first): how many verdicts tell it, and how many changed it."""
    told = [(str(machine), machine != person) for verdict in verdicts if verdict is not None
            for machine, person in [verdict] if machine is not None]
    reviewed = Counter(machine for machine, _ in told)
    corrected = Counter(machine for machine, changed in told if changed)
    return [DecisionAccuracy(value, count, corrected[value]) for value, count in reviewed.most_common()]


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
    versions = [VersionAccuracy(extractor, model, prompt, len(group), sum(r.corrected for r in group),
                                _per_field(group, names))
                for (extractor, model, prompt), group in sorted(by_version.items(), key=lambda kv: -len(kv[1]))]
    counted = Counter((name, _show(old), _show(new)) for r in reviews for name, (old, new) in r.changed.items())
    return Accuracy(since, len(reviews), sum(r.corrected for r in reviews), _per_field(reviews, names), versions,
                    [Correction(name, old, new, count) for (name, old, new), count in counted.most_common(top)],
                    routes=_per_decision([r.route for r in reviews]),
                    priorities=_per_decision([r.priority for r in reviews]))
