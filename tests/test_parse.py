"""Text -> JSON objects: the strict path, each tolerant repair, every object of an answer, and the errors."""

from __future__ import annotations

import pytest

from triage.extraction.parse import (
    Candidate,
    Parsed,
    ParsedAnswer,
    ParseError,
    Span,
    TruncatedError,
    clean_answer,
    is_truncated,
    object_spans,
    parse_answer,
    parse_json_object,
)

TICKET = {"problem_type": "consult", "device_model": "Watch S1", "urgent_level": "low",
          "user_requirements": ["set a timer"]}
TICKET_TEXT = ('{"problem_type": "consult", "device_model": "Watch S1", "urgent_level": "low", '
               '"user_requirements": ["set a timer"]}')


def test_strict_json_takes_the_strict_path() -> None:
    assert parse_json_object(TICKET_TEXT) == Parsed(TICKET, "strict")


def test_surrounding_whitespace_is_still_strict() -> None:
    assert parse_json_object(f"\n  {TICKET_TEXT}\n").path == "strict"


@pytest.mark.parametrize("text", [
    f"```json\n{TICKET_TEXT}\n```",
    f"```JSON\n{TICKET_TEXT}\n```\n",
    f"```\n{TICKET_TEXT}\n```",
    f"Here is the ticket:\n```json\n{TICKET_TEXT}\n```\nLet me know if you need more.",
    f"```json\n{TICKET_TEXT}",
], ids=["json-fence", "upper-case-fence", "bare-fence", "fence-with-prose", "unclosed-fence"])
def test_code_fences_are_stripped(text: str) -> None:
    assert parse_json_object(text) == Parsed(TICKET, "tolerant")


@pytest.mark.parametrize("text", [
    f"Sure! Here is the JSON: {TICKET_TEXT}",
    f"{TICKET_TEXT}\nI chose consult because the customer asks a question.",
    f"Answer:\n{TICKET_TEXT}\nThanks.",
    f"Note {{not json}}: {TICKET_TEXT}",
], ids=["prose-before", "prose-after", "prose-around", "braces-in-prose"])
def test_prose_around_one_object_is_ignored(text: str) -> None:
    assert parse_json_object(text) == Parsed(TICKET, "tolerant")


def test_braces_and_escaped_quotes_inside_strings_do_not_end_the_object() -> None:
    text = 'Result: {"a": "}{ \\"}\\" {", "b": [1]} done'
    assert parse_json_object(text).value == {"a": '}{ "}" {', "b": [1]}


def test_utf8_bom_is_stripped() -> None:
    assert parse_json_object("\ufeff" + TICKET_TEXT) == Parsed(TICKET, "tolerant")


def test_trailing_commas_are_removed_outside_strings_only() -> None:
    text = '{"a": [1, 2, ], "b": {"c": "x,}", }, }'
    assert parse_json_object(text) == Parsed({"a": [1, 2], "b": {"c": "x,}"}}, "tolerant")


def test_several_repairs_combine() -> None:
    text = '\ufeffOK:\n```json\n{"user_requirements": ["连不上 Wi-Fi",],}\n```'
    assert parse_json_object(text).value == {"user_requirements": ["连不上 Wi-Fi"]}


def test_chinese_text_is_kept_intact() -> None:
    text = '{"device_model": "小米音箱", "user_requirements": ["尽快解决"]}'
    assert parse_json_object(text).value == {"device_model": "小米音箱", "user_requirements": ["尽快解决"]}


@pytest.mark.parametrize(("text", "message"), [
    ("I cannot help with that.", "no JSON object found"),
    ('{"problem_type": "device_fault", "user_requirements": ["fix', "looks cut off"),
    ('{"a"}', "not valid JSON"),
    ("[1, 2]", "top level is an array"),
    ('"just a string"', "top level is a string"),
    ("", "empty"),
    ("   \n", "empty"),
], ids=["prose-only", "truncated", "key-without-value", "array", "string", "empty", "blank"])
def test_unusable_answers_raise_a_clear_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_json_object(text)


def test_a_missing_comma_is_repaired() -> None:
    assert parse_json_object('{"a": 1 "b": 2}') == Parsed({"a": 1, "b": 2}, "tolerant")


def test_none_is_an_empty_answer() -> None:
    with pytest.raises(ParseError, match="empty"):
        parse_json_object(None)


def test_fenced_array_is_not_an_object() -> None:
    with pytest.raises(ParseError, match="array"):
        parse_json_object("```json\n[1]\n```")


def test_finish_reason_length_is_truncation() -> None:
    assert is_truncated("length")
    assert not is_truncated("stop")
    assert not is_truncated(None)


# --- parse_answer: every object, its repairs, truncation ---------------------------------------------

def test_strict_answer_is_one_candidate_without_repairs() -> None:
    assert parse_answer(TICKET_TEXT) == ParsedAnswer((Candidate(TICKET, ()),), "strict", ())


def test_every_top_level_object_is_a_candidate_in_order() -> None:
    text = 'First {"a": {"nested": 1}} then {"b": "}{"} and {like this} and {"c": [1,]}'
    answer = parse_answer(text)
    assert [c.value for c in answer.candidates] == [{"a": {"nested": 1}}, {"b": "}{"}, {"c": [1]}]
    assert [c.repairs for c in answer.candidates] == [("prose",), ("prose",), ("prose", "trailing_comma")]
    assert (answer.path, answer.repairs) == ("tolerant", ("prose",))


