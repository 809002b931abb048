"""Signed deliveries that could never be stored as sent: a ticket with repaired text, or a 400 naming the field.

Never a 500 (platforms retry a 500 forever). Each runs on SQLite and on PostgreSQL, where NUL and
lone surrogates were the 500s.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.factories import ALICE, SECRETS, Service
from triage.intake.platforms import sample_payloads, sign
from triage.store.models import Conversation, IntakeKey, Ticket


def _post_escaped(api: Service, source: str, payload: dict[str, Any], delivery_id: str | None = None) -> Any:
    """Post ``payload`` serialised with ASCII escapes, so lone surrogates travel as ``\\udxxx``."""
    body = json.dumps(payload).encode()
    headers = sign(source, body, SECRETS[source], now=time.time(), delivery_id=delivery_id)
    return api.client.post(f"/webhooks/{source}", content=body, headers=headers)


def _only_ticket(api: Service) -> Ticket:
    with api.parts.sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        session.expunge(ticket)
        return ticket


def _only_conversation(api: Service) -> Conversation:
    with api.parts.sessions() as session:
        return session.scalars(select(Conversation)).one()


@pytest.mark.parametrize(("text", "stored"), [
    ("router\x00 reboots", "router reboots"), ("router \ud800 reboots", "router \ufffd reboots"),
    ("\x00\udfff", "\ufffd"),
])
def test_text_with_nul_or_lone_surrogates_is_stored_repaired_and_flagged(api: Service, text: str,
                                                                          stored: str) -> None:
    response = _post_escaped(api, "generic", {"external_id": "H-1", "text": text,
                                              "customer": {"name": "Jo\x00", "note": "\ud800"}})
    assert response.status_code == 202, response.text
    conversation = _only_conversation(api)
    assert conversation.messages == [{"role": "customer", "text": stored}]
    assert conversation.customer == {"name": "Jo", "note": "\ufffd"}
    assert _only_ticket(api).flags["text_repaired"] == {"fields": ["customer", "messages[0].text", "raw payload"]}
    detail = api.client.get("/tickets/1", headers=ALICE).json()
    assert "text_repaired" in detail["ticket"]["flags"]


def test_clean_text_has_no_flag(api: Service) -> None:
    assert api.post("generic", {"external_id": "H-2", "text": "fine"}).status_code == 202
    assert _only_ticket(api).flags == {}


@pytest.mark.parametrize(("payload", "delivery_id", "named"), [
    ({"external_id": "H\x00-3", "text": "hi"}, "d-1", '"external_id" holds a control character (U+0000)'),
    ({"external_id": "H-\ud800", "text": "hi"}, "d-1", '"external_id" holds a lone surrogate (U+D800)'),
    ({"external_id": "x" * 256, "text": "hi"}, "d-1", '"external_id" is 256 characters long'),
    ({"external_id": "x" * 300, "text": "hi"}, "d-1", '"external_id" is 300 characters long'),
    ({"external_id": "H-4", "text": "hi", "message_id": "m" * 256}, "d-1", '"message_id"'),
    ({"external_id": "H-5", "text": "hi", "message_id": "m\x00"}, "d-1", '"message_id"'),
    ({"external_id": "H-6", "text": "hi"}, "w" * 256, "the webhook-id header is 256 characters long"),
])
def test_ids_that_cannot_be_stored_get_400_naming_the_field(api: Service, payload: dict[str, Any],
                                                            delivery_id: str, named: str) -> None:
    response = _post_escaped(api, "generic", payload, delivery_id=delivery_id)
    assert response.status_code == 400, response.text
    assert named in response.json()["detail"]
    assert api.count(Conversation) == 0 and api.count(IntakeKey) == 0 and api.enqueued == []


@pytest.mark.parametrize("length", [250, 255])
def test_an_external_id_that_fits_its_column_is_stored_with_hashed_keys(api: Service, length: int) -> None:
    external_id = "x" * length
    first = _post_escaped(api, "generic", {"external_id": external_id, "text": "hi"}, delivery_id="w" * 255)
    assert first.status_code == 202, first.text
    again = _post_escaped(api, "generic", {"external_id": external_id, "text": "hi"}, delivery_id="w" * 255)
    assert again.json() == {"ticket_id": 1, "status": "queued", "duplicate": True}
    with api.parts.sessions() as session:
        keys = session.scalars(select(IntakeKey.key)).all()
    assert sorted(key.split(":")[0] for key in keys) == ["delivery", "message"]
    assert all(len(key) <= 255 for key in keys)


def _poisoned(value: Any, poison: str) -> Any:
    """``value`` with ``poison`` appended to every string in it (keys left alone)."""
    if isinstance(value, str):
        return value + poison
    if isinstance(value, dict):
        return {key: _poisoned(item, poison) for key, item in value.items()}
    if isinstance(value, list):
        return [_poisoned(item, poison) for item in value]
    return value


@pytest.mark.parametrize("poison", ["\x00", "\ud800", "\x01", "\u2028"])
def test_no_platform_answers_500_to_poisoned_strings(api: Service, poison: str) -> None:
    for source in sorted(SECRETS):
        before = api.count(Conversation)
        payload = _poisoned(sample_payloads()[source], poison)
        response = _post_escaped(api, source, payload, delivery_id="delivery-1")
        assert response.status_code in (200, 202, 400), (source, response.text)
        if response.status_code == 400:  # an id or a role held the poison: refused with the reason, nothing stored
            assert response.json()["detail"] and api.count(Conversation) == before
        elif response.status_code == 202:
            with api.parts.sessions() as session:
                row = session.scalars(select(Conversation).where(Conversation.source == source)).one()
                stored = json.dumps(row.messages, ensure_ascii=False)
            assert "\x00" not in stored and "\ud800" not in stored, source


def test_the_same_body_under_a_new_webhook_id_appends_nothing(api: Service) -> None:
    body = sample_payloads()["generic"]
    assert api.post("generic", body, delivery_id="msg_1").json() == {"ticket_id": 1, "status": "queued",
                                                                     "duplicate": False}
    again = api.post("generic", body, delivery_id="msg_2")
    assert again.json() == {"ticket_id": 1, "status": "queued", "duplicate": True}
    single = api.post("generic", {"external_id": body["external_id"], "text": body["messages"][-1]["text"]},
                      delivery_id="msg_3")
    assert single.json()["duplicate"] is True
    assert _only_conversation(api).messages == body["messages"] and api.enqueued == [1]
    more = api.post("generic", {**body, "messages": [*body["messages"], {"role": "customer", "text": "Any news?"}]},
                    delivery_id="msg_4")
    assert more.json()["duplicate"] is False
    assert [m["text"] for m in _only_conversation(api).messages][-2:] == [body["messages"][-1]["text"], "Any news?"]


HOSTILE_TEXT = st.text(st.characters(exclude_categories=()), max_size=20) | st.text(min_size=240, max_size=300)
GENERIC_BODIES = st.fixed_dictionaries(
    {"external_id": HOSTILE_TEXT},
    optional={"text": HOSTILE_TEXT, "message_id": HOSTILE_TEXT | st.integers(),
              "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["customer", "agent", "x"]),
                                                          "text": HOSTILE_TEXT}), max_size=3),
              "customer": st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT | st.integers(), max_size=2)})


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=GENERIC_BODIES, delivery_id=HOSTILE_TEXT.filter(lambda s: s.isprintable() and s.isascii() and s))
def test_any_signed_generic_body_is_a_ticket_or_a_400(api: Service, payload: dict[str, Any], delivery_id: str) -> None:
    response = _post_escaped(api, "generic", payload, delivery_id=delivery_id)
    assert response.status_code in (200, 202, 400), response.text
    assert response.json()
