"""Signed outbound events: the spec's published test vector, the reference ``standardwebhooks``
library verifying what we send, the body format, the delivery id as a stable ``webhook-id``
re-signed on every attempt, and the spec's answers (410 ends it, the rest is retried)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from tests.fakehelpdesks import FakeEventsReceiver
from triage.delivery import EventSender, FailedDeliveryError, GoneDeliveryError, RetryableDeliveryError, event_body
from triage.settings import EVENT_TYPES, EventsSettings
from triage.standard_webhooks import signature, signed_headers

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET = "whsec_dHJpYWdlLWV2ZW50cy10ZXN0LXNlY3JldC0zMmI="
TICKET = {"id": 42, "source": "zendesk", "external_id": "35436", "status": "routed", "problem_type": "device_fault",
          "device_model": "Watch S1", "urgent_level": "high", "user_requirements": ["换货"],
          "route": "hardware-escalation", "priority": "P1", "sla_due_at": "2026-12-01T10:30:00+00:00"}
OCCURRED = datetime(2026, 12, 1, 9, 30, 0, 123000, tzinfo=UTC)


class WallClock:
    """Unix seconds near the real time (the reference verifier allows 5 minutes), steppable."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) - 120)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[FakeEventsReceiver]:
    with FakeEventsReceiver(SECRET) as fake:
        yield fake


def _sender(url: str, clock: WallClock | None = None, timeout: float = 5.0) -> EventSender:
    settings = EventsSettings.model_validate({"timeout_seconds": timeout, "endpoints": [
        {"url": url, "secret": SECRET, "events": ["ticket.routed", "delivery.failed"]}]})
    return EventSender(settings, retry_after_max=900, clock=clock or WallClock())


def test_signature_matches_the_published_test_vector_and_the_reference_library() -> None:
    body = b'{"test": 2432232314}'
    ours = signature(SPEC_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body)
    assert ours == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    theirs = Webhook(SPEC_SECRET).sign("msg_p5jXN8AQM9LWM0D4loKWxJek", datetime.fromtimestamp(1614265330, UTC),
                                       body.decode())
    assert ours == theirs


def test_the_reference_library_verifies_our_headers() -> None:
    body = event_body("ticket.routed", TICKET, OCCURRED)
    headers = signed_headers(SECRET, "dlv_01", int(time.time()), body)
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)


def test_body_is_type_timestamp_and_the_ticket() -> None:
    body = event_body("ticket.routed", TICKET, OCCURRED)
    assert json.loads(body) == {"type": "ticket.routed", "timestamp": "2026-12-01T09:30:00.123000Z",
                                "data": {"ticket": TICKET}}
    assert "换货".encode() in body  # UTF-8 as is, not \\u escapes
    failed = json.loads(event_body("delivery.failed", TICKET, OCCURRED, delivery={"id": "dlv_7", "target": "zendesk"}))
    assert failed["data"] == {"ticket": TICKET, "delivery": {"id": "dlv_7", "target": "zendesk"}}
    with pytest.raises(ValueError, match=r"unknown event type 'ticket\.deleted'"):
        event_body("ticket.deleted", TICKET, OCCURRED)


def test_the_receiver_gets_the_stored_bytes_signed_with_the_delivery_id(receiver: FakeEventsReceiver) -> None:
    body = event_body("ticket.routed", TICKET, OCCURRED)
    sender = _sender(receiver.url)
    sender.send(receiver.url, "dlv_01", body)
    sender.close()
    [got] = receiver.received
    assert got.body == body and got.payload["data"]["ticket"] == TICKET
    assert got.headers["webhook-id"] == "dlv_01" and got.headers["content-type"] == "application/json"


def test_a_retry_keeps_id_and_body_and_signs_anew(receiver: FakeEventsReceiver) -> None:
    body, clock = event_body("ticket.routed", TICKET, OCCURRED), WallClock()
    sender = _sender(receiver.url, clock)
    receiver.answer_next(503, headers={"Retry-After": "30"}, message="overloaded")
    with pytest.raises(RetryableDeliveryError) as caught:
        sender.send(receiver.url, "dlv_02", body)
    assert (caught.value.status, caught.value.wait) == (503, 30.0)
    clock.now += 30
    sender.send(receiver.url, "dlv_02", body)
    sender.close()
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "dlv_02"
    assert first.body == second.body == body
    assert int(second.headers["webhook-timestamp"]) == int(first.headers["webhook-timestamp"]) + 30
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert len(receiver.received) == 1 and receiver.rejected == 0


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 502])
def test_every_other_answer_is_retried(receiver: FakeEventsReceiver, status: int) -> None:
    receiver.answer_next(status, message="not now")
    with pytest.raises(RetryableDeliveryError) as caught:
        _sender(receiver.url).send(receiver.url, "dlv_03", b"{}")
    assert caught.value.status == status and "not now" in caught.value.message


def test_410_ends_the_delivery_and_redirects_are_not_followed(receiver: FakeEventsReceiver) -> None:
    receiver.answer_next(410, message="endpoint disabled")
    with pytest.raises(GoneDeliveryError, match="endpoint disabled"):
        _sender(receiver.url).send(receiver.url, "dlv_04", b"{}")
    receiver.answer_next(301, headers={"Location": "http://169.254.169.254/latest/meta-data"})
    with pytest.raises(RetryableDeliveryError, match="redirect, which is not followed"):
        _sender(receiver.url).send(receiver.url, "dlv_05", b"{}")
    assert len(receiver.requests) == 2


def test_a_hanging_receiver_times_out(receiver: FakeEventsReceiver) -> None:
    receiver.answer_next(204, late=0.6)
    with pytest.raises(RetryableDeliveryError, match=r"no answer within 0\.2 s"):
        _sender(receiver.url, timeout=0.2).send(receiver.url, "dlv_06", b"{}")


def test_a_receiver_echoing_our_secret_has_it_scrubbed(receiver: FakeEventsReceiver) -> None:
    receiver.answer_next(500, message=f"bad secret {SECRET}")
    with pytest.raises(RetryableDeliveryError) as caught:
        _sender(receiver.url).send(receiver.url, "dlv_07", b"{}")
    assert SECRET not in str(caught.value) and "<redacted>" in str(caught.value)


def test_only_configured_endpoints_and_valid_ids_are_sent_to(receiver: FakeEventsReceiver) -> None:
    sender = _sender(receiver.url)
    with pytest.raises(FailedDeliveryError, match=r"no longer in \[\[events.endpoints\]\]"):
        sender.send(receiver.url + "/other", "dlv_08", b"{}")
    with pytest.raises(FailedDeliveryError, match="not a valid webhook-id"):
        sender.send(receiver.url, "dlv.08", b"{}")
    with pytest.raises(FailedDeliveryError, match="not a valid webhook-id"):
        sender.send(receiver.url, "dlv_08\n", b"{}")
    assert receiver.requests == []


def test_endpoints_take_only_their_event_types() -> None:
    settings = EventsSettings.model_validate({"endpoints": [
        {"url": "https://a.example/hook", "secret": SECRET, "events": ["ticket.routed"]},
        {"url": "https://b.example/hook", "secret": SECRET, "events": list(EVENT_TYPES)}]})
    assert [e.url for e in settings.endpoints_for("ticket.routed")] == ["https://a.example/hook",
                                                                       "https://b.example/hook"]
    assert [e.url for e in settings.endpoints_for("delivery.failed")] == ["https://b.example/hook"]
