"""Webhook adapters, payload side: what each platform's events become (a message to store, an
ignored event, or a 400), customer-only text, HTML stripped, Chinese intact, dedupe keys."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from triage.intake.platforms import (
    PLATFORMS,
    Ignored,
    InboundMessage,
    WebhookPayloadError,
    sample_payloads,
)
from triage.intake.platforms.zendesk import MESSAGING_SAMPLE

CHINESE = "我的路由器每隔几分钟就重启一次，电源灯闪橙色。订单号：A-10023。"


def _parse(name: str, payload: Any, headers: dict[str, str] | None = None) -> InboundMessage | Ignored:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    return PLATFORMS[name].parse(headers or {}, body)


def _message(name: str, payload: Any, headers: dict[str, str] | None = None) -> InboundMessage:
    result = _parse(name, payload, headers)
    assert isinstance(result, InboundMessage), result
    return result


def _ignored(name: str, payload: Any) -> str:
    result = _parse(name, payload)
    assert isinstance(result, Ignored), result
    return result.reason


# ---- every platform: bodies that are not what the platform always sends ----------------------

@pytest.mark.parametrize("name", sorted(PLATFORMS))
@pytest.mark.parametrize("body", [b"", b"{not json", b"[1, 2]", b'"text"', b"null", b"\xff\xfe{}",
                                  b"[" * 100_000 + b"]" * 100_000, b'{"n": ' + b"9" * 5000 + b"}"])
def test_malformed_body_is_a_payload_error(name: str, body: bytes) -> None:
    with pytest.raises(WebhookPayloadError) as caught:
        PLATFORMS[name].parse({}, body)
    assert caught.value.status == 400 and caught.value.reason


@pytest.mark.parametrize(("name", "path"), [
    ("generic", ["external_id"]), ("zendesk", ["type"]), ("zendesk", ["detail"]), ("zendesk", ["detail", "id"]),
    ("intercom", ["topic"]), ("intercom", ["data"]), ("intercom", ["data", "item", "id"]),
    ("chatwoot", ["event"]), ("chatwoot", ["id"]), ("chatwoot", ["conversation"]),
    ("chatwoot", ["conversation", "id"]), ("zammad", ["ticket"]), ("zammad", ["ticket", "id"]),
    ("zammad", ["article", "id"]), ("freshdesk", ["event"]), ("freshdesk", ["ticket_id"]),
])
def test_missing_always_sent_field_is_a_payload_error_naming_it(name: str, path: list[str]) -> None:
    payload = sample_payloads()[name]
    node = payload
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    with pytest.raises(WebhookPayloadError, match=path[-1]):
        _parse(name, payload)


# ---- generic -----------------------------------------------------------------------------

def test_generic_text_form() -> None:
    msg = _message("generic", {"external_id": "A-1", "text": CHINESE, "customer": {"email": "li@example.com"}},
                   {"webhook-id": "msg_42"})
    assert (msg.conversation_key, msg.message_key, msg.delivery_id) == ("A-1", "msg_42", "msg_42")
    assert msg.conversation.customer_text() == CHINESE and msg.customer == {"email": "li@example.com"}


def test_generic_messages_form_keeps_roles_and_order() -> None:
    msg = _message("generic", sample_payloads()["generic"])
    assert [m.role for m in msg.conversation.messages] == ["customer", "agent", "customer"]
    assert "agent" not in msg.conversation.customer_text() and "4.2.1" in msg.conversation.customer_text()


def test_generic_message_id_overrides_the_delivery_id_as_dedupe_key() -> None:
    msg = _message("generic", {"external_id": "A-1", "text": "hi", "message_id": "m-7"}, {"webhook-id": "msg_1"})
    assert (msg.message_key, msg.delivery_id) == ("m-7", "msg_1")


def test_generic_without_delivery_header_keys_on_content() -> None:
    first = _message("generic", {"external_id": "A-1", "text": "hi"})
    assert first.delivery_id is None and first.message_key.startswith("sha256:")
    assert first.message_key == _message("generic", {"external_id": "A-1", "text": "hi"}).message_key


@pytest.mark.parametrize("payload", [
    {"external_id": "A-1", "messages": [{"role": "agent", "text": "We have shipped it."}]},
    {"external_id": "A-1", "text": "   "},
])
def test_generic_without_customer_text_is_ignored(payload: dict[str, Any]) -> None:
    assert _ignored("generic", payload) == "no customer text"


@pytest.mark.parametrize(("payload", "match"), [
    ({"external_id": " ", "text": "hi"}, "external_id"),
    ({"external_id": 7, "text": "hi"}, "external_id"),
    ({"external_id": "A", "text": "hi", "messages": []}, "either"),
    ({"external_id": "A"}, "required"),
    ({"external_id": "A", "text": 5}, "text"),
    ({"external_id": "A", "messages": [{"role": "bot", "text": "x"}]}, r"messages\[0\]"),
    ({"external_id": "A", "text": "hi", "customer": "jane"}, "customer"),
    ({"external_id": "A", "text": "hi", "message_id": 5}, "message_id"),
])
def test_generic_bad_fields(payload: dict[str, Any], match: str) -> None:
    with pytest.raises(WebhookPayloadError, match=match):
        _parse("generic", payload)


# ---- zendesk -----------------------------------------------------------------------------

def test_zendesk_ticket_created() -> None:
    msg = _message("zendesk", sample_payloads()["zendesk"])
    assert (msg.conversation_key, msg.message_key, msg.delivery_id) == (
        "35436", "ticket.created", "01HVPZ5T4Q8X2JX6Y7M9N0B1C2")
    assert msg.conversation.customer_text().startswith("Refund for a double charge\n\nHello, I was charged twice")
    assert msg.customer == {"id": "8537190016125"}


def test_zendesk_ticket_created_chinese_and_subject_not_repeated() -> None:
    payload = sample_payloads()["zendesk"]
    payload["detail"].update(subject="路由器一直重启", description="路由器一直重启，" + CHINESE)
    assert _message("zendesk", payload).conversation.customer_text() == "路由器一直重启，" + CHINESE


def test_zendesk_messaging_end_user_message() -> None:
    msg = _message("zendesk", MESSAGING_SAMPLE)
    assert (msg.conversation_key, msg.message_key) == ("141", "67ab5f55155becd183e284cb")
    assert msg.conversation.customer_text() == "The app logs me out every time I open the orders page."
    assert msg.customer == {"id": "8537190016125", "name": "Jane Doe"}


@pytest.mark.parametrize("actor", ["agent", "system", "trigger", None])
def test_zendesk_messaging_from_anyone_but_the_end_user_is_ignored(actor: str | None) -> None:
    payload = json.loads(json.dumps(MESSAGING_SAMPLE))
    payload["event"]["actor"]["type"] = actor
    assert "not an end user" in _ignored("zendesk", payload)


def test_zendesk_messaging_ticket_id_from_subject_when_detail_is_absent() -> None:
    payload = json.loads(json.dumps(MESSAGING_SAMPLE))
    del payload["detail"]
    assert _message("zendesk", payload).conversation_key == "141"
    del payload["subject"]
    with pytest.raises(WebhookPayloadError, match="zen:ticket"):
        _parse("zendesk", payload)


def test_zendesk_other_events_and_empty_tickets_are_ignored() -> None:
    assert "not handled" in _ignored("zendesk", {"type": "zen:event-type:ticket.status_changed", "detail": {}})
    payload = sample_payloads()["zendesk"]
    payload["detail"].update(subject="", description=None)
    assert _ignored("zendesk", payload) == "no customer text"


# ---- intercom ----------------------------------------------------------------------------

def test_intercom_user_created_strips_html() -> None:
    msg = _message("intercom", sample_payloads()["intercom"])
    assert msg.conversation.customer_text() == (
        "My invoice for March shows the Pro plan, but I downgraded to Basic in February.\nCan you fix it?")
    assert (msg.conversation_key, msg.message_key) == ("147", "source:403918316")
    assert msg.delivery_id == "notif_3f1e2a40-8b7c-4d2e-9a61-5c0b7e2f9d11"
    assert msg.customer == {"id": "5310d8e7598c9a0b24000002", "name": "Jane Doe", "email": "jane.doe@example.com"}


def test_intercom_legacy_conversation_message_and_subject() -> None:
    payload = sample_payloads()["intercom"]
    item = payload["data"]["item"]
    source = item.pop("source")
    item["conversation_message"] = {**source, "subject": "<p>路由器</p>", "body": f"<p>{CHINESE}</p>"}
    assert _message("intercom", payload).conversation.customer_text() == f"路由器\n\n{CHINESE}"


def _replied(parts: list[dict[str, Any]]) -> dict[str, Any]:
    payload = sample_payloads()["intercom"]
    payload["topic"] = "conversation.user.replied"
    payload["data"]["item"]["conversation_parts"] = {"type": "conversation_part.list", "conversation_parts": parts,
                                                     "total_count": len(parts)}
    return payload


def test_intercom_replied_takes_the_latest_customer_part() -> None:
    parts = [
        {"id": "1", "part_type": "comment", "body": "<p>first</p>", "author": {"type": "user", "id": "u"}},
        {"id": "2", "part_type": "comment", "body": "<p>Latest: still <i>broken</i></p>",
         "author": {"type": "user", "id": "u", "email": "jane@example.com"}},
        {"id": "3", "part_type": "note", "body": "<p>internal note</p>", "author": {"type": "admin", "id": "a"}},
        {"id": "4", "part_type": "assignment", "body": None, "author": {"type": "bot", "id": "b"}},
    ]
    msg = _message("intercom", _replied(parts))
    assert (msg.message_key, msg.conversation.customer_text()) == ("part:2", "Latest: still broken")
    assert msg.customer == {"id": "u", "email": "jane@example.com"}


def test_intercom_replied_without_customer_part_falls_back_to_the_source() -> None:
    msg = _message("intercom", _replied([{"id": "9", "body": "<p>agent</p>", "author": {"type": "admin"}}]))
    assert msg.message_key == "source:403918316" and "invoice" in msg.conversation.customer_text()


def test_intercom_ping_and_other_topics_are_ignored() -> None:
    assert _ignored("intercom", {"type": "notification_event", "topic": "ping", "data": {"item": {}}}) == "ping"
    payload = sample_payloads()["intercom"]
    payload["topic"] = "conversation.admin.replied"
    assert "not handled" in _ignored("intercom", payload)


def test_intercom_empty_body_is_ignored() -> None:
    payload = sample_payloads()["intercom"]
    payload["data"]["item"]["source"]["body"] = "<p> </p><br>"
    assert _ignored("intercom", payload) == "no customer text"


# ---- chatwoot ----------------------------------------------------------------------------

def test_chatwoot_incoming_message() -> None:
    msg = _message("chatwoot", sample_payloads()["chatwoot"], {"X-Chatwoot-Delivery": "7f1c"})
    assert (msg.conversation_key, msg.message_key, msg.delivery_id) == ("1:12", "4821", "7f1c")
    assert msg.conversation.customer_text().startswith("Hi, my router keeps rebooting")
    assert msg.customer == {"id": "57", "name": "Jane Doe", "email": "jane.doe@example.com"}


def test_chatwoot_delivery_id_falls_back_to_event_and_id() -> None:
    assert _message("chatwoot", sample_payloads()["chatwoot"]).delivery_id == "message_created:4821"


def test_chatwoot_chinese_text_intact() -> None:
    payload = sample_payloads()["chatwoot"]
    payload["content"] = CHINESE
    assert _message("chatwoot", payload).conversation.customer_text() == CHINESE


@pytest.mark.parametrize(("change", "reason"), [
    ({"message_type": "outgoing"}, "outgoing message"),
    ({"message_type": "activity"}, "activity message"),
    ({"message_type": "template"}, "template message"),
    ({"private": True}, "private note"),
    ({"private": True, "message_type": "outgoing"}, "private note"),
    ({"content": None}, "no customer text"),
    ({"content": "  "}, "no customer text"),
])
def test_chatwoot_non_customer_messages_are_ignored(change: dict[str, Any], reason: str) -> None:
    assert reason in _ignored("chatwoot", {**sample_payloads()["chatwoot"], **change})


def _conversation_created(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"event": "conversation_created", "id": 12, "inbox_id": 3, "status": "open", "messages": messages,
            "meta": {"sender": {"id": 57, "name": "Jane Doe", "email": "jane.doe@example.com", "type": "contact"}},
            "account": {"id": 1, "name": "Acme Inc"}}


def test_chatwoot_conversation_created_with_its_first_message() -> None:
    messages = [{"id": 4821, "content": "Hi, my router keeps rebooting", "message_type": 0, "private": False,
                 "account_id": 1, "conversation_id": 12},
                {"id": 4822, "content": "Auto-reply: we are on it", "message_type": 3, "private": False}]
    msg = _message("chatwoot", _conversation_created(messages))
    created = _message("chatwoot", sample_payloads()["chatwoot"])
    assert (msg.conversation_key, msg.message_key) == (created.conversation_key, created.message_key) == (
        "1:12", "4821")
    assert msg.conversation.customer_text() == "Hi, my router keeps rebooting"
    assert msg.delivery_id == "conversation_created:12"


def test_chatwoot_conversation_created_account_from_messages_when_not_top_level() -> None:
    payload = _conversation_created([{"id": 5, "content": "hello", "message_type": 0, "account_id": 9}])
    del payload["account"]
    assert _message("chatwoot", payload).conversation_key == "9:12"


def test_chatwoot_conversation_created_without_customer_messages_is_ignored() -> None:
    assert _ignored("chatwoot", _conversation_created([])) == "no customer text"
    assert _ignored("chatwoot", _conversation_created(
        [{"id": 1, "content": "note", "message_type": 0, "private": True}])) == "no customer text"


def test_chatwoot_other_events_are_ignored() -> None:
    assert "not handled" in _ignored("chatwoot", {"event": "conversation_status_changed", "id": 12})
    assert "not handled" in _ignored("chatwoot", {"event": "webwidget_triggered"})


# ---- zammad ------------------------------------------------------------------------------

def test_zammad_customer_article_html_to_text() -> None:
    msg = _message("zammad", sample_payloads()["zammad"], {"X-Zammad-Delivery": "0b6c2a1e"})
    assert (msg.conversation_key, msg.message_key, msg.delivery_id) == ("5", "104", "0b6c2a1e")
    assert msg.conversation.customer_text() == (
        "Washing machine error E21\n\nHello,\nmy washing machine stops mid-cycle and shows error E21. "
        "It is 8 months old, model WM-800.")
    assert msg.customer == {"id": "17", "name": "Jane Doe", "email": "jane.doe@example.com"}


def test_zammad_plain_text_article_is_not_html_stripped_and_chinese_is_intact() -> None:
    payload = sample_payloads()["zammad"]
    payload["article"].update(content_type="text/plain", body=f"{CHINESE}\nPress <Enter> & wait")
    payload["ticket"]["title"] = "路由器"
    assert _message("zammad", payload).conversation.customer_text() == f"路由器\n\n{CHINESE}\nPress <Enter> & wait"


@pytest.mark.parametrize(("change", "reason"), [
    ({"sender": "Agent"}, "from Agent"),
    ({"sender": "System"}, "from System"),
    ({"internal": True}, "internal note"),
    ({"body": "<p> </p>"}, "no customer text"),
])
def test_zammad_non_customer_articles_are_ignored(change: dict[str, Any], reason: str) -> None:
    payload = sample_payloads()["zammad"]
    payload["article"].update(change)
    assert reason in _ignored("zammad", payload)


@pytest.mark.parametrize("article", [None, {}])
def test_zammad_trigger_without_article_is_ignored(article: dict[str, Any] | None) -> None:
    payload = sample_payloads()["zammad"]
    payload["article"] = article
    assert _ignored("zammad", payload) == "trigger carried no article"


# ---- freshdesk ---------------------------------------------------------------------------

def test_freshdesk_ticket_created() -> None:
    msg = _message("freshdesk", sample_payloads()["freshdesk"])
    assert (msg.conversation_key, msg.message_key, msg.delivery_id) == ("5123", "ticket_created", None)
    assert msg.conversation.customer_text().startswith("Package marked delivered but not received\n\nHi, tracking")
    assert msg.customer == {"name": "Jane Doe", "email": "jane.doe@example.com"}


def test_freshdesk_raw_line_breaks_and_chinese_are_tolerated() -> None:
    body = ('{"event": "ticket_created", "ticket_id": "77", "subject": "退款", '
            f'"description": "第一行\n{CHINESE}\tend", "requester_email": "li@example.com"}}').encode()
    assert _message("freshdesk", body).conversation.customer_text() == f"退款\n\n第一行\n{CHINESE}\tend"


def test_freshdesk_refuses_an_unsubstituted_placeholder_and_ignores_other_events() -> None:
    with pytest.raises(WebhookPayloadError, match="placeholder"):
        _parse("freshdesk", {**sample_payloads()["freshdesk"], "ticket_id": "{{ticket.id}}"})
    assert "not handled" in _ignored("freshdesk", {**sample_payloads()["freshdesk"], "event": "ticket_updated"})
    assert _ignored("freshdesk", {**sample_payloads()["freshdesk"], "subject": "", "description": ""}) == (
        "no customer text")


# ---- where write-back writes: the platform's own ticket / conversation id and account ---------

@pytest.mark.parametrize(("name", "ticket_id", "account_id"), [
    ("zendesk", "35436", "22129848"), ("intercom", "147", "a86dr8yl"), ("chatwoot", "12", "1"),
    ("zammad", "5", None), ("freshdesk", "5123", None), ("generic", None, None),
])
def test_each_platform_names_its_own_ticket_and_account(name: str, ticket_id: str | None,
                                                        account_id: str | None) -> None:
    msg = _message(name, sample_payloads()[name])
    assert (msg.platform_ticket_id, msg.platform_account_id) == (ticket_id, account_id)


def test_zendesk_messaging_names_the_ticket_from_the_subject() -> None:
    payload = copy.deepcopy(MESSAGING_SAMPLE)
    del payload["detail"]
    assert _message("zendesk", payload).platform_ticket_id == "141"


def test_chatwoot_write_back_id_is_the_display_id_not_the_internal_id() -> None:
    payload = sample_payloads()["chatwoot"]
    payload["conversation"].update(id=9001, display_id=12)
    msg = _message("chatwoot", payload)
    assert (msg.platform_ticket_id, msg.platform_account_id) == ("12", "1")
    created = _conversation_created([{"id": 5, "content": "hello", "message_type": 0}])
    assert _message("chatwoot", {**created, "display_id": 7}).platform_ticket_id == "7"
    assert _message("chatwoot", created).platform_ticket_id == "12"
