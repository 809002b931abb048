"""Signals to a confidence: a logistic combination per routing field and deciding extractor.

Every head computes ``confidence = 1 / (1 + exp(-(intercept + sum(weight[s] * signal[s]))))``. A
calibration (``triage calibrate``) fits the intercept and weights of each (routing field, extractor
group) on reviewed decisions; until one exists, or for a head it could not fit (too few labels),
the documented default applies (:data:`DEFAULT_INTERCEPTS`, :data:`DEFAULT_WEIGHTS`):

====================  =======  ===============================================================
term                  weight   reading
====================  =======  ===============================================================
intercept             llm 2.0, rules 0.5, learned 0.0: a clean LLM answer starts at 0.88, the
                               keyword rules at 0.62, the learned model at its own probability
own_logit             1.0      the decider's own probability (learned; LLM logprobs) counts fully
learned_logit         0.5      the learned model's probability of the decided value, half weight
learned_disagree      -1.0     the learned model's top value is another
rules_disagree        -0.7     the rules give another value
reasks                -0.5     per answer before the valid one
repairs               -0.25    per repair the valid answer needed
tolerant              -0.4     read by the tolerant parser
ambiguous             -1.0     an answer held objects disagreeing on a routing field
injection             -1.5     instruction-like text was aimed at the model
trimmed               -0.3     the conversation was cut to fit
reused                0.0      a de-duplicated earlier answer: as that answer
====================  =======  ===============================================================

A ticket's confidence is its lowest routing field's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from triage.confidence.signals import Group, SignalRecord

DEFAULT_INTERCEPTS: Final[Mapping[Group, float]] = {"llm": 2.0, "rules": 0.5, "learned": 0.0}
DEFAULT_WEIGHTS: Final[Mapping[str, float]] = {
    "own_logit": 1.0, "learned_logit": 0.5, "learned_disagree": -1.0, "rules_disagree": -0.7, "reasks": -0.5,
    "repairs": -0.25, "tolerant": -0.4, "ambiguous": -1.0, "injection": -1.5, "trimmed": -0.3, "reused": 0.0}

Band = Literal["high", "medium", "low"]


def sigmoid(value: float) -> float:
    """The logistic function, safe for large magnitudes.

    >>> sigmoid(0.0), round(sigmoid(2.0), 3), sigmoid(-1000.0)
    (0.5, 0.881, 0.0)
    """
    if value >= 0:
        return 1 / (1 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1 + exp)


@dataclass(frozen=True)
class Head:
    """One (routing field, extractor group)'s logistic combination."""

    intercept: float
    weights: Mapping[str, float]

    def score(self, signals: Mapping[str, float]) -> float:
        """The confidence in [0, 1] of one field's signal vector (a missing signal is 0: neutral)."""
        total = self.intercept + sum(weight * signals.get(name, 0.0) for name, weight in self.weights.items())
        return sigmoid(total)


def default_head(group: Group) -> Head:
    """The documented default of ``group``."""
    return Head(DEFAULT_INTERCEPTS[group], DEFAULT_WEIGHTS)


@dataclass(frozen=True)
class Combination:
    """The heads in use: a calibration's fitted ones (``version`` set), the default for every other."""

    heads: Mapping[tuple[str, Group], Head] = field(default_factory=dict)
    version: int | None = None
    created_at: datetime | None = None

    def head(self, name: str, group: Group) -> Head:
        return self.heads.get((name, group)) or default_head(group)

    def field_confidence(self, record: SignalRecord) -> dict[str, float]:
        """Each routing field's confidence, rounded to 4 places (what tickets store)."""
        return {name: round(self.head(name, record.group).score(signals), 4)
                for name, signals in record.signals.items()}

    @property
    def name(self) -> str:
        return f"calibration-v{self.version}" if self.version is not None else "default"


DEFAULT: Final = Combination()


def ticket_confidence(field_confidence: Mapping[str, float]) -> float | None:
    """A ticket's confidence: its lowest routing field's (None without any).

    >>> ticket_confidence({"problem_type": 0.9, "urgent_level": 0.7}), ticket_confidence({})
    (0.7, None)
    """
    return min(field_confidence.values()) if field_confidence else None
