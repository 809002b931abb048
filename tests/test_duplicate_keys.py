"""A JSON object that gives a key twice is refused, naming the key, in every body: webhooks, the API.

(``triage submit`` lines: tests/test_submit_lines.py.) ``json.loads`` keeps the last of two equal keys, so a
Freshdesk rule body whose subject the platform substitutes unescaped could file the message under another
ticket; every such body is a 400 and nothing is stored.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.factories import ALICE, SECRETS, Service, finish_with_rules, submit
from triage.intake.platforms import PLATFORMS, sample_payloads, sign
from triage.intake.platforms.freshdesk import FRESHDESK_RULE_BODY
from triage.store.models import Conversation, Event, IntakeKey, Ticket


def _stored(api: Service) -> tuple[int, int, int]:
    with api.parts.sessions() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) or 0  # type: ignore[return-value]
                     for model in (Conversation, Ticket, IntakeKey))


def _post(api: Service, source: str, body: bytes) -> Any:
    headers = sign(source, body, SECRETS[source], now=time.time(), delivery_id="dup-1")
    return api.client.post(f"/webhooks/{source}", content=body, headers=headers)


def _twice(payload: dict[str, Any], key: str, value: Any) -> bytes:
    """``payload`` as JSON with ``key`` given a second time, as ``value``, after the others."""
    return json.dumps(payload).encode()[:-1] + f", {json.dumps(key)}: {json.dumps(value)}}}".encode()


@pytest.mark.parametrize("source", sorted(PLATFORMS))
def test_a_webhook_body_with_a_key_twice_is_a_400_naming_it(api: Service, source: str) -> None:
    payload = sample_payloads()[source]
    key = next(iter(payload))
    response = _post(api, source, _twice(payload, key, payload[key]))
    assert response.status_code == 400
    assert response.json() == {"detail": f"body: not usable JSON: the key {json.dumps(key)} is given twice"}
    assert _stored(api) == (0, 0, 0)


def test_a_key_twice_deep_inside_a_body_is_refused_too(api: Service) -> None:
    payload = {"external_id": "N-1", "messages": [{"role": "customer", "text": "hi", "text": "bye"}]}  # noqa: F601
    body = b'{"external_id": "N-1", "messages": [{"role": "customer", "text": "hi", "text": "bye"}]}'
    assert json.loads(body) == payload  # what json.loads alone would have taken: the last text
    response = _post(api, "generic", body)
    assert response.status_code == 400 and 'the key "text" is given twice' in response.json()["detail"]
    assert _stored(api) == (0, 0, 0)


def test_a_freshdesk_subject_substituted_unescaped_cannot_move_the_message_to_another_ticket(api: Service) -> None:
    """The documented rule body, filled in as Freshdesk fills it: the subject's text goes in unescaped."""
    subject = 'Order late", "ticket_id": "4242'
    body = (FRESHDESK_RULE_BODY.replace("{{ticket.id}}", "5123").replace("{{ticket.subject}}", subject)
            .replace("{{ticket.description_text}}", "Where is my parcel?")
            .replace("{{ticket.requester.name}}", "Mallory").replace("{{ticket.requester.email}}", "m@example.com"))
    assert json.loads(body)["ticket_id"] == "4242", "last one wins: the message would be filed under 4242"
    response = _post(api, "freshdesk", body.encode())
    assert response.status_code == 400
    assert response.json()["detail"] == 'body: not usable JSON: the key "ticket_id" is given twice'
    assert _stored(api) == (0, 0, 0)


def test_an_api_body_with_a_key_twice_is_a_400_and_changes_nothing(api: Service) -> None:
    ticket_id = submit(api.parts, "D-1", "My speaker does not turn on")
    finish_with_rules(api.parts, ticket_id)
    with api.parts.sessions() as session:
        before = session.scalar(select(func.count()).select_from(Event))
    for body in (b'{"urgent_level": "low", "urgent_level": "high"}',
                 b'{"device_model": {"name": "X", "name": "Y"}}'):
        response = api.client.patch(f"/tickets/{ticket_id}", content=body,
                                    headers={**ALICE, "Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert "is given twice" in response.json()["detail"] and response.json()["detail"].startswith("body: ")
    nan = api.client.patch(f"/tickets/{ticket_id}", content=b'{"device_model": NaN}',
                           headers={**ALICE, "Content-Type": "application/json"})
    assert nan.status_code == 400 and nan.json() == {"detail": "body: not usable JSON: NaN is not a JSON number"}
    with api.parts.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == before
        assert session.get_one(Ticket, ticket_id).fields["urgent_level"] == "normal"
    fine = api.client.patch(f"/tickets/{ticket_id}", content=b'{"urgent_level": "high"}',
                            headers={**ALICE, "Content-Type": "application/json"})
    assert fine.status_code == 200 and fine.json()["ticket"]["fields"]["urgent_level"] == "high"
