"""Fitting the combination on labelled decisions, and how well the result is calibrated.

A :class:`Decision` is what the machine decided (its group, values and signals, as stored with the
ticket) next to what is right (a review's label, or a labelled file's). For each (routing field,
group) with at least ``calibrate.min_labels`` labelled decisions, a scikit-learn ``LogisticRegression``
is fitted on the signal vectors (target: the machine's value survived review); its intercept and
coefficients are the head. Labels that are all right (or all wrong) give a constant head, their
Laplace-smoothed rate. Other heads keep the default.

Figures are held-out: the same recipe cross-validated on seeded, stratified folds
(``learn.folds``, ``learn.seed``), each decision scored by heads fitted without it. The report
gives the expected calibration error (:data:`~triage.evaluation.scoring.ECE_BINS` bins) of each
field and of the ticket (its lowest field; right when every labelled routing field is), the
default combination's on the same decisions for comparison, and the thresholds that reach
``quality.target_precision``: the lowest ticket confidence such that, of the tickets at or
above it, that share survived review, and the share of tickets it lets through (overall and per route).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from triage.confidence.combine import Combination, Head, ticket_confidence
from triage.confidence.signals import SIGNALS, Group, SignalRecord, logit
from triage.evaluation.scoring import expected_calibration_error


@dataclass(frozen=True)
class Decision:
    """A machine decision and its labels (routing field -> the right value); ``route`` when known."""

    record: SignalRecord
    labels: Mapping[str, str]
    route: str | None = None
    source: str = "reviews"
    #: Routing fields a review shows the machine got wrong without telling the right value: an agent moved the
    #: ticket to a route none of whose rules takes the machine's value (:func:`refuted_fields`).
    refuted: frozenset[str] = frozenset()

    def labelled(self, name: str) -> bool:
        return name in self.labels or name in self.refuted

    def right(self, name: str) -> bool:
        return name not in self.refuted and self.record.values.get(name) == self.labels.get(name)


@dataclass(frozen=True)
class FitSettings:
    """What a fit needs: the fewest labels of a head, the held-out folds and the target precision."""

    min_labels: int
    folds: int
    seed: int
    target_precision: float
    #: scikit-learn's inverse regularisation strength of each head's logistic regression.
    c: float = 1.0


@dataclass(frozen=True)
class Threshold:
    """The lowest confidence reaching the target precision, the share it lets through, and its precision."""

    threshold: float | None
    coverage: float
    precision: float | None
    tickets: int

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "coverage": self.coverage, "precision": self.precision,
                "tickets": self.tickets}


@dataclass
class CalibrationReport:
    """Held-out figures of a fit."""

    decisions: int
    #: (field, group) -> labelled decisions, and whether a head was fitted (else: the default).
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: field (and ``ticket``) -> ECE of the calibrated (held-out) and of the default combination.
    ece: dict[str, float] = field(default_factory=dict)
    default_ece: dict[str, float] = field(default_factory=dict)
    target_precision: float = 0.95
    threshold: Threshold | None = None
    routes: dict[str, Threshold] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"decisions": self.decisions, "heads": self.heads, "ece": self.ece, "default_ece": self.default_ece,
                "target_precision": self.target_precision,
                "threshold": self.threshold.to_json() if self.threshold else None,
                "routes": {route: t.to_json() for route, t in self.routes.items()}, "notes": list(self.notes)}


def matrix(records: Sequence[Mapping[str, float]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array([[signals.get(name, 0.0) for name in SIGNALS] for signals in records], dtype=np.float64)


def fit_head(records: Sequence[Mapping[str, float]], right: Sequence[bool], c: float) -> Head:
    """A logistic regression of ``right`` on the signal vectors, as a head."""
    model = LogisticRegression(C=c, max_iter=1000)
    model.fit(matrix(records), np.array(right, dtype=int))
    return Head(float(model.intercept_[0]), dict(zip(SIGNALS, map(float, model.coef_[0]), strict=True)))


def constant_head(right: int, total: int) -> Head:
    """A head for labels that were all right (or all wrong): the rate with one right and one wrong added
    (Laplace), whatever the signals; nothing to regress on.

    >>> round(constant_head(998, 998).score({}), 4)
    0.999
    """
    return Head(logit((right + 1) / (total + 2)), {})


def _groups(decisions: Sequence[Decision], fields: Sequence[str]) -> dict[tuple[str, Group], list[int]]:
    groups: dict[tuple[str, Group], list[int]] = {}
    for index, decision in enumerate(decisions):
        for name in fields:
            if decision.labelled(name) and name in decision.record.signals:
                groups.setdefault((name, decision.record.group), []).append(index)
    return groups


def fit_heads(decisions: Sequence[Decision], fields: Sequence[str], settings: FitSettings,
              ) -> tuple[dict[tuple[str, Group], Head], dict[str, dict[str, Any]]]:
    """The fitted heads and, per ``field/group``, how many labels it had and whether it was fitted."""
    heads: dict[tuple[str, Group], Head] = {}
    about: dict[str, dict[str, Any]] = {}
    for (name, group), members in sorted(_groups(decisions, fields).items()):
        right = [decisions[i].right(name) for i in members]
        fitted = len(members) >= settings.min_labels
        if fitted:
            records = [decisions[i].record.signals[name] for i in members]
            heads[(name, group)] = (fit_head(records, right, settings.c) if 0 < sum(right) < len(right)
                                    else constant_head(sum(right), len(right)))
        about[f"{name}/{group}"] = {"labels": len(members), "right": sum(right), "fitted": fitted}
    return heads, about


def _folds(decisions: Sequence[Decision], settings: FitSettings) -> list[tuple[list[int], list[int]]]:
    strata = [f"{d.record.group}:{all(d.right(n) for n in d.record.values if d.labelled(n))}" for d in decisions]
    splits = min(settings.folds, len(decisions))
    if splits < 2:
        return []
    splitter = StratifiedKFold(splits, shuffle=True, random_state=settings.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        return [(list(map(int, a)), list(map(int, b))) for a, b in splitter.split(np.zeros(len(strata)), strata)]


def held_out_confidence(decisions: Sequence[Decision], fields: Sequence[str], settings: FitSettings,
                        progress: Callable[[int, int], None] | None = None, *,
                        split: Sequence[tuple[Sequence[int], Sequence[int]]] | None = None) -> list[dict[str, float]]:
    """Each decision's field confidences from heads fitted on the folds it is not in (``split``: the folds as
    decision indices; default: seeded folds stratified by group and outcome)."""
    scored: list[dict[str, float]] = [{} for _ in decisions]
    split = split if split is not None else _folds(decisions, settings)
    for done, (train, test) in enumerate(split, 1):
        heads, _ = fit_heads([decisions[i] for i in train], fields, settings)
        combination = Combination(heads)
        for i in test:
            scored[i] = combination.field_confidence(decisions[i].record)
        if progress is not None:
            progress(done, len(split))
    return scored


def threshold_for(confidences: Sequence[float], right: Sequence[bool], precision: float) -> Threshold:
    """The lowest confidence whose tickets at or above it are at least ``precision`` right.

    >>> threshold_for([0.9, 0.8, 0.7, 0.6], [True, True, False, True], 0.95).to_json()
    {'threshold': 0.8, 'coverage': 0.5, 'precision': 1.0, 'tickets': 4}
    """
    ranked = sorted(zip(confidences, right, strict=True), key=lambda pair: -pair[0])
    best: Threshold = Threshold(None, 0.0, None, len(ranked))
    correct = 0
    for index, (value, ok) in enumerate(ranked):
        correct += ok
        last_of_value = index + 1 == len(ranked) or ranked[index + 1][0] != value
        if last_of_value and correct / (index + 1) >= precision:
            best = Threshold(value, (index + 1) / len(ranked), correct / (index + 1), len(ranked))
    return best


def _ticket_figures(decisions: Sequence[Decision], scored: Sequence[Mapping[str, float]],
                    fields: Sequence[str]) -> tuple[list[float], list[bool], list[str | None]]:
    values, right, routes = [], [], []
    for decision, confidences in zip(decisions, scored, strict=True):
        labelled = {n: c for n, c in confidences.items() if decision.labelled(n) and n in fields}
        lowest = ticket_confidence(labelled)
        if lowest is not None:
            values.append(lowest)
            right.append(all(decision.right(n) for n in labelled))
            routes.append(decision.route)
    return values, right, routes


def eces(decisions: Sequence[Decision], scored: Sequence[Mapping[str, float]], fields: Sequence[str],
         ) -> dict[str, float]:
    """ECE per field and for the ticket, of ``scored`` (one field -> confidence mapping per decision)."""
    figures: dict[str, float] = {}
    for name in fields:
        pairs = [(s[name], d.right(name)) for d, s in zip(decisions, scored, strict=True)
                 if name in s and d.labelled(name)]
        if pairs:
            figures[name] = expected_calibration_error([p for p, _ in pairs], [r for _, r in pairs])
    values, right, _ = _ticket_figures(decisions, scored, fields)
    if values:
        figures["ticket"] = expected_calibration_error(values, right)
    return figures


def calibrate(decisions: Sequence[Decision], fields: Sequence[str], settings: FitSettings,
              progress: Callable[[int, int], None] | None = None) -> tuple[Combination, CalibrationReport]:
    """The heads fitted on every decision, and their held-out report."""
    heads, about = fit_heads(decisions, fields, settings)
    report = CalibrationReport(len(decisions), about, target_precision=settings.target_precision)
    if not heads:
        report.notes.append(f"no head had {settings.min_labels} labelled decisions (calibrate.min_labels): the "
                            "default combination stays in use")
    scored = held_out_confidence(decisions, fields, settings, progress)
    report.ece = eces(decisions, scored, fields)
    default = Combination()
    report.default_ece = eces(decisions, [default.field_confidence(d.record) for d in decisions], fields)
    values, right, routes = _ticket_figures(decisions, scored, fields)
    if values:
        report.threshold = threshold_for(values, right, settings.target_precision)
        for route in sorted({r for r in routes if r is not None}):
            chosen = [i for i, r in enumerate(routes) if r == route]
            report.routes[route] = threshold_for([values[i] for i in chosen], [right[i] for i in chosen],
                                                 settings.target_precision)
    return Combination(heads), report
