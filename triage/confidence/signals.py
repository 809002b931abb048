"""The signals a ticket's confidence is computed from, one vector per routing field.

Each signal is a number (a flag is 0 or 1); an absent one is 0, which the combination reads as neutral:

- ``own_logit``: the deciding extractor's own probability of its value, as log-odds: the learned
  extractor's calibrated probability, or the LLM answer's token probability when the API returned
  logprobs (``ExtractionResult.logprob_confidence``); 0 (p = 0.5, neutral) when it gives none;
- ``learned_logit``: the learned model's probability of the decided value as log-odds, when another
  extractor decided and a model is stored; ``learned_disagree``: its most probable value is another;
- ``rules_disagree``: the rules extractor gives another value (when it did not decide itself);
- ``reasks``: answers of the run before the valid one (re-asks), at most :data:`MAX_COUNT`;
- ``repairs``: repairs the valid answer needed (fence, trailing comma...), at most :data:`MAX_COUNT`;
- ``tolerant``: the answer was read by the tolerant parser, not the strict one;
- ``ambiguous``: an answer of the run held objects that disagree on a routing field;
- ``injection``: instruction-like text aimed at the model was found in what was sent;
- ``trimmed``: the conversation was cut to fit the model;
- ``reused``: the extraction is an earlier identical conversation's (de-duplication).

The deciding extractor's *group* (``llm``, ``rules`` or ``learned``; a de-duplicated ticket is the
LLM's) selects which calibrated head combines them. What a ticket stores (``tickets.confidence_signals``,
:class:`SignalRecord`) is the group, the machine's value of each routing field and its signals, so a
later ``triage calibrate`` learns from what the machine knew when it decided, whatever a person changed.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from triage.extraction.types import ExtractionResult
from triage.states.tickets import AttemptOutcome

Group = Literal["llm", "rules", "learned"]
GROUPS: Final[tuple[Group, ...]] = ("llm", "rules", "learned")
#: The signal vector's names, in the order of a calibration's coefficients.
SIGNALS: Final = ("own_logit", "learned_logit", "learned_disagree", "rules_disagree", "reasks", "repairs",
                  "tolerant", "ambiguous", "injection", "trimmed", "reused")
#: Counts (re-asks, repairs) are capped here: a fourth repair says nothing a third did not.
MAX_COUNT: Final = 3
#: Probabilities are clipped to [EPSILON, 1 - EPSILON] before their log-odds are taken.
EPSILON: Final = 1e-3


def logit(probability: float) -> float:
    """Log-odds of ``probability``, clipped so that 0 and 1 stay finite.

    >>> logit(0.5), round(logit(1.0), 3)
    (0.0, 6.907)
    """
    clipped = min(max(probability, EPSILON), 1 - EPSILON)
    return math.log(clipped / (1 - clipped))


def group_of(extractor: str) -> Group:
    """The calibration group of an extractor: a de-duplicated ticket's fields are an earlier LLM answer.

    >>> group_of("dedupe"), group_of("learned")
    ('llm', 'learned')
    """
    if extractor in ("rules", "learned"):
        return "rules" if extractor == "rules" else "learned"
    return "llm"


@dataclass(frozen=True)
class SecondOpinions:
    """What the extractors that did not decide say about the same conversation.

    ``rules``: the rules extractor's ticket; ``learned``: per field, the stored learned model's probability
    of each class. Either is None when it was not asked (it decided) or cannot answer (no model stored).
    """

    rules: Mapping[str, Any] | None = None
    learned: Mapping[str, Mapping[str, float]] | None = None


@dataclass(frozen=True)
class SignalRecord:
    """A decision's signals as stored with its ticket: the group, the machine's values and the vectors."""

    group: Group
    values: dict[str, str]
    signals: dict[str, dict[str, float]]

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "values": dict(self.values), "signals": {k: dict(v) for k, v in
                                                                             self.signals.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SignalRecord | None:
        """The stored form read back; None for anything that is not one (an older or damaged row)."""
        group, values, signals = data.get("group"), data.get("values"), data.get("signals")
        if group not in GROUPS or not isinstance(values, dict) or not isinstance(signals, dict):
            return None
        vectors = {str(k): {str(n): float(x) for n, x in v.items()} for k, v in signals.items() if isinstance(v, dict)}
        return cls(group, {str(k): str(v) for k, v in values.items()}, vectors)


def _valid_attempt_counts(result: ExtractionResult) -> tuple[int, int, bool, bool]:
    """(answers before the valid one, the valid answer's repairs, read tolerantly, any ambiguous answer)."""
    answered = [a for a in result.attempts if a.outcome != AttemptOutcome.API_ERROR]
    valid = next((a for a in reversed(answered) if a.outcome == AttemptOutcome.VALID), None)
    before = len(answered) - 1 if valid is not None else len(answered)
    repairs = len(valid.repairs) if valid is not None else 0
    tolerant = valid is not None and valid.parse_path == "tolerant"
    return max(before, 0), repairs, tolerant, any(a.outcome == AttemptOutcome.AMBIGUOUS for a in answered)


def field_signals(result: ExtractionResult, name: str, opinions: SecondOpinions) -> dict[str, float]:
    """The signal vector of routing field ``name`` of ``result`` (which holds a ticket)."""
    ticket = result.ticket or {}
    value = str(ticket.get(name))
    group = group_of(result.extractor)
    own = (result.confidence or {}).get(name) if group == "learned" else (result.logprob_confidence or {}).get(name)
    reasks, repairs, tolerant, ambiguous = _valid_attempt_counts(result)
    signals = {name_: 0.0 for name_ in SIGNALS}
    signals.update(own_logit=logit(own) if own is not None else 0.0, reasks=float(min(reasks, MAX_COUNT)),
                   repairs=float(min(repairs, MAX_COUNT)), tolerant=float(tolerant), ambiguous=float(ambiguous),
                   injection=float(result.injection is not None), trimmed=float(result.trimmed),
                   reused=float(result.extractor == "dedupe"))
    if group != "learned" and opinions.learned is not None and name in opinions.learned:
        distribution = opinions.learned[name]
        if distribution:
            signals["learned_logit"] = logit(distribution.get(value, 0.0))
            signals["learned_disagree"] = float(max(distribution, key=lambda k: distribution[k]) != value)
    if group != "rules" and opinions.rules is not None and name in opinions.rules:
        signals["rules_disagree"] = float(str(opinions.rules.get(name)) != value)
    return signals


def signal_record(result: ExtractionResult, fields: Collection[str], opinions: SecondOpinions) -> SignalRecord:
    """Every routing field's signals (the fields the ticket has) of ``result``, which holds a ticket."""
    ticket = result.ticket or {}
    present = sorted(name for name in fields if name in ticket)
    return SignalRecord(group_of(result.extractor), {name: str(ticket[name]) for name in present},
                        {name: field_signals(result, name, opinions) for name in present})
