"""Text -> JSON object: the strict path, each tolerant repair, and the errors."""

from __future__ import annotations

import pytest

from triage.extraction.parse import Parsed, ParseError, is_truncated, parse_json_object

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
    ('{"a": 1 "b": 2}', "not valid JSON"),
    ("[1, 2]", "top level is an array"),
    ('"just a string"', "top level is a string"),
    ("", "empty"),
    ("   \n", "empty"),
], ids=["prose-only", "truncated", "missing-comma", "array", "string", "empty", "blank"])
def test_unusable_answers_raise_a_clear_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_json_object(text)


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
