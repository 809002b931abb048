"""Which of an answer's JSON objects is the ticket: the last one that validates, unless two that
validate would route differently.

A model that writes a draft before its answer, corrects itself, or quotes the customer's JSON
first leaves several objects (:func:`triage.extraction.parse.parse_answer` returns them all).
:func:`choose` is pure: the caller passes the schema's ``validate`` and the fields its routing
rules read, and acts on the result (use it, re-ask with :attr:`Ambiguous.reask`, or re-ask
with :attr:`NoneValid.issues`).

>>> from triage.extraction.parse import Candidate
>>> def validate(value): return [] if value.get("urgent_level") in ("low", "high") else ["$.urgent_level"]
>>> draft, final = Candidate({"urgent_level": "soon"}, ()), Candidate({"urgent_level": "high"}, ("prose",))
>>> choose([draft, final], validate, {"urgent_level"})
Chosen(candidate=Candidate(value={'urgent_level': 'high'}, repairs=('last_of_2', 'prose')))
>>> choose([Candidate({"urgent_level": "low"}, ()), final], validate, {"urgent_level"})
Ambiguous(count=2, fields=('urgent_level',))
>>> choose([draft], validate, {"urgent_level"})
NoneValid(candidate=Candidate(value={'urgent_level': 'soon'}, repairs=()), issues=('$.urgent_level',))
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from triage.extraction.parse import Candidate

IssueT = TypeVar("IssueT")

#: The repair recorded when the chosen object is the last of N > 1: ``last_of_2``, ``last_of_3``...
LAST_OF = "last_of_{count}"


@dataclass(frozen=True)
class Chosen:
    """The object to use; its repairs include ``last_of_N`` when the answer held N > 1 objects."""

    candidate: Candidate

    @property
    def value(self) -> dict[str, Any]:
        return self.candidate.value

    @property
    def repairs(self) -> tuple[str, ...]:
        return self.candidate.repairs


@dataclass(frozen=True)
class Ambiguous:
    """Objects that validate disagree on ``fields`` (routing fields): which one is meant is unknown."""

    count: int
    fields: tuple[str, ...]

    @property
    def reask(self) -> str:
        """What to tell the model in the re-ask.

        >>> Ambiguous(2, ("urgent_level",)).reask
        'your answer held 2 JSON objects; answer with exactly one'
        """
        return f"your answer held {self.count} JSON objects; answer with exactly one"


@dataclass(frozen=True)
class NoneValid(Generic[IssueT]):
    """No object validates: the last one and its validation issues, for the re-ask."""

    candidate: Candidate
    issues: tuple[IssueT, ...]


def choose(candidates: Sequence[Candidate], validate: Callable[[dict[str, Any]], Sequence[IssueT]],
           routing_fields: Collection[str]) -> Chosen | Ambiguous | NoneValid[IssueT]:
    """The last candidate for which ``validate`` returns no issues, unless another valid one differs
    from it on a field in ``routing_fields`` (then :class:`Ambiguous`); :class:`NoneValid` when
    none is valid. ``candidates`` must not be empty (``parse_answer`` never returns none).
    """
    if not candidates:
        raise ValueError("choose() needs at least one candidate")
    issues = [tuple(validate(candidate.value)) for candidate in candidates]
    valid = [candidate for candidate, found in zip(candidates, issues, strict=True) if not found]
    if not valid:
        return NoneValid(candidates[-1], issues[-1])
    chosen = valid[-1]
    disagreeing = tuple(sorted({field for other in valid for field in routing_fields
                                if other.value.get(field) != chosen.value.get(field)}))
    if disagreeing:
        return Ambiguous(len(candidates), disagreeing)
    if len(candidates) == 1:
        return Chosen(chosen)
    repairs = tuple(sorted({*chosen.repairs, LAST_OF.format(count=len(candidates))}))
    return Chosen(Candidate(chosen.value, repairs))
