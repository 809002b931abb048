"""Scoring a machine extraction: its signals, second opinions and the combination in use.

The worker scores every result that holds a ticket before the policy decides what happens to it
(:func:`triage.worker.tasks` calls :meth:`ConfidenceScorer.score`): the rules extractor and the newest learned
model (when one is stored) give their opinion on the same conversation unless they decided themselves,
the newest calibration (or the default combination) turns the signals into a confidence per routing
field, and the result carries them (``field_confidence``, ``ticket_confidence``, ``confidence_signals``)
to the ticket and its attempt::

    scorer = ConfidenceScorer(router.fields, rules, learned_models, CalibrationSource(sessions, clock, 30))
    scorer.score(result, conversation)
    result.ticket_confidence        # 0.83
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Protocol

from triage.confidence.combine import Combination, ticket_confidence
from triage.confidence.signals import SecondOpinions, group_of, signal_record
from triage.conversation import Conversation
from triage.extraction.types import ExtractionResult
from triage.learning.features import model_text
from triage.learning.model import LearnedModel

log = logging.getLogger(__name__)


class Rules(Protocol):
    def extract(self, conversation: Conversation) -> ExtractionResult: ...


class Models(Protocol):
    def current(self) -> LearnedModel | None: ...


class Combinations(Protocol):
    def current(self) -> Combination: ...


def apply(result: ExtractionResult, record_fields: Collection[str], opinions: SecondOpinions,
          combination: Combination) -> ExtractionResult:
    """Set ``result``'s confidence (it holds a ticket) from ``opinions`` and ``combination``."""
    record = signal_record(result, record_fields, opinions)
    result.field_confidence = combination.field_confidence(record)
    result.ticket_confidence = ticket_confidence(result.field_confidence)
    result.confidence_signals = {**record.to_json(), "combination": combination.name}
    return result


class ConfidenceScorer:
    """Scores results for the routing ``fields`` with the rules, the learned models and the combinations given."""

    def __init__(self, fields: Collection[str], rules: Rules, models: Models, combinations: Combinations) -> None:
        self.fields = frozenset(fields)
        self.rules = rules
        self.models = models
        self.combinations = combinations

    def opinions(self, result: ExtractionResult, conversation: Conversation) -> SecondOpinions:
        """What the extractors that did not decide ``result`` say about ``conversation``."""
        group = group_of(result.extractor)
        rules = None if group == "rules" else (self.rules.extract(conversation).ticket or None)
        model = None if group == "learned" else self.models.current()
        learned = None if model is None else model.distributions_texts([model_text(conversation)])[0]
        return SecondOpinions(rules, learned)

    def score(self, result: ExtractionResult, conversation: Conversation) -> ExtractionResult:
        """``result`` with its confidence set when it holds a ticket. A failure to score is logged and leaves
        the confidence unset: it never costs the ticket."""
        if result.ticket is None:
            return result
        try:
            return apply(result, self.fields, self.opinions(result, conversation), self.combinations.current())
        except Exception:
            log.exception("could not score the confidence of a %s extraction; it is stored without one",
                          result.extractor)
            return result