@pytest.mark.parametrize("text", [
    f"<think>draft {{\"a\": 0}}</think>{TICKET_TEXT}",
    f"<THINK>draft</THINK>\n{TICKET_TEXT}",
    f"<thinking>\n{{\"a\": 0}}\n</thinking>\n{TICKET_TEXT}",
    f"<reasoning>{{\"a\": 0}}</reasoning> {TICKET_TEXT}",
    f"<think>one</think><think>two {{\"a\": 0}}</think>{TICKET_TEXT}",
    f"<think>draft {{\"a\": 0}} and {{\"a\": 1}} so: {TICKET_TEXT}",
    f"no opening tag {{\"a\": 0}}</think>{TICKET_TEXT}",
], ids=["think", "upper-case", "thinking", "reasoning", "two-blocks", "unclosed", "closing-only"])
def test_reasoning_is_removed_before_parsing(text: str) -> None:
    assert parse_answer(text).candidates == (Candidate(TICKET, ("think_block",)),)


@pytest.mark.parametrize("tag", ["json", "jsonc", "json5", "JSON", "javascript", "js", ""])
def test_fences_with_any_language_tag(tag: str) -> None:
    assert parse_answer(f"```{tag}\n{TICKET_TEXT}\n```").candidates == (Candidate(TICKET, ("fence",)),)


def test_objects_in_two_fences_are_two_candidates() -> None:
    answer = parse_answer(f'```json\n{{"a": 1}}\n```\nor\n```json\n{TICKET_TEXT}\n```')
    assert [c.value for c in answer.candidates] == [{"a": 1}, TICKET]
    assert answer.repairs == ("fence", "prose")


@pytest.mark.parametrize("text", [
    '{"problem_type": "consult", "urgent_level": "low"',
    '{"problem_type": "consult", "user_requirements": ["a", "b"',
    '{"problem_type": "consult", "device_model": "Watch',
    f'{TICKET_TEXT}\nCorrection: {{"problem_type": "device_fault", "urgent_level": "hi',
    '```json\n{"problem_type": "consult",\n',
    "<think>the customer wants {\"problem_type\": \"cons",
    "<think>The customer says",
    "{",
], ids=["members", "array", "string", "after-a-complete-draft", "fenced", "in-think", "think-only", "brace"])
def test_an_object_that_never_closes_is_truncation_never_completed(text: str) -> None:
    with pytest.raises(TruncatedError, match="cut off"):
        parse_answer(text)


def test_truncation_is_a_parse_error_for_callers_that_do_not_care() -> None:
    assert issubclass(TruncatedError, ParseError)


@pytest.mark.parametrize("text", ["{like this}", "Answer {problem_type, urgent_level}", "{:}", "a } b { c"])
def test_text_without_an_object_never_becomes_an_empty_one(text: str) -> None:
    with pytest.raises(ParseError, match="no JSON object found"):
        parse_answer(text)


def test_an_empty_object_written_as_such_is_read() -> None:
    assert parse_answer("Here: {}").candidates == (Candidate({}, ("prose",)),)


@pytest.mark.parametrize(("text", "value"), [
    (f"[{TICKET_TEXT}]", TICKET),
    (f"```json\n[{TICKET_TEXT},]\n```", TICKET),
])
def test_one_object_in_an_array_is_unwrapped(text: str, value: dict[str, object]) -> None:
    [candidate] = parse_answer(text).candidates
    assert candidate.value == value and "unwrapped_array" in candidate.repairs


@pytest.mark.parametrize("text", [f"[{TICKET_TEXT}, {TICKET_TEXT}]", f"[[{TICKET_TEXT}]]", "[1]", "[]"])
def test_other_arrays_are_not_answers(text: str) -> None:
    with pytest.raises(ParseError, match="top level is an array"):
        parse_answer(text)


def test_repairs_inside_objects_are_named() -> None:
    text = "{problem_type: 'consult', /* q */ device_model: None, urgent_level: \"low\" user_requirements: [],}"
    [candidate] = parse_answer(text).candidates
    assert candidate.value == {"problem_type": "consult", "device_model": None, "urgent_level": "low",
                               "user_requirements": []}
    assert candidate.repairs == ("comments", "missing_comma", "python_literals", "single_quotes",
                                 "trailing_comma", "unquoted_keys")


def test_json_repair_takes_what_the_named_repairs_cannot_and_is_recorded() -> None:
    [candidate] = parse_answer('{"device_model": "the "Pro" one", "urgent_level": high}').candidates
    assert candidate == Candidate({"device_model": 'the "Pro" one', "urgent_level": "high"}, ("json_repair",))


def test_a_duplicate_key_keeps_the_later_value_and_says_so() -> None:
    assert parse_answer('{"a": 1, "a": 2}') == ParsedAnswer((Candidate({"a": 2}, ("duplicate_key",)),),
                                                            "strict", ())


def test_parse_json_object_takes_the_last_object() -> None:
    assert parse_json_object('{"a": 1} {"a": 2}') == Parsed({"a": 2}, "tolerant")


def test_clean_answer_leaves_strict_json_alone() -> None:
    cleaned = clean_answer(f"  {TICKET_TEXT}\n")
    assert cleaned.text == f"  {TICKET_TEXT}\n" and cleaned.repairs == ()
    assert cleaned.strict is not None and cleaned.strict.value == TICKET


def test_object_spans_skip_prose_braces_and_end_at_an_unclosed_object() -> None:
    text = 'x {y} {"a": "{"} {{"b": 1}} {"c": ['
    assert object_spans(text) == [Span(6, 16), Span(18, 26), Span(28, None)]
