"""The one intake normaliser: text made storable (and said so), ids refused by name, keys that always fit."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.conversation import Conversation, Message
from triage.intake.inbound import intake_keys
from triage.intake.normalise import (
    EXTERNAL_ID_MAX_CHARS,
    INTAKE_KEY_MAX_CHARS,
    SOURCE_MAX_CHARS,
    IntakeFieldError,
    bounded_key,
    check_id,
    normalise_inbound,
    normalise_submission,
)
from triage.intake.platforms import PLATFORMS, InboundMessage
from triage.intake.receive import new_messages
from triage.intake.submission import Submission

GENERIC = PLATFORMS["generic"]


def _inbound(conversation_key: str = "C-1", message_key: str = "m-1", delivery_id: str | None = "d-1",
             text: str = "hi", **extra: object) -> InboundMessage:
    return InboundMessage("generic", conversation_key, message_key, delivery_id, Conversation.from_text(text),
                          **extra)  # type: ignore[arg-type]


def _storable(text: str) -> bool:
    """What PostgreSQL takes in text and JSON columns: no NUL, and encodable as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def test_column_limits_come_from_the_models() -> None:
    assert (SOURCE_MAX_CHARS, EXTERNAL_ID_MAX_CHARS, INTAKE_KEY_MAX_CHARS) == (64, 255, 255)


@pytest.mark.parametrize(("text", "stored"), [
    ("Wi-Fi\x00 down", "Wi-Fi down"), ("broken \ud800 screen", "broken \ufffd screen"), ("\x00", ""),
    ("pair \ud83d\ude00", "pair 😀"),
])
def test_text_is_repaired_and_the_field_named(text: str, stored: str) -> None:
    done = normalise_inbound(_inbound(text=text), GENERIC.id_fields)
    assert done.value.conversation.messages == (Message("customer", stored),)
    assert done.repaired == ("messages[0].text",)


def test_customer_and_raw_payload_are_repaired_too() -> None:
    message = _inbound(customer={"name": "Li\x00", "tags": ["\udc00"]}, raw={"k\x00": "v"})
    done = normalise_inbound(message, GENERIC.id_fields)
    assert done.value.customer == {"name": "Li", "tags": ["\ufffd"]} and done.value.raw == {"k": "v"}
    assert done.repaired == ("customer", "raw payload")


def test_clean_input_is_left_alone() -> None:
    message = _inbound(text="我的手环充不进电了 ❤️", customer={"email": "a@example.com"})
    done = normalise_inbound(message, GENERIC.id_fields)
    assert done.value == message and done.repaired == ()


@pytest.mark.parametrize(("change", "named"), [
    ({"conversation_key": "x" * 256}, '"external_id" is 256 characters long'),
    ({"conversation_key": "C\x00-1"}, '"external_id" holds a control character (U+0000)'),
    ({"conversation_key": "C-\ud800"}, '"external_id" holds a lone surrogate (U+D800)'),
    ({"message_key": "m" * 300}, '"message_id" (or the webhook-id header) is 300 characters long'),
    ({"message_key": "m\n1"}, "holds a control character (U+000A)"),
    ({"delivery_id": "d" * 256}, "the webhook-id header is 256 characters long"),
    ({"delivery_id": "d\x7f"}, "the webhook-id header holds a control character (U+007F)"),
])
def test_ids_that_cannot_be_stored_are_refused_by_name(change: dict[str, str], named: str) -> None:
    with pytest.raises(IntakeFieldError, match=re.escape(named)):
        normalise_inbound(_inbound(**change), GENERIC.id_fields)


@pytest.mark.parametrize("source", sorted(PLATFORMS))
def test_every_platform_names_its_own_fields(source: str) -> None:
    names = PLATFORMS[source].id_fields
    with pytest.raises(IntakeFieldError) as refused:
        normalise_inbound(_inbound(conversation_key="x" * 300), names)
    assert refused.value.field == names.conversation_key


