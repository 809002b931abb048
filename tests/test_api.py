"""The HTTP service against a real database (SQLite and PostgreSQL): webhooks and dispatch review.

Publishing is recorded instead of sent to a broker here (the end-to-end test in
test_serve_e2e.py runs the real `triage serve` and worker); everything else is the real app.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.factories import ALICE, BOB, SECRETS, Service, api_environment, finish_with_rules
from triage.api.app import create_app
from triage.app import App
from triage.intake.normalise import ID_MAX_CHARS
from triage.intake.platforms import sample_payloads, signed_request
from triage.settings import load_settings
from triage.store.models import Conversation, Event, IntakeKey, Ticket

# ---- webhooks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", sorted(SECRETS))
def test_each_platform_sample_becomes_one_ticket(api: Service, source: str) -> None:
    response = api.post(source, delivery_id="delivery-1")
    assert response.status_code == 202, response.text
    assert response.json() == {"ticket_id": 1, "status": "queued", "duplicate": False}
    assert api.enqueued == [1]
    again = api.post(source, delivery_id="delivery-1")
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert api.enqueued == [1] and api.count(Ticket) == 1


#: The platform's own ticket (conversation) id and account in each sample, kept for write-back.
PLATFORM_IDS = {"generic": (None, None), "zendesk": ("35436", "22129848"), "intercom": ("147", "a86dr8yl"),
                "chatwoot": ("12", "1"), "zammad": ("5", None), "freshdesk": ("5123", None)}


@pytest.mark.parametrize("source", sorted(SECRETS))
def test_intake_keeps_the_platforms_own_ids_for_writeback(api: Service, source: str) -> None:
    assert api.post(source).status_code == 202
    with api.parts.sessions() as session:
        conversation = session.scalars(select(Conversation)).one()
    assert (conversation.platform_ticket_id, conversation.platform_account_id) == PLATFORM_IDS[source]


def test_a_platform_id_longer_than_its_column_is_refused_naming_the_field(api: Service) -> None:
    payload = sample_payloads()["zendesk"]
    payload["detail"]["id"] = "9" * (ID_MAX_CHARS + 1)
    answer = api.post("zendesk", payload)
    assert answer.status_code == 400 and "detail.id" in answer.text, answer.text
    with api.parts.sessions() as session:
        assert session.scalars(select(Conversation)).all() == []


def test_stored_conversation_keeps_the_customer_text(api: Service) -> None:
    payload = {"external_id": "ZH-1", "text": "我的手环充不进电了，希望尽快处理",
               "customer": {"email": "li@example.com"}}
    assert api.post("generic", payload).status_code == 202
    with api.parts.sessions() as session:
        conversation = session.scalars(select(Conversation)).one()
    assert conversation.messages == [{"role": "customer", "text": payload["text"]}]
    assert (conversation.source, conversation.external_id) == ("generic", "ZH-1")
    assert conversation.customer == {"email": "li@example.com"}


@pytest.mark.parametrize(("case", "expected"), [
    ("tampered", 401), ("wrong-secret", 401), ("stale", 401), ("future", 401), ("unsigned", 401),
    ("oversize", 413), ("oversize-declared", 413), ("text/plain", 415), ("not-json", 401), ("unknown-source", 404),
])
def test_bad_requests_get_their_status_and_store_nothing(api: Service, case: str, expected: int) -> None:
    body, headers = signed_request("zendesk", sample_payloads()["zendesk"], SECRETS["zendesk"], now=time.time())
    url = "/webhooks/zendesk"
    if case == "tampered":
        body = body[:-1] + b" }"  # same JSON, different bytes
    elif case == "wrong-secret":
        body, headers = signed_request("zendesk", sample_payloads()["zendesk"], "nope", now=time.time())
    elif case in ("stale", "future"):
        shift = -301 if case == "stale" else 301
        body, headers = signed_request("zendesk", sample_payloads()["zendesk"], SECRETS["zendesk"],
                                       now=time.time() + shift)
    elif case == "unsigned":
        headers = {"content-type": "application/json"}
    elif case == "oversize":
        body = b'{"pad": "' + b"x" * (256 * 1024) + b'"}'
        headers = {**headers, "content-length": str(len(body))}
    elif case == "oversize-declared":
        headers = {**headers, "content-length": str(10 * 1024 * 1024)}
        body = b"{}"
    elif case == "text/plain":
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"} | {"content-type": "text/plain"}
    elif case == "not-json":
        body = b"{not json"  # the signature no longer matches either: auth is checked first
    elif case == "unknown-source":
        url = "/webhooks/myspace"
    response = api.client.post(url, content=body, headers=headers)
    assert response.status_code == expected, response.text
    if case == "oversize-declared":  # above every limit: the app's (FastAPI's max_body_size) answers first
        assert response.text == "Content Too Large"
    else:
        assert response.json()["detail"]
    assert api.count(Conversation) == 0 and api.count(IntakeKey) == 0 and api.enqueued == []


def test_signed_but_malformed_bodies_are_400_with_a_reason(api: Service) -> None:
    for payload in ({"external_id": "X-1"}, {"text": "no id"}, {"external_id": "X-2", "messages": []}):
        response = api.post("generic", payload)
        assert response.status_code == 400 and response.json()["detail"], payload
    body = b"{not json"
    from triage.intake.platforms import sign

    headers = sign("generic", body, SECRETS["generic"], now=time.time(), delivery_id="m-1")
    response = api.client.post("/webhooks/generic", content=body, headers=headers)
    assert response.status_code == 400 and "JSON" in response.json()["detail"]
    assert api.count(Conversation) == 0


def test_source_without_a_secret_is_refused(migrated_database_url: str) -> None:
    env = api_environment(migrated_database_url)
    del env["TRIAGE_WEBHOOK_SECRET_ZENDESK"]
    parts = App.build(load_settings(env))
    with TestClient(create_app(parts, publish=lambda _: None)) as client:
        body, headers = signed_request("zendesk", sample_payloads()["zendesk"], "anything", now=time.time())
        response = client.post("/webhooks/zendesk", content=body, headers=headers)
    assert response.status_code == 401 and "TRIAGE_WEBHOOK_SECRET_ZENDESK" in response.json()["detail"]


def test_events_without_customer_text_are_200_and_store_nothing(api: Service) -> None:
    chatwoot = sample_payloads()["chatwoot"] | {"message_type": "outgoing"}
    private = sample_payloads()["chatwoot"] | {"private": True}
    zammad = sample_payloads()["zammad"]
    zammad["article"]["sender"] = "Agent"
    for source, payload in (("chatwoot", chatwoot), ("chatwoot", private), ("zammad", zammad),
                            ("intercom", {"type": "notification_event", "topic": "ping", "id": "notif_1",
                                          "data": {"item": {"type": "ping"}}})):
        response = api.post(source, payload)
        assert response.status_code == 200, (source, response.text)
    assert api.count(Conversation) == 0 and api.enqueued == []


def test_concurrent_duplicate_deliveries_make_one_ticket(api: Service) -> None:
    body, headers = signed_request("generic", sample_payloads()["generic"], SECRETS["generic"], now=time.time(),
                                   delivery_id="msg_same")
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def deliver() -> None:
        barrier.wait()
        results.append(api.client.post("/webhooks/generic", content=body, headers=headers))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in results) == [202] * 6
    assert sum(not r.json()["duplicate"] for r in results) == 1
    assert api.count(Ticket) == 1 and api.enqueued == [1]


def _finish(api: Service, ticket_id: int) -> None:
    finish_with_rules(api.parts, ticket_id)


def test_new_customer_message_is_appended_and_retriaged(api: Service) -> None:
    first = {"external_id": "C-9", "text": "My watch won't charge"}
    assert api.post("generic", first, delivery_id="m1").status_code == 202
    _finish(api, 1)
    follow_up = {"external_id": "C-9", "text": "Now it won't turn on at all, please hurry"}
    response = api.post("generic", follow_up, delivery_id="m2")
    assert response.json() == {"ticket_id": 1, "status": "queued", "duplicate": False}
    assert api.enqueued == [1, 1]
    with api.parts.sessions() as session:
        ticket = session.get_one(Ticket, 1)
        assert [m["text"] for m in ticket.conversation.messages] == [first["text"], follow_up["text"]]
        assert ticket.run == 2


def test_new_message_on_a_corrected_ticket_is_kept_but_not_retriaged(api: Service) -> None:
    assert api.post("generic", {"external_id": "C-7", "text": "Router broken"}, delivery_id="m1").status_code == 202
    _finish(api, 1)
    corrected = api.client.patch("/tickets/1", json={"urgent_level": "high"}, headers=ALICE)
    assert corrected.status_code == 200, corrected.text
    response = api.post("generic", {"external_id": "C-7", "text": "Any news?"}, delivery_id="m2")
    assert response.json() == {"ticket_id": 1, "status": "corrected", "duplicate": False}
    assert api.enqueued == [1]


# ---- dispatch review -----------------------------------------------------------------------------

DISPATCH_CALLS = [("GET", "/tickets"), ("GET", "/tickets/1"), ("PATCH", "/tickets/1"), ("POST", "/tickets/1/claim"),
                  ("POST", "/tickets/1/reprocess"), ("GET", "/queues")]


@pytest.mark.parametrize(("method", "path"), DISPATCH_CALLS)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic YWxpY2U6YWxpY2UtdG9rZW4=", "Bearer "])
def test_every_dispatch_endpoint_needs_a_valid_token(api: Service, method: str, path: str, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = api.client.request(method, path, headers=headers, json={"urgent_level": "high"})
    assert response.status_code == 401


def test_correction_is_validated_rerouted_and_audited(api: Service) -> None:
    api.post("generic", {"external_id": "R-1", "text": "How do I set an alarm on Watch S1? Not urgent."})
    _finish(api, 1)
    before = api.client.get("/tickets/1", headers=ALICE).json()["ticket"]
    assert before["route"] == "general-inquiries"
    bad = api.client.patch("/tickets/1", json={"urgent_level": "yesterday"}, headers=ALICE)
    assert bad.status_code == 422 and bad.json()["detail"]["errors"][0]["path"] == "$.urgent_level"
    outside = api.client.patch("/tickets/1", json={"route": "vip"}, headers=ALICE)
    assert outside.status_code == 422 and outside.json()["detail"]["fields"] == ["route"]
    response = api.client.patch("/tickets/1", json={"problem_type": "device_fault", "urgent_level": "high"},
                                headers=ALICE)
    assert response.status_code == 200
    detail = response.json()
    ticket = detail["ticket"]
    assert (ticket["status"], ticket["extractor"], ticket["route"], ticket["priority"]) == (
        "corrected", "human", "hardware-escalation", "P1")
    event = detail["events"][-1]
    assert (event["actor"], event["kind"]) == ("alice", "corrected")
    assert event["before"]["route"] == "general-inquiries" and event["after"]["route"] == "hardware-escalation"
    assert detail["conversation"]["messages"][0]["text"].startswith("How do I set an alarm")
    with api.parts.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.actor == "alice")) == 1


def test_claim_conflict(api: Service) -> None:
    api.post("generic", {"external_id": "K-1", "text": "hello"})
    assert api.client.post("/tickets/1/claim", headers=ALICE).json() == {"ticket_id": 1, "assigned_to": "alice"}
    assert api.client.post("/tickets/1/claim", headers=ALICE).status_code == 200
    conflict = api.client.post("/tickets/1/claim", headers=BOB)
    assert conflict.status_code == 409 and "alice" in conflict.json()["detail"]
    assert api.client.post("/tickets/99/claim", headers=BOB).status_code == 404


def test_reprocess_enqueues_a_new_run(api: Service) -> None:
    api.post("generic", {"external_id": "P-1", "text": "hello"})
    _finish(api, 1)
    response = api.client.post("/tickets/1/reprocess", headers=BOB)
    assert response.status_code == 202 and api.enqueued == [1, 1]
    detail = api.client.get("/tickets/1", headers=BOB).json()
    assert detail["ticket"]["status"] == "queued" and detail["ticket"]["run"] == 2
    assert detail["events"][-1]["kind"] == "reprocess" and detail["events"][-1]["actor"] == "bob"


def test_list_filters_paginates_newest_first_and_orders_by_sla(api: Service) -> None:
    texts = ["My router is broken, urgent!", "How do I reset my password?", "Terrible service, I complain",
             "Speaker won't turn on", "Can I change my address?"]
    for i, text in enumerate(texts, start=1):
        api.post("generic", {"external_id": f"L-{i}", "text": text})
        _finish(api, i)
    page = api.client.get("/tickets", params={"limit": 2}, headers=ALICE).json()
    ids = [t["id"] for t in page["items"]]
    while page["next_cursor"]:
        page = api.client.get("/tickets", params={"limit": 2, "cursor": page["next_cursor"]}, headers=ALICE).json()
        ids += [t["id"] for t in page["items"]]
    assert ids == [5, 4, 3, 2, 1]
    faults = api.client.get("/tickets", params={"problem_type": "device_fault"}, headers=ALICE).json()["items"]
    assert {t["id"] for t in faults} == {1, 4}
    by_sla = api.client.get("/tickets", params={"order": "sla", "limit": 2}, headers=ALICE).json()
    dues = [t["sla_due_at"] for t in by_sla["items"]]
    rest = api.client.get("/tickets", params={"order": "sla", "limit": 10, "cursor": by_sla["next_cursor"]},
                          headers=ALICE).json()["items"]
    dues += [t["sla_due_at"] for t in rest]
    assert dues == sorted(dues) and len(dues) == 5
    assert api.client.get("/tickets", params={"cursor": "garbage"}, headers=ALICE).status_code == 400
    future = api.client.get("/tickets", params={"since": "2999-01-01T00:00:00Z"}, headers=ALICE).json()
    assert future["items"] == []


def test_queues_counts_per_route_and_status(api: Service) -> None:
    api.post("generic", {"external_id": "Q-1", "text": "Router broken, urgent!"})
    api.post("generic", {"external_id": "Q-2", "text": "hello"})
    _finish(api, 1)
    routes = api.client.get("/queues", headers=ALICE).json()["routes"]
    assert routes["hardware-escalation"]["counts"] == {"routed": 1}
    assert routes["hardware-escalation"]["oldest_sla_due_at"] is not None
    assert routes["(unrouted)"]["counts"] == {"queued": 1}


def test_health_says_only_what_is_down_and_logs_why(api: Service, migrated_database_url: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok", "database": "ok", "broker": "ok"}
    env = api_environment(migrated_database_url.replace("5432", "5439") if "postgresql" in migrated_database_url
                          else migrated_database_url, TRIAGE_BROKER_URL="redis://127.0.0.1:1/0")
    parts = App.build(load_settings(env))
    with caplog.at_level(logging.WARNING, logger="triage.api.app"), \
            TestClient(create_app(parts, publish=lambda _: None)) as client:
        response = client.get("/healthz")
    parts.close()
    database = "down" if "postgresql" in migrated_database_url else "ok"
    assert response.status_code == 503
    assert response.json() == {"status": "down", "database": database, "broker": "down"}, "nothing but up or down"
    assert "127.0.0.1" not in response.text and "Error" not in response.text
    assert "health: the broker is down" in caplog.text, "why goes to the log"
    if database == "down":
        assert "5439" in caplog.text


def test_openapi_docs_are_served(api: Service) -> None:
    assert api.client.get("/docs").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    assert {"/webhooks/{source}", "/tickets", "/tickets/{ticket_id}", "/queues", "/healthz"} <= set(paths)

