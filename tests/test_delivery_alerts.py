"""Alerts to a Slack-compatible incoming webhook: the message, escaping of customer text, and
Slack's answers (400/403/404/410 permanent, 429 with Retry-After and 5xx retried), never echoing
the webhook URL, which is a credential."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakehelpdesks import SLACK_PATH, FakeSlack
from triage.delivery import AlertSender, FailedDeliveryError, RetryableDeliveryError, p1_text, sla_breach_text
from triage.settings import AlertsSettings

TICKET = {"id": 42, "status": "routed", "problem_type": "device_fault", "device_model": "Watch S1 <@U024BE7LH>",
          "urgent_level": "high", "route": "hardware-escalation", "priority": "P1",
          "sla_due_at": "2026-12-01T10:30:00+00:00"}
LINK = "https://triage.example.com/tickets/42"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def _sender(url: str | None) -> AlertSender:
    return AlertSender(AlertsSettings.model_validate({"webhook_url": url, "timeout_seconds": 2}), retry_after_max=900)


def test_texts_are_short_escaped_and_link_to_triage() -> None:
    assert p1_text(TICKET, LINK) == ("P1 ticket 42 on hardware-escalation: device_fault, urgency high, "
                                     f"Watch S1 &lt;@U024BE7LH&gt; <{LINK}|open in triage>")
    assert sla_breach_text(TICKET, None) == ("SLA breached: ticket 42 (P1, hardware-escalation) was due "
                                             "2026-12-01T10:30:00+00:00, status routed")


def test_an_alert_is_posted_as_text(slack: FakeSlack) -> None:
    sender = _sender(slack.webhook_url)
    sender.send(p1_text(TICKET, LINK))
    sender.close()
    assert slack.messages == [p1_text(TICKET, LINK)]
    [call] = slack.calls()
    assert call.headers["Content-Type"] == "application/json" and call.body == {"text": p1_text(TICKET, LINK)}


@pytest.mark.parametrize(("status", "message"), [
    (400, "invalid_payload"), (403, "action_prohibited"), (404, "channel_not_found"), (410, "channel_is_archived")])
def test_permanent_answers_fail_with_slacks_words_and_not_the_url(slack: FakeSlack, status: int, message: str) -> None:
    slack.answer_next(status, message=message)
    with pytest.raises(FailedDeliveryError) as caught:
        _sender(slack.webhook_url).send("P1 ticket 42")
    assert caught.value.status == status and message in str(caught.value)
    assert SLACK_PATH not in str(caught.value) and slack.base_url not in str(caught.value)


def test_rate_limits_and_server_errors_are_retried(slack: FakeSlack) -> None:
    slack.answer_next(429, headers={"Retry-After": "1"}, message="rate_limited")
    with pytest.raises(RetryableDeliveryError) as limited:
        _sender(slack.webhook_url).send("P1 ticket 42")
    assert (limited.value.status, limited.value.wait) == (429, 1.0)
    slack.answer_next(500, message="rollup_error")
    with pytest.raises(RetryableDeliveryError, match="rollup_error") as failed:
        _sender(slack.webhook_url).send("P1 ticket 42")
    assert failed.value.wait is None
    assert slack.messages == []


def test_without_a_webhook_url_nothing_is_sent() -> None:
    sender = _sender(None)
    assert not sender.enabled
    with pytest.raises(FailedDeliveryError, match=r"\[alerts\] webhook_url is not set"):
        sender.send("P1 ticket 42")
