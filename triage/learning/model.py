"""A learned model as numbers: the featurizer, and per enum field a linear model with its calibration.

Each field's :class:`FieldHead` holds the classes, the linear model's coefficients and intercepts
(scikit-learn's ``LinearSVC``) and the inverse temperature ``beta`` that calibrates it (scikit-learn's
``CalibratedClassifierCV(method="temperature")``). Scoring is computed here from those arrays:
``logits = X @ coef.T + intercept`` (a two-class model has one row: its logits are ``(-d, d)``), and
the probabilities are ``softmax(beta * logits)``, as scikit-learn computes them.

>>> head = FieldHead("f", ("a", "b", "c"), np.eye(3), np.zeros(3), beta=1.0)
>>> [round(float(p), 3) for p in head.probabilities(sparse.csr_matrix(np.eye(3)))[0]]
[0.576, 0.212, 0.212]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from scipy import sparse

from triage.conversation import Conversation
from triage.learning.features import Featurizer, FloatArray, model_text


def softmax(logits: FloatArray) -> FloatArray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: FloatArray = exp / exp.sum(axis=1, keepdims=True)
    return result


@dataclass(frozen=True)
class FieldHead:
    """One enum field's linear model and calibration, plus how it did out-of-fold when it was fitted."""

    field: str
    classes: tuple[str, ...]
    coef: FloatArray
    intercept: FloatArray
    beta: float
    training_size: int = 0
    #: Out-of-fold figures of the fit (the learn report); None when too few rows to cross-validate.
    accuracy: float | None = None
    macro_f1: float | None = None
    ece: float | None = None

    def logits(self, features: sparse.csr_matrix) -> FloatArray:
        decision = np.asarray(features @ self.coef.T, dtype=np.float64) + self.intercept
        if len(self.classes) == 2:
            column = decision[:, :1]
            return np.hstack([-column, column])
        return decision

    def probabilities(self, features: sparse.csr_matrix) -> FloatArray:
        """Calibrated probabilities, one row per text, one column per class (in :attr:`classes` order)."""
        return softmax(self.beta * self.logits(features))


@dataclass(frozen=True)
class Prediction:
    """A field's most probable class and its calibrated probability."""

    value: str
    probability: float


@dataclass
class LearnedModel:
    """A model version: its featurizer, one head per field, and what it was trained on."""

    featurizer: Featurizer
    heads: dict[str, FieldHead]
    training_size: int
    #: The hashes of the texts it was trained on (:func:`~triage.learning.features.text_hash`).
    training_hashes: frozenset[bytes] = frozenset()
    #: Where the rows came from: data set name (or ``reviews``) -> rows.
    sources: dict[str, int] = field(default_factory=dict)
    #: The last review event it learned from (the retraining job counts reviews after it).
    reviews_through: int = 0
    schema_version: str | None = None
    #: Seeded stratified folds of its out-of-fold figures, and the libraries it was fitted with.
    folds: int = 0
    seed: int = 0
    library: dict[str, str] = field(default_factory=dict)
    #: Set once it is stored.
    version: int | None = None
    created_at: datetime | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """What tickets record as their model: ``learned-v<version>``."""
        return f"learned-v{self.version}" if self.version is not None else "learned-unsaved"

    def predict_texts(self, texts: Sequence[str]) -> list[dict[str, Prediction]]:
        """Each text's prediction per field."""
        features = self.featurizer.transform(texts)
        rows: list[dict[str, Prediction]] = [{} for _ in texts]
        for name, head in self.heads.items():
            probabilities = head.probabilities(features)
            best = probabilities.argmax(axis=1)
            for row, index, probs in zip(rows, best, probabilities, strict=True):
                row[name] = Prediction(head.classes[int(index)], float(probs[index]))
        return rows

    def distributions_texts(self, texts: Sequence[str]) -> list[dict[str, dict[str, float]]]:
        """Each text's calibrated probability of every class, per field (what a second opinion weighs)."""
        features = self.featurizer.transform(texts)
        rows: list[dict[str, dict[str, float]]] = [{} for _ in texts]
        for name, head in self.heads.items():
            for row, probs in zip(rows, head.probabilities(features), strict=True):
                row[name] = {label: float(p) for label, p in zip(head.classes, probs, strict=True)}
        return rows

    def predict(self, conversation: Conversation) -> dict[str, Prediction]:
        return self.predict_texts([model_text(conversation)])[0]

    def summary(self) -> dict[str, Any]:
        """What ``triage learn`` prints: the version, its size and each field's out-of-fold figures."""
        return {
            "version": self.version, "created_at": self.created_at.isoformat() if self.created_at else None,
            "training_size": self.training_size, "sources": dict(self.sources), "features": self.featurizer.width,
            "folds": self.folds, "seed": self.seed,
            "fields": {name: {"classes": list(head.classes), "training_size": head.training_size,
                              "accuracy": head.accuracy, "macro_f1": head.macro_f1, "ece": head.ece}
                       for name, head in self.heads.items()},
            "notes": list(self.notes),
        }


def enum_fields(properties: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """The schema's fields the learned extractor decides (those with an ``enum``) and their values.

    >>> enum_fields({"a": {"enum": ["x", "y"]}, "b": {"type": "string"}})
    {'a': ('x', 'y')}
    """
    return {name: tuple(map(str, node["enum"])) for name, node in properties.items()
            if isinstance(node.get("enum"), list)}
