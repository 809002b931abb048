"""The learned extractor: the latest stored model decides the enum fields, the rules fill in the rest.

Every worker on every host scores with the newest version in the database: :class:`ModelSource`
asks for the newest version number at most every ``learn.poll_seconds`` (by the app's clock, at
most a minute) and loads a version only when it is newer, so a version stored by ``triage learn``
or the retraining job reaches the whole fleet within a minute, with no restart.

A field's value is the model's when the model has that field and its class is one the schema allows;
otherwise (free-text fields, a field the model was not trained on) it is the rules extractor's. The
result carries each learned field's calibrated probability as its ``confidence``::

    extractor = LearnedExtractor(schema, ModelSource(sessions, clock, poll_seconds=30), RulesExtractor(schema))
    result = extractor.extract(conversation)
    result.model, result.confidence      # 'learned-v3', {'problem_type': 0.97, 'urgent_level': 0.81}
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, Protocol

from sqlalchemy.orm import Session, sessionmaker

from triage.clock import Clock
from triage.conversation import Conversation
from triage.errors import ConfigError
from triage.extraction.rules import RulesExtractor
from triage.extraction.types import Attempt, ExtractionResult
from triage.learning.features import model_text
from triage.learning.model import LearnedModel, Prediction, enum_fields
from triage.learning.store import latest_version, load_version
from triage.schema import TicketSchema

EXTRACTOR: Final = "learned"


class NoModelError(ConfigError):
    """The learned extractor is asked for but no model version is stored."""


NO_MODEL_HINT = ("no learned model is stored: run `triage learn DATASET...` (or `triage learn --from-reviews`) "
                 "first, or choose another extractor")


class Models(Protocol):
    def current(self) -> LearnedModel | None: ...


class FixedModel:
    """One model held in memory (a throw-away fold model of ``triage evaluate --split test``)."""

    def __init__(self, model: LearnedModel) -> None:
        self.model = model

    def current(self) -> LearnedModel:
        return self.model


class ModelSource:
    """The newest stored version, re-checked at most every ``poll_seconds`` of ``clock``; thread-safe."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, poll_seconds: float) -> None:
        self.sessions = sessions
        self.clock = clock
        self.poll = timedelta(seconds=poll_seconds)
        self._lock = threading.Lock()
        self._model: LearnedModel | None = None
        self._checked_at: datetime | None = None

    def current(self) -> LearnedModel | None:
        """The newest version as of the last check (a check is made when the last one is ``poll_seconds`` old)."""
        now = self.clock.now()
        with self._lock:
            if self._checked_at is None or now - self._checked_at >= self.poll:
                self._checked_at = now
                newest = latest_version(self.sessions)
                if newest is not None and (self._model is None or self._model.version != newest):
                    self._model = load_version(self.sessions, newest) or self._model
            return self._model


class LearnedExtractor:
    """Same ``extract`` shape as the other extractors; :meth:`extract_many` scores many texts at once."""

    def __init__(self, schema: TicketSchema, models: Models, rules: RulesExtractor | None = None) -> None:
        self.schema = schema
        self.models = models
        self.rules = rules or RulesExtractor(schema)
        self._allowed = enum_fields(schema.properties)

    def model(self) -> LearnedModel:
        found = self.models.current()
        if found is None:
            raise NoModelError(NO_MODEL_HINT)
        return found

    def extract(self, conversation: Conversation, prior: Sequence[Attempt] = ()) -> ExtractionResult:
        """The ticket for ``conversation``; ``prior`` (earlier LLM attempts) is accepted and ignored."""
        del prior
        model = self.model()
        return self._result(self.rules.extract(conversation), model.predict(conversation), model)

    def extract_many(self, conversations: Sequence[Conversation]) -> list[ExtractionResult]:
        """:meth:`extract` for each conversation, the model scoring them all in one pass."""
        model = self.model()
        predictions = model.predict_texts([model_text(c) for c in conversations])
        return [self._result(self.rules.extract(c), p, model) for c, p in zip(conversations, predictions, strict=True)]

    def _result(self, base: ExtractionResult, predictions: dict[str, Prediction], model: LearnedModel,
                ) -> ExtractionResult:
        if base.ticket is None:  # a schema the rules cannot fill: no ticket either way
            base.extractor, base.model = EXTRACTOR, model.name
            return base
        ticket = dict(base.ticket)
        confidence: dict[str, float] = {}
        for name, prediction in predictions.items():
            if prediction.value in self._allowed.get(name, ()):
                ticket[name] = prediction.value
                confidence[name] = prediction.probability
        return ExtractionResult(extractor=EXTRACTOR, ticket=ticket, model=model.name,
                                schema_version=self.schema.version, confidence=confidence)


def require_model(sessions: sessionmaker[Session], what: str) -> None:
    """Refuse to start ``what`` (e.g. ``TRIAGE_EXTRACTOR=learned``) when no model version is stored."""
    if latest_version(sessions) is None:
        raise NoModelError(f"{what} but {NO_MODEL_HINT}")