def test_an_external_id_that_fits_its_column_still_gives_keys_that_fit() -> None:
    message = normalise_inbound(_inbound(conversation_key="x" * 255, message_key="m" * 255,
                                         delivery_id="d" * 255), GENERIC.id_fields).value
    keys = intake_keys(message)
    assert all(len(key) <= INTAKE_KEY_MAX_CHARS for key in keys)
    assert [key.split(":")[:2] for key in keys] == [["delivery", "sha256"], ["message", "sha256"]]
    other = intake_keys(_inbound(conversation_key="x" * 255, message_key="m" * 254 + "n", delivery_id="d" * 255))
    assert other[1] != keys[1], "different ids hash to different keys"


def test_short_keys_stay_readable() -> None:
    assert bounded_key("message", "35436", "m1") == "message:35436:m1"
    assert intake_keys(_inbound()) == ["delivery:d-1", "message:C-1:m-1"]


@pytest.mark.parametrize(("field", "value", "named"), [
    ("source", "s" * 65, '"source" is 65 characters long; at most 64'),
    ("source", "sh\top", '"source" holds a control character (U+0009)'),
    ("external_id", "e" * 256, '"external_id" is 256 characters long; at most 255'),
    ("external_id", "e\x00", '"external_id" holds a control character (U+0000)'),
])
def test_submissions_refuse_ids_by_name(field: str, value: str, named: str) -> None:
    ids = {"source": "shop", "external_id": "A-1", field: value}
    with pytest.raises(IntakeFieldError, match=re.escape(named)):
        normalise_submission(Submission(ids["source"], ids["external_id"], Conversation.from_text("hi")))


def test_check_id_counts_characters_not_bytes() -> None:
    assert check_id("工" * 255, '"external_id"') == "工" * 255


# ---- properties ----------------------------------------------------------------------------------

#: Text as hostile as a JSON body can carry: any code point, lone surrogates and NUL included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40) | st.sampled_from(
    ["\x00", "\ud800", "\udfff\ud800", "a\x00\ud83d\ude00"])
ANY_ID = ANY_TEXT | st.text(min_size=200, max_size=320)


@settings(max_examples=300)
@given(conversation_key=ANY_ID, message_key=ANY_ID, delivery_id=st.none() | ANY_ID,
       texts=st.lists(st.tuples(st.sampled_from(["customer", "agent"]), ANY_TEXT), min_size=1, max_size=4),
       customer=st.none() | st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=3))
def test_normalised_messages_are_storable_or_refused_by_name(conversation_key: str, message_key: str,
                                                             delivery_id: str | None,
                                                             texts: list[tuple[str, str]],
                                                             customer: dict[str, str] | None) -> None:
    conversation = Conversation(tuple(Message(role, text) for role, text in texts))  # type: ignore[arg-type]
    message = InboundMessage("generic", conversation_key, message_key, delivery_id, conversation, customer=customer)
    try:
        done = normalise_inbound(message, GENERIC.id_fields)
    except IntakeFieldError as refused:
        field = refused.field
    else:
        field = None
    if field is not None:
        assert field in {'"external_id"', '"message_id" (or the webhook-id header)', "the webhook-id header"}
        return
    value = done.value
    assert len(value.conversation_key) <= EXTERNAL_ID_MAX_CHARS
    assert all(len(key) <= INTAKE_KEY_MAX_CHARS and _storable(key) for key in intake_keys(value))
    assert all(_storable(m.text) for m in value.conversation.messages)
    assert all(_storable(k) and _storable(v) for k, v in (value.customer or {}).items())
    assert bool(done.repaired) == (value != message)


@settings(max_examples=200)
@given(stored=st.lists(st.tuples(st.sampled_from(["customer", "agent"]), st.sampled_from("abc")), max_size=5),
       incoming=st.lists(st.tuples(st.sampled_from(["customer", "agent"]), st.sampled_from("abc")), max_size=5))
def test_appending_never_repeats_what_the_conversation_ends_with(stored: list[tuple[str, str]],
                                                                 incoming: list[tuple[str, str]]) -> None:
    old = [Message(role, text) for role, text in stored]  # type: ignore[arg-type]
    new = [Message(role, text) for role, text in incoming]  # type: ignore[arg-type]
    fresh = new_messages(old, new)
    assert new_messages(old, old) == []
    assert all(m in new for m in fresh)
    merged = [*old, *fresh]
    for message in fresh:  # nothing appended equals the last message of its role before it
        before = merged[:merged.index(message, len(old))]
        assert next((m.text for m in reversed(before) if m.role == message.role), None) != message.text
