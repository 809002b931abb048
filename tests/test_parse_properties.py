"""Hostile and random text through the parser: only its own errors come out, and whatever comes out
can be stored; one conversation's fields never land on another's key."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.extraction.batch_answer import BatchItem, parse_batch_answer
from triage.extraction.choose import Ambiguous, Chosen, NoneValid, choose
from triage.extraction.parse import ANSWER_REPAIRS, Candidate, ParseError, TruncatedError, parse_answer
from triage.extraction.repairs import OBJECT_REPAIRS

PROPERTIES = settings(derandomize=True, database=None, max_examples=300, deadline=None)
LAST_OF = re.compile(r"last_of_\d+")
ANY_CHARACTER = st.characters(codec=None, exclude_categories=())
#: Pieces chat models and attackers put in answers, to hit the parser's paths more often than random text.
FRAGMENTS = ["{", "}", "[", "]", '"', "'", ":", ",", " ", "\n", "\\", "\\u0000", "\\ud800", "\x00", "\ud800",
             "<think>", "</think>", "<reasoning>", "```json\n", "```", "//", "/*", "*/", "#", "None", "True",
             "null", "1e999", "NaN", "-", "0", "9" * 500, '"problem_type"', '"urgent_level"', '"high"',
             "\u201c", "\u201d", "\u2018", "\u2019", "\ufeff", "key", "小米", "\t", "\r"]
JSONISH = st.lists(st.sampled_from(FRAGMENTS) | st.text(ANY_CHARACTER, max_size=3), max_size=60).map("".join)
SCALARS = st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=False,
                                                                                  allow_infinity=False)
#: Text a store keeps as it is: no NUL, no surrogates.
STORABLE_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=10)
JSON_OBJECTS = st.dictionaries(STORABLE_TEXT, st.recursive(
    SCALARS | STORABLE_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(STORABLE_TEXT, children, max_size=3),
    max_leaves=10), max_size=5)


def assert_storable(value: Any) -> None:
    dumped = json.dumps(value, ensure_ascii=False, allow_nan=False)
    dumped.encode("utf-8")
    assert "\\u0000" not in dumped


def assert_known_repairs(repairs: tuple[str, ...]) -> None:
    assert list(repairs) == sorted(set(repairs))
    assert all(name in ANSWER_REPAIRS | OBJECT_REPAIRS or LAST_OF.fullmatch(name) for name in repairs), repairs


def check_answer(text: str) -> None:
    try:
        answer = parse_answer(text)
    except ParseError:
        return
    assert answer.candidates
    for candidate in answer.candidates:
        assert isinstance(candidate.value, dict)
        assert_storable(candidate.value)
        assert_known_repairs(candidate.repairs)
        assert set(answer.repairs) <= set(candidate.repairs)


@given(st.text(ANY_CHARACTER, max_size=300))
@PROPERTIES
def test_any_text_gives_candidates_or_a_parse_error(text: str) -> None:
    check_answer(text)


@given(JSONISH)
@PROPERTIES
def test_jsonish_text_gives_candidates_or_a_parse_error(text: str) -> None:
    check_answer(text)


@given(JSONISH, st.lists(st.sampled_from(["c1", "c2", "c3"]), max_size=3))
@PROPERTIES
def test_any_batch_answer_reports_every_asked_key(text: str, keys: list[str]) -> None:
    answer = parse_batch_answer(text, keys)
    assert list(answer.items) == list(dict.fromkeys(keys))
    for item in answer.usable.values():
        assert_storable(item.value)
        assert_known_repairs(item.repairs)


@given(JSON_OBJECTS)
@PROPERTIES
def test_a_json_object_reads_back_as_itself(value: dict[str, Any]) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert parse_answer(text).candidates == (Candidate(value, ()),)
    assert parse_answer(f"Sure:\n```json\n{text}\n```").candidates == (Candidate(value, ("fence", "prose")),)


@pytest.mark.parametrize("text", [
    "{" * 100_000, "}" * 100_000, "[" * 100_000, "{" * 100_000 + "}" * 100_000, "[" * 100_000 + "]" * 100_000,
    '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", '{"a": ' + "{" * 100_000, "{ " * 50_000 + '"a": 1',
    '{"a": ' + "7" * 5000 + "}", '{"a": -' + "7" * 5000 + "}", "[" + "7" * 5000 + "]", '{"a": 1e400}',
    '{"a": -Infinity}', '{"a": NaN}', "\x00", '{"a": "\x00"}', '{"a": "\\u0000"}', '"\\u0000"', '{"\\ud800": 1}',
    '{"a": "\\ud800"}', '{"a": "\\udfff\\ud800"}', "\ud800", '{"a": "\ud800"}', "\ufeff" * 3,
    "<think>" * 10_000, "```" * 10_000, "{'" * 20_000, '{"a": "' + '\\"' * 20_000, "{a:" * 20_000,
    "/*" * 20_000, "{/*" * 20_000, "{//" * 20_000, "{x} " * 20_000, '{"a": 1 ' * 20_000, '{"a": 1} ' * 20_000,
], ids=lambda text: repr(text[:12]) + f"x{len(text)}")
def test_hostile_answers_raise_nothing_but_parse_errors(text: str) -> None:
    check_answer(text)
    parse_batch_answer(text, ["c1", "a"])


def test_hostile_escapes_are_sanitised_and_recorded() -> None:
    answer = parse_answer('{"a\\u0000": "\\ud800", "b": "\\u0000"}')
    assert answer.candidates == (Candidate({"a": "\ufffd", "b": ""}, ("sanitised",)),)


TICKETS = st.lists(st.fixed_dictionaries({"problem_type": st.sampled_from(["consult", "device_fault"]),
                                          "marker": st.integers(0, 10**6)}), min_size=1, max_size=6)


@given(TICKETS, st.data())
@PROPERTIES
def test_no_field_lands_on_another_key_wherever_the_batch_is_cut(tickets: list[dict[str, Any]],
                                                                 data: st.DataObject) -> None:
    keys = [f"c{n}" for n in range(1, len(tickets) + 1)]
    expected = dict(zip(keys, tickets, strict=True))
    text = json.dumps(expected)
    cut = data.draw(st.integers(0, len(text)))
    answer = parse_batch_answer(text[:cut], keys)
    for key, item in answer.items.items():
        if isinstance(item, BatchItem):
            assert item.value == expected[key]
    if cut == len(text):
        assert set(answer.usable) == set(keys)


VALID = {"consult", "device_fault"}


def validate(value: dict[str, Any]) -> list[str]:
    return [] if value.get("problem_type") in VALID else ["$.problem_type"]


@given(st.lists(st.fixed_dictionaries({"problem_type": st.sampled_from(["consult", "device_fault", "bad"]),
                                       "n": st.integers(0, 3)}), min_size=1, max_size=5))
@PROPERTIES
def test_the_chooser_never_hides_a_disagreement(values: list[dict[str, Any]]) -> None:
    choice = choose([Candidate(value, ()) for value in values], validate, {"problem_type"})
    valid_types = {value["problem_type"] for value in values if not validate(value)}
    if isinstance(choice, Chosen):
        assert valid_types == {choice.value["problem_type"]}
        assert choice.value == [value for value in values if not validate(value)][-1]
    elif isinstance(choice, Ambiguous):
        assert len(valid_types) > 1 and choice.count == len(values)
    else:
        assert isinstance(choice, NoneValid) and not valid_types and choice.candidate.value == values[-1]


def test_truncation_is_still_reported_under_hostile_text() -> None:
    with pytest.raises(TruncatedError):
        parse_answer('{"a": "\\ud800\x00 ' + "x" * 10_000)
