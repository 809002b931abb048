"""repair_text / repair_strings: whatever comes in, what comes out can be stored."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from triage.text import JSONValue, RepairedText, RepairedValue, repair_strings, repair_text

#: Any code point, lone surrogates and NUL included (Hypothesis leaves surrogates out by default).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=200)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=20)
PROPERTIES = settings(derandomize=True, database=None, max_examples=300, deadline=None)


def storable(value: str) -> bool:
    """What PostgreSQL needs of a string: no NUL, and encodable as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


@pytest.mark.parametrize(("raw", "fixed"), [
    ("plain", "plain"),
    ("a\x00b\x00", "ab"),
    ("\ud800", "\ufffd"),
    ("x\udfff y", "x\ufffd y"),
    ("\udc00\ud800", "\ufffd\ufffd"),  # a low half before a high half is no pair
    ("\ud83d\ude00", "\U0001f600"),  # a pair as two code points is joined
    ("\x00\ud800", "\ufffd"),
    ("小米 🙏", "小米 🙏"),
    ("\ufeffbom stays", "\ufeffbom stays"),
])
def test_repair_text(raw: str, fixed: str) -> None:
    assert repair_text(raw) == RepairedText(fixed, raw != fixed)


@given(ANY_TEXT)
@PROPERTIES
def test_any_text_comes_out_storable_and_stays_put(raw: str) -> None:
    result = repair_text(raw)
    assert storable(result.text)
    assert result.repaired == (result.text != raw)
    assert repair_text(result.text) == RepairedText(result.text, False)


def test_repair_strings_reaches_keys_and_nested_values() -> None:
    value: JSONValue = {"k\x00": ["\ud800", {"inner\x00": "ok\x00"}], "n": 1, "f": 1.5, "b": True, "z": None}
    assert repair_strings(value) == RepairedValue(
        {"k": ["\ufffd", {"inner": "ok"}], "n": 1, "f": 1.5, "b": True, "z": None}, True)


def test_repair_strings_keeps_order_and_the_later_of_two_keys_that_meet() -> None:
    result = repair_strings({"b": 1, "a\x00": 2, "a": 3})
    assert isinstance(result.value, dict)
    assert list(result.value) == ["b", "a"]
    assert result.value == {"b": 1, "a": 3}


def test_repair_strings_handles_depth_beyond_the_recursion_limit() -> None:
    deep: JSONValue = "\x00"
    for _ in range(5000):
        deep = [deep]
    result = repair_strings(deep)
    assert result.repaired
    for _ in range(5000):
        assert isinstance(result.value, list)
        result = RepairedValue(result.value[0], True)
    assert result.value == ""


@given(JSON_VALUES)
@PROPERTIES
def test_any_json_value_comes_out_storable(value: JSONValue) -> None:
    result = repair_strings(value)
    dumped = json.dumps(result.value, ensure_ascii=False)
    assert storable(dumped)
    assert repair_strings(result.value) == RepairedValue(result.value, False)


@pytest.mark.postgres
def test_repaired_values_go_into_postgresql_text_and_jsonb(postgres_server: str) -> None:
    hostile = ["a\x00b", "\ud800", "\x00", "x\udfffy", "\ud83d\ude00 \u0000"]
    engine = create_engine(postgres_server)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TEMPORARY TABLE hostile (body text, doc jsonb, plain json)"))
            for raw in hostile:
                body = repair_text(raw).text
                doc = json.dumps(repair_strings({"value": raw, raw: [raw]}).value, ensure_ascii=False)
                conn.execute(text("INSERT INTO hostile VALUES (:body, CAST(:doc AS jsonb), CAST(:doc AS json))"),
                             {"body": body, "doc": doc})
            stored = conn.execute(text("SELECT body, doc ->> 'value' FROM hostile")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in stored] == [(repair_text(raw).text,) * 2 for raw in hostile]
