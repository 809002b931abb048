"""The chooser with the shipped schema: the last valid object, ambiguity on routing fields, no valid one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from triage.extraction.choose import Ambiguous, Chosen, NoneValid, choose
from triage.extraction.parse import Candidate, parse_answer
from triage.schema import TicketSchema, ValidationIssue

SCHEMA = TicketSchema.load(Path(__file__).resolve().parents[1] / "config" / "ticket_schema.json")
ROUTING_FIELDS = frozenset({"problem_type", "urgent_level"})
FAULT = {"problem_type": "device_fault", "device_model": "AX3000", "urgent_level": "high",
         "user_requirements": ["fix the router"]}
CONSULT = {"problem_type": "consult", "device_model": "Watch S1", "urgent_level": "low", "user_requirements": []}


def candidates(*values: dict[str, Any], repairs: tuple[str, ...] = ()) -> list[Candidate]:
    return [Candidate(value, repairs) for value in values]


def test_one_valid_object_is_chosen_as_it_is() -> None:
    [only] = candidates(FAULT, repairs=("fence",))
    assert choose([only], SCHEMA.validate, ROUTING_FIELDS) == Chosen(only)


def test_the_last_valid_object_wins_and_says_of_how_many() -> None:
    draft = {"problem_type": "device_fault"}
    choice = choose(candidates(draft, FAULT, {"note": "thanks"}, repairs=("prose",)), SCHEMA.validate, ROUTING_FIELDS)
    assert choice == Chosen(Candidate(FAULT, ("last_of_3", "prose")))


def test_valid_objects_that_agree_on_routing_are_not_ambiguous() -> None:
    corrected = {**FAULT, "device_model": "AX3000 Pro", "user_requirements": ["replace it"]}
    choice = choose(candidates(FAULT, corrected), SCHEMA.validate, ROUTING_FIELDS)
    assert isinstance(choice, Chosen) and choice.value == corrected and choice.repairs == ("last_of_2",)


@pytest.mark.parametrize(("values", "fields"), [
    ([FAULT, CONSULT], ("problem_type", "urgent_level")),
    ([FAULT, {**FAULT, "urgent_level": "normal"}], ("urgent_level",)),
    ([CONSULT, {"problem_type": "bad"}, FAULT, CONSULT], ("problem_type", "urgent_level")),
], ids=["both-fields", "urgency-only", "four-with-an-invalid-one"])
def test_valid_objects_that_route_differently_are_ambiguous(values: list[dict[str, Any]],
                                                            fields: tuple[str, ...]) -> None:
    choice = choose(candidates(*values), SCHEMA.validate, ROUTING_FIELDS)
    assert choice == Ambiguous(len(values), fields)
    assert choice.reask == f"your answer held {len(values)} JSON objects; answer with exactly one"


def test_no_valid_object_gives_the_last_one_and_its_issues() -> None:
    first, last = {**FAULT, "urgent_level": "asap"}, {**CONSULT, "problem_type": "question"}
    choice = choose(candidates(first, last, repairs=("single_quotes",)), SCHEMA.validate, ROUTING_FIELDS)
    issue = ValidationIssue("$.problem_type",
                            "'question' is not one of ['device_fault', 'consult', 'complaint', 'other']")
    assert choice == NoneValid(Candidate(last, ("single_quotes",)), (issue,))


def test_without_routing_fields_the_last_valid_object_wins() -> None:
    choice = choose(candidates(FAULT, CONSULT), SCHEMA.validate, ())
    assert choice == Chosen(Candidate(CONSULT, ("last_of_2",)))


def test_an_empty_list_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        choose([], SCHEMA.validate, ROUTING_FIELDS)


def test_parse_then_choose_on_a_draft_in_prose() -> None:
    answer = parse_answer('Let me think: {"problem_type": "consult"} no wait.\n'
                          '{"problem_type": "device_fault", "device_model": "AX3000", "urgent_level": "high", '
                          '"user_requirements": ["fix the router"],}')
    choice = choose(answer.candidates, SCHEMA.validate, ROUTING_FIELDS)
    assert choice == Chosen(Candidate(FAULT, ("last_of_2", "prose", "trailing_comma")))
