"""The confidence of an evaluation's outcomes, held out: what ``triage evaluate`` and ``triage calibrate`` share.

Given each sample's outcome (from any extractor), the other extractors' opinions on the same samples
(the rules' tickets; the learned model's out-of-fold class probabilities) and the folds, every outcome
that holds a ticket gets its signal record; the calibration is fitted on the other folds' labelled
decisions and scores the held-out ones, so no figure rests on a decision the calibration saw.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from triage.confidence.calibrate import Decision, FitSettings, held_out_confidence
from triage.confidence.combine import DEFAULT, ticket_confidence
from triage.confidence.signals import SecondOpinions, SignalRecord, group_of, signal_record
from triage.evaluation.labels import Sample
from triage.evaluation.runners import run_out_of_fold
from triage.evaluation.scoring import run
from triage.extraction.rules import RulesExtractor
from triage.extraction.types import ExtractionResult
from triage.schema import TicketSchema
from triage.settings import LearnSettings

Split = Sequence[tuple[Sequence[int], Sequence[int]]]


@dataclass(frozen=True)
class Opinions:
    """Per sample, what the rules extractor gave and what the learned model (held out) gives each class."""

    rules: Sequence[Mapping[str, Any] | None] | None = None
    learned: Sequence[Mapping[str, Mapping[str, float]]] | None = None

    def of(self, index: int, extractor: str) -> SecondOpinions:
        group = group_of(extractor)
        return SecondOpinions(self.rules[index] if self.rules is not None and group != "rules" else None,
                              self.learned[index] if self.learned is not None and group != "learned" else None)


def _labels(sample: Sample, fields: Sequence[str]) -> dict[str, str]:
    return {name: str(sample.labels[name]) for name in fields if sample.labels.get(name) is not None}


def decisions_of(samples: Sequence[Sample], outcomes: Sequence[object], opinions: Opinions, fields: Sequence[str],
                 source: str) -> dict[int, Decision]:
    """The labelled decision of every sample whose outcome holds a ticket, by sample index."""
    found: dict[int, Decision] = {}
    for index, (sample, outcome) in enumerate(zip(samples, outcomes, strict=True)):
        if isinstance(outcome, ExtractionResult) and outcome.ticket is not None:
            record = signal_record(outcome, fields, opinions.of(index, outcome.extractor))
            found[index] = Decision(record, _labels(sample, fields), source=source)
    return found


def _decision_split(split: Split, positions: Mapping[int, int]) -> list[tuple[list[int], list[int]]]:
    return [([positions[i] for i in train if i in positions], [positions[i] for i in test if i in positions])
            for train, test in split]


def score_held_out(samples: Sequence[Sample], outcomes: Sequence[object], opinions: Opinions, fields: Sequence[str],
                   settings: FitSettings, split: Split, source: str,
                   progress: Callable[[int, int], None] | None = None) -> list[dict[str, float] | None]:
    """Set every ticket-holding outcome's held-out calibrated confidence (``split``: the sample folds); returns
    the default combination's confidence of each sample, for comparison (None without a ticket)."""
    found = decisions_of(samples, outcomes, opinions, fields, source)
    indices = sorted(found)
    decisions = [found[i] for i in indices]
    positions = {sample_index: position for position, sample_index in enumerate(indices)}
    scored = held_out_confidence(decisions, fields, settings, progress, split=_decision_split(split, positions))
    defaults: list[dict[str, float] | None] = [None] * len(samples)
    for sample_index, decision, confidence in zip(indices, decisions, scored, strict=True):
        outcome = outcomes[sample_index]
        assert isinstance(outcome, ExtractionResult)
        _set(outcome, decision.record, confidence)
        defaults[sample_index] = DEFAULT.field_confidence(decision.record)
    return defaults


def _set(outcome: ExtractionResult, record: SignalRecord, confidence: dict[str, float]) -> None:
    outcome.field_confidence = confidence
    outcome.ticket_confidence = ticket_confidence(confidence)
    outcome.confidence_signals = record.to_json()


def dataset_decisions(samples: Sequence[Sample], schema: TicketSchema, learn: LearnSettings, rules: RulesExtractor,
                      fields: Sequence[str], source: str, route: Callable[[Mapping[str, str]], str],
                      progress: Callable[[str], Callable[[int, int], None]]) -> list[Decision]:
    """The labelled decisions a labelled data set gives the offline extractors: the rules' on every row and
    the learned extractor's out of fold (a throw-away model per fold, when the set has enough rows), each
    with the other's opinion. The LLM costs money per row: its head learns from the desk's reviews."""
    rules_outcomes = run(samples, rules, progress(f"{source} rules"))
    learned = None
    with suppress(ValueError):  # too few rows (or classes) to cross-validate: the rules' decisions only
        learned = run_out_of_fold(samples, schema, learn, source, rules, progress(f"{source} learned"))
    opinions = Opinions([o.ticket if isinstance(o, ExtractionResult) else None for o in rules_outcomes],
                        learned.distributions if learned is not None else None)
    decisions = list(decisions_of(samples, rules_outcomes, opinions, fields, source).values())
    if learned is not None:
        decisions += decisions_of(samples, learned.outcomes, opinions, fields, source).values()
    return [Decision(d.record, d.labels, route(d.record.values), d.source) for d in decisions if d.labels]
