"""Scoring: what an extractor produced for each sample, against the gold labels.

:func:`run` asks an extractor for every sample (an exception counts as an error and a wrong
answer, not the end of the run); :func:`score` turns the outcomes into an :class:`EvaluationReport`:
per labelled field accuracy, macro F1, per-class precision and recall and the confusion matrix;
schema validity, tokens and cost; and, where the extractor says how sure it was (the learned
extractor's top probability), calibration (:func:`expected_calibration_error` over
:data:`ECE_BINS` fixed bins) and the coverage-accuracy curve.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from triage.conversation import Conversation
from triage.evaluation.labels import LABEL_FIELD, NO_TICKET, PROBLEM_TYPES, LoadedDataset, Sample
from triage.extraction.types import APIError, Attempt, ExtractionResult
from triage.learning.model import enum_fields
from triage.schema import TicketSchema
from triage.settings import ModelPrice

#: Fixed, equal-width confidence bins of the expected calibration error and the reliability diagram.
ECE_BINS = 15
#: The precisions the coverage figures are given at (``coverage_at_precision``).
PRECISIONS: tuple[float, ...] = (0.9, 0.95, 0.99)
#: Tokens per price unit (prices are per million tokens).
TOKENS_PER_PRICE_UNIT = 1_000_000

Progress = Callable[[int, int], None]
#: What one sample gave: the extractor's result, or the exception it raised.
Outcome = ExtractionResult | Exception


class Extractor(Protocol):
    def extract(self, conversation: Conversation) -> ExtractionResult: ...


@dataclass(frozen=True)
class ClassScore:
    """Precision and recall of one class (``None`` when undefined: nothing predicted or gold)."""

    precision: float | None
    recall: float | None
    support: int
    predicted: int

    @property
    def f1(self) -> float | None:
        if not self.precision or not self.recall:
            return None if self.precision is None or self.recall is None else 0.0
        return 2 * self.precision * self.recall / (self.precision + self.recall)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass
class FieldReport:
    """One labelled field's confusion matrix (gold -> predicted -> count) and what follows from it."""

    name: str
    confusion: dict[str, dict[str, int]]
    #: The schema's values of the field, in the order reports list them.
    order: tuple[str, ...] = ()

    @property
    def evaluated(self) -> int:
        return sum(sum(row.values()) for row in self.confusion.values())

    @property
    def correct(self) -> int:
        return sum(row.get(gold, 0) for gold, row in self.confusion.items())

    @property
    def accuracy(self) -> float | None:
        return ratio(self.correct, self.evaluated)

    @property
    def classes(self) -> list[str]:
        """Gold and predicted classes, the schema's order first."""
        seen = set(self.confusion) | {p for row in self.confusion.values() for p in row}
        return [c for c in self.order if c in seen] + sorted(seen - set(self.order))

    def per_class(self) -> dict[str, ClassScore]:
        scores = {}
        for name in self.classes:
            true_positive = self.confusion.get(name, {}).get(name, 0)
            support = sum(self.confusion.get(name, {}).values())
            predicted = sum(row.get(name, 0) for row in self.confusion.values())
            scores[name] = ClassScore(ratio(true_positive, predicted), ratio(true_positive, support), support,
                                      predicted)
        return scores

    @property
    def macro_f1(self) -> float | None:
        """Mean F1 over the classes that have gold examples (an undefined F1 counts as 0)."""
        gold = [score for score in self.per_class().values() if score.support]
        return sum(score.f1 or 0.0 for score in gold) / len(gold) if gold else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluated": self.evaluated, "correct": self.correct, "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {name: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support,
                                 "predicted": s.predicted} for name, s in self.per_class().items()},
            "confusion": {gold: dict(row) for gold, row in self.confusion.items()},
        }


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin: how many predictions fell in it, their mean confidence and their accuracy."""

    low: float
    high: float
    count: int
    confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class ConfidenceReport:
    """How well a field's confidence (the extractor's top probability) matches how often it is right."""

    field: str
    count: int
    ece: float
    bins: list[ReliabilityBin]
    #: (coverage, accuracy) when accepting the most confident predictions first, one point per threshold.
    curve: list[tuple[float, float]]
    coverage_at_precision: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "count": self.count, "ece": self.ece, "bins": ECE_BINS,
                "coverage_at_precision": dict(self.coverage_at_precision)}


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool],
                     bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """``bins`` equal-width bins over (0, 1]; a confidence of exactly 0 falls in the first.

    >>> [b.count for b in reliability_bins([0.0, 0.5, 1.0], [True, True, False], bins=2)]
    [2, 1]
    """
    counts = [0] * bins
    confidence_sums = [0.0] * bins
    right = [0] * bins
    for value, ok in zip(confidences, correct, strict=True):
        index = min(max(int(-(-value * bins // 1)) - 1, 0), bins - 1)  # ceil(value * bins) - 1
        counts[index] += 1
        confidence_sums[index] += value
        right[index] += ok
    return [ReliabilityBin(i / bins, (i + 1) / bins, counts[i], ratio(confidence_sums[i], counts[i]),
                           ratio(right[i], counts[i])) for i in range(bins)]


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool],
                               bins: int = ECE_BINS) -> float:
    """The sum over the bins of (share of predictions in the bin) * abs(accuracy - mean confidence).

    >>> expected_calibration_error([0.9, 0.9, 0.6, 0.6], [True, True, True, False])
    0.1
    """
    total = len(confidences)
    error = 0.0
    for bucket in reliability_bins(confidences, correct, bins):
        if bucket.count and bucket.confidence is not None and bucket.accuracy is not None:
            error += bucket.count / total * abs(bucket.accuracy - bucket.confidence)
    return round(error, 12)


def coverage_curve(confidences: Sequence[float], correct: Sequence[bool]) -> list[tuple[float, float]]:
    """Accept the predictions whose confidence is at least a threshold, for each threshold seen: the share
    accepted (coverage) and how many of them are right (accuracy), most confident first.

    >>> coverage_curve([0.9, 0.8, 0.8, 0.5], [True, True, False, False])
    [(0.25, 1.0), (0.75, 0.6666666666666666), (1.0, 0.5)]
    """
    ranked = sorted(zip(confidences, correct, strict=True), key=lambda pair: -pair[0])
    points = []
    right = 0
    for index, (value, ok) in enumerate(ranked):
        right += ok
        if index + 1 == len(ranked) or ranked[index + 1][0] != value:
            points.append(((index + 1) / len(ranked), right / (index + 1)))
    return points


def coverage_at(curve: Sequence[tuple[float, float]], precision: float) -> float:
    """The largest coverage whose accepted predictions are at least ``precision`` right (0 when none is).

    >>> coverage_at([(0.25, 1.0), (0.75, 0.67), (1.0, 0.5)], 0.95), coverage_at([(1.0, 0.5)], 0.9)
    (0.25, 0.0)
    """
    return max((coverage for coverage, accuracy in curve if accuracy >= precision), default=0.0)


#: The key of the ticket's own confidence (its lowest routing field's) among the per-field ones.
TICKET = "ticket"


def ticket_calibration(samples: Sequence[Sample], confidences: Sequence[Mapping[str, float] | None],
                       predicted: Sequence[Mapping[str, Any] | None]) -> ConfidenceReport | None:
    """The calibration of the tickets' confidence: per sample its lowest labelled field's confidence, right
    when every one of those fields is (``predicted``: each sample's ticket, or None)."""
    values: list[float] = []
    right: list[bool] = []
    for sample, scored, ticket in zip(samples, confidences, predicted, strict=True):
        labelled = [name for name in (scored or {}) if name in sample.labels]
        if scored and ticket is not None and labelled:
            values.append(min(scored[name] for name in labelled))
            right.append(all(_label_text(ticket.get(name)) == _label_text(sample.labels[name]) for name in labelled))
    return confidence_report(TICKET, values, right)


def confidence_report(name: str, confidences: Sequence[float], correct: Sequence[bool]) -> ConfidenceReport | None:
    """The calibration figures of one field, or ``None`` without any confidence."""
    if not confidences:
        return None
    curve = coverage_curve(confidences, correct)
    return ConfidenceReport(name, len(confidences), expected_calibration_error(confidences, correct),
                            reliability_bins(confidences, correct), curve,
                            {f"{p:.2f}": coverage_at(curve, p) for p in PRECISIONS})


@dataclass
class EvaluationReport:
    """Figures for one (data set, extractor); labelled data adds per-field scores and confusion matrices.

    The top-level ``confusion``, ``accuracy``, ``per_class`` and ``macro_f1`` are ``problem_type``'s,
    as they always were; ``fields`` has every labelled field's.
    """

    dataset: str
    source: str
    labelled: bool
    rows: int
    evaluated: int
    valid: int
    errors: int
    excluded: dict[str, int]
    unknown_labels: dict[str, int]
    confusion: dict[str, dict[str, int]]
    #: Predicted values per enum field of the schema.
    distributions: dict[str, dict[str, int]]
    #: How many tickets had each other field filled (not null, not empty).
    filled: dict[str, int]
    seconds: float
    limit: int | None = None
    error_examples: list[str] = field(default_factory=list)
    #: Predicted ``problem_type`` per sample key (for :func:`agreement`; not in ``to_dict``).
    predictions: dict[str, str] = field(default_factory=dict, repr=False)
    extractor: str = "rules"
    #: Every labelled field's scores (``problem_type``'s too).
    fields: dict[str, FieldReport] = field(default_factory=dict)
    #: Tokens the LLM's calls used (all attempts, batch items their share); 0 for the offline extractors.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: What the calls cost in the price table's currency; ``None`` when a model used has no price.
    cost: float | None = 0.0
    #: Per routing field and for the ticket (``ticket``), the calibration of the ticket's confidence
    #: (triage.confidence), where the outcomes carry one.
    confidence: dict[str, ConfidenceReport] = field(default_factory=dict)
    #: The same for the default combination (no calibration), where the evaluation computed it.
    default_confidence: ConfidenceReport | None = None
    #: Per field, where the extractor itself gave a probability (the learned extractor's top probability).
    probability: dict[str, ConfidenceReport] = field(default_factory=dict)
    #: ``test``: out-of-fold figures (``folds``); ``all``: the stored model on every row.
    split: str | None = None
    folds: int | None = None
    #: ``--split all``: how many evaluated texts the stored model was trained on (by hash), and its version.
    trained_on: int | None = None
    model_version: int | None = None
    #: The LLM: answers read from the answer cache instead of asked.
    cached: int = 0
    #: JSON Lines rows that could not be read.
    problems: list[str] = field(default_factory=list)
    #: Other extractors on the same rows: extractor -> (same problem_type, rows in both).
    agreement: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def _label_field(self) -> FieldReport:
        return self.fields.get(LABEL_FIELD) or FieldReport(LABEL_FIELD, self.confusion, PROBLEM_TYPES)

    @property
    def validity(self) -> float | None:
        return ratio(self.valid, self.evaluated)

    @property
    def correct(self) -> int:
        return self._label_field.correct

    @property
    def accuracy(self) -> float | None:
        return ratio(self.correct, self.evaluated) if self.labelled else None

    @property
    def classes(self) -> list[str]:
        return self._label_field.classes

    def per_class(self) -> dict[str, ClassScore]:
        return self._label_field.per_class()

    @property
    def macro_f1(self) -> float | None:
        return self._label_field.macro_f1

    @property
    def cost_per_1000(self) -> float | None:
        return None if self.cost is None else (1000 * self.cost / self.evaluated if self.evaluated else 0.0)

    @property
    def main_confidence(self) -> ConfidenceReport | None:
        """The ticket's confidence's calibration when it has one, else ``problem_type``'s, else the first field's."""
        return (self.confidence.get(TICKET) or self.confidence.get(LABEL_FIELD)
                or next(iter(self.confidence.values()), None))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (ratios as floats, ``None`` where undefined): one ``--json`` line."""
        labelled = self.labelled
        main = self.main_confidence
        return {
            "dataset": self.dataset, "extractor": self.extractor, "source": self.source, "labelled": labelled,
            "rows": self.rows, "evaluated": self.evaluated, "limit": self.limit, "split": self.split,
            "folds": self.folds, "model_version": self.model_version, "trained_on": self.trained_on,
            "excluded": dict(self.excluded), "unknown_labels": dict(self.unknown_labels),
            "valid": self.valid, "validity": self.validity, "errors": self.errors,
            "error_examples": list(self.error_examples), "problems": list(self.problems),
            "accuracy": self.accuracy, "correct": self.correct if labelled else None,
            "macro_f1": self.macro_f1 if labelled else None,
            "per_class": {
                name: {"precision": s.precision, "recall": s.recall, "f1": s.f1,
                       "support": s.support, "predicted": s.predicted}
                for name, s in self.per_class().items()
            } if labelled else {},
            "confusion": {gold: dict(row) for gold, row in self.confusion.items()} if labelled else {},
            "fields": {name: report.to_dict() for name, report in self.fields.items()},
            "distributions": {name: dict(counts) for name, counts in self.distributions.items()},
            "filled": dict(self.filled),
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "cost_per_1000": self.cost_per_1000, "cached": self.cached,
            "confidence": None if main is None else {
                **main.to_dict(), "fields": {name: c.to_dict() for name, c in self.confidence.items()},
                "default": self.default_confidence.to_dict() if self.default_confidence else None},
            "probability": {name: c.to_dict() for name, c in self.probability.items()} or None,
            "agreement": {other: {"same": same, "shared": shared, "rate": ratio(same, shared)}
                          for other, (same, shared) in self.agreement.items()},
            "seconds": round(self.seconds, 3),
        }


def _ordered(counts: Counter[str], order: Sequence[str]) -> dict[str, int]:
    rank = {value: i for i, value in enumerate(order)}
    return dict(sorted(counts.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def enum_values(schema: TicketSchema | None) -> dict[str, tuple[str, ...]]:
    """The schema's enum fields and their values (the default schema's classes without one)."""
    return {LABEL_FIELD: PROBLEM_TYPES} if schema is None else enum_fields(schema.properties)


def schema_of(extractor: object, schema: TicketSchema | None) -> TicketSchema | None:
    found = schema if schema is not None else getattr(extractor, "schema", None)
    return found if isinstance(found, TicketSchema) else None


def run(samples: Sequence[Sample], extractor: Extractor, progress: Progress | None = None) -> list[Outcome]:
    """Ask ``extractor`` for each sample in turn; ``progress(done, total)`` after each one."""
    outcomes: list[Outcome] = []
    for done, sample in enumerate(samples, 1):
        try:
            outcomes.append(extractor.extract(sample.conversation))
        except Exception as exc:  # an LLM extractor may raise per item; keep measuring the rest
            outcomes.append(exc)
        if progress is not None:
            progress(done, len(samples))
    return outcomes


def _attempts(outcome: Outcome) -> Sequence[Attempt]:
    if isinstance(outcome, ExtractionResult):
        return outcome.attempts
    return outcome.attempts if isinstance(outcome, APIError) else ()


def attempts_cost(attempts: Sequence[Attempt], prices: Mapping[str, ModelPrice]) -> float | None:
    """What ``attempts`` cost by the price table; ``None`` when one that used tokens has no price."""
    total = 0.0
    for attempt in attempts:
        if not (attempt.prompt_tokens or attempt.completion_tokens):
            continue
        price = prices.get(attempt.model)
        if price is None:
            return None
        total += ((attempt.prompt_tokens or 0) * price.input_per_million
                  + (attempt.completion_tokens or 0) * price.output_per_million) / TOKENS_PER_PRICE_UNIT
    return total


def _show_error(outcome: Outcome) -> str | None:
    if isinstance(outcome, Exception):
        return f"{type(outcome).__name__}: {outcome}"[:300]
    if outcome.ticket is None:
        return f"no ticket: {outcome.failure_reason} {outcome.failure_detail or ''}".strip()[:300]
    return None


def _label_text(value: object) -> str:
    return value if isinstance(value, str) else NO_TICKET if value is None else str(value)


def score(loaded: LoadedDataset, samples: Sequence[Sample], outcomes: Sequence[Outcome], *,
          schema: TicketSchema | None, extractor: str, seconds: float, limit: int | None = None,
          prices: Mapping[str, ModelPrice] | None = None) -> EvaluationReport:
    """The report of ``outcomes`` (one per sample, in order) against the samples' labels.

    Validity is checked against ``schema`` (without one, a returned ticket counts as valid).
    """
    enums = enum_values(schema)
    labelled_fields = loaded.fields if loaded.labelled else []
    confusions: dict[str, dict[str, Counter[str]]] = {name: {} for name in labelled_fields}
    distributions: dict[str, Counter[str]] = {name: Counter() for name in enums}
    filled: Counter[str] = Counter()
    confidences: dict[str, tuple[list[float], list[bool]]] = {}
    probabilities: dict[str, tuple[list[float], list[bool]]] = {}
    scored: list[Mapping[str, float] | None] = []
    tickets: list[Mapping[str, Any] | None] = []
    valid = errors = prompt_tokens = completion_tokens = 0
    cost: float | None = 0.0
    error_examples: list[str] = []
    predictions: dict[str, str] = {}
    for sample, outcome in zip(samples, outcomes, strict=True):
        ticket = outcome.ticket if isinstance(outcome, ExtractionResult) else None
        errors += isinstance(outcome, Exception)
        problem = _show_error(outcome)
        if problem and len(error_examples) < 5 and isinstance(outcome, Exception):
            error_examples.append(problem)
        valid += ticket is not None and (schema is None or not schema.validate(ticket))
        attempts = _attempts(outcome)
        prompt_tokens += sum(a.prompt_tokens or 0 for a in attempts)
        completion_tokens += sum(a.completion_tokens or 0 for a in attempts)
        spent = attempts_cost(attempts, prices or {})
        cost = None if cost is None or spent is None else cost + spent
        for name, value in (ticket or {}).items():
            if name in distributions:
                distributions[name][str(value)] += 1
            elif value not in (None, "", [], {}):
                filled[name] += 1
        predictions[sample.key] = _label_text((ticket or {}).get(LABEL_FIELD)) if ticket else NO_TICKET
        result = outcome if isinstance(outcome, ExtractionResult) else None
        sure = result.field_confidence if result is not None else None
        own = result.confidence if result is not None else None
        scored.append(sure)
        tickets.append(ticket)
        for name, gold in sample.labels.items():
            if name not in confusions:
                continue
            predicted = _label_text(ticket.get(name)) if ticket is not None and name in ticket else NO_TICKET
            confusions[name].setdefault(_label_text(gold), Counter())[predicted] += 1
            for given, into in ((sure, confidences), (own, probabilities)):
                if given and name in given:
                    values, right = into.setdefault(name, ([], []))
                    values.append(given[name])
                    right.append(predicted == _label_text(gold))
    fields = {name: FieldReport(name, {gold: dict(row) for gold, row in rows.items()}, enums.get(name, ()))
              for name, rows in confusions.items()}
    label = fields.get(LABEL_FIELD)
    return EvaluationReport(
        dataset=loaded.name, source=str(loaded.source), labelled=loaded.labelled and label is not None,
        rows=loaded.rows, evaluated=len(samples), valid=valid, errors=errors, excluded=dict(loaded.excluded),
        unknown_labels=dict(loaded.unknown), confusion=label.confusion if label else {},
        distributions={name: _ordered(counts, (*PROBLEM_TYPES, "high", "normal", "low", *enums.get(name, ())))
                       for name, counts in distributions.items() if counts},
        filled=dict(filled), seconds=seconds, limit=limit, error_examples=error_examples, predictions=predictions,
        extractor=extractor, fields=fields, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        cost=cost, problems=list(loaded.problems),
        confidence=_reports(confidences, ticket_calibration(samples, scored, tickets)),
        probability=_reports(probabilities, None),
    )


def _reports(pairs: Mapping[str, tuple[list[float], list[bool]]],
             ticket: ConfidenceReport | None) -> dict[str, ConfidenceReport]:
    reports = {name: report for name, (values, right) in pairs.items()
               if (report := confidence_report(name, values, right)) is not None}
    return {**reports, TICKET: ticket} if ticket is not None else reports


def timed_run(samples: Sequence[Sample], extractor: Extractor,
              progress: Progress | None = None) -> tuple[list[Outcome], float]:
    """:func:`run` and the seconds it took."""
    started = time.perf_counter()
    outcomes = run(samples, extractor, progress)
    return outcomes, time.perf_counter() - started


def agreement(first: EvaluationReport, second: EvaluationReport) -> tuple[int, int]:
    """(same ``problem_type``, items in both) over the sample keys two reports share.

    For stc3, whose cn and en files are the same dialogues, it measures how consistently an
    extractor reads the two languages; for two extractors on one data set, how often they agree.

    >>> def report(predictions):
    ...     return EvaluationReport("x", "", False, 2, 2, 2, 0, {}, {}, {}, {}, {}, 0.0, predictions=predictions)
    >>> agreement(report({"1": "consult", "2": "other"}), report({"1": "consult", "2": "complaint"}))
    (1, 2)
    """
    shared = first.predictions.keys() & second.predictions.keys()
    return sum(first.predictions[k] == second.predictions[k] for k in shared), len(shared)
