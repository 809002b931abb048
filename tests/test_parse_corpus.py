"""The corpus of malformed answers (tests/parse_corpus.py): each one's first-attempt outcome, and the
share that gives a routable ticket on the first attempt."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.parse_corpus import CORPUS, Case, CutOff, Invalid, Outcome, Routes, TwoMeanings, Unusable
from triage.extraction.choose import Ambiguous, Chosen, NoneValid, choose
from triage.extraction.parse import ParseError, TruncatedError, parse_answer
from triage.schema import TicketSchema

SCHEMA = TicketSchema.load(Path(__file__).resolve().parents[1] / "config" / "ticket_schema.json")
ROUTING_FIELDS = frozenset({"problem_type", "urgent_level"})
MIN_CORPUS = 60


def first_attempt(text: str) -> Outcome:
    """What the first attempt makes of ``text``, in the corpus's terms."""
    try:
        answer = parse_answer(text)
    except TruncatedError:
        return CutOff()
    except ParseError as exc:
        return Unusable(str(exc))
    choice = choose(answer.candidates, SCHEMA.validate, ROUTING_FIELDS)
    if isinstance(choice, Chosen):
        return Routes(choice.value, choice.repairs, answer.path)
    if isinstance(choice, Ambiguous):
        return TwoMeanings(choice.count, choice.fields)
    assert isinstance(choice, NoneValid) and choice.issues
    return Invalid(choice.candidate.repairs)


def test_the_corpus_is_large_and_names_each_case_once() -> None:
    assert len(CORPUS) >= MIN_CORPUS
    assert len({case.id for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.id)
def test_first_attempt_outcome(case: Case) -> None:
    outcome = first_attempt(case.text)
    if isinstance(case.outcome, Unusable):
        assert isinstance(outcome, Unusable), outcome
        assert case.outcome.message in outcome.message
    else:
        assert outcome == case.outcome


def test_share_repaired_on_the_first_attempt(capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = Counter(type(first_attempt(case.text)).__name__ for case in CORPUS)
    expected = Counter(type(case.outcome).__name__ for case in CORPUS)
    assert outcomes == expected
    routed = outcomes["Routes"]
    with capsys.disabled():
        print(f"\nparse corpus: {routed} of {len(CORPUS)} malformed answers ({routed / len(CORPUS):.0%}) give a "
              f"valid ticket on the first attempt; {outcomes['TwoMeanings']} ambiguous (re-asked for one "
              f"object), {outcomes['CutOff']} cut off (budget doubled), {outcomes['Invalid']} schema-invalid "
              f"and {outcomes['Unusable']} without a usable object (re-asked)")
