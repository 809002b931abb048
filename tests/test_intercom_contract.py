"""Every request the Intercom adapter sends is checked against Intercom's own OpenAPI description for
2.14 (vendored in ``tests/vendor/intercom``, MIT) with openapi-core: the loopback Intercom refuses a
request that breaks it and fails the test that sent it. Here: the adapter's assignment, tags, note and
priority (``custom_attribute`` mode) requests keep the contract, and a drift is caught."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fakehelpdesks import FakeIntercom
from tests.intercom_contract import contract_violation
from tests.writeback_cases import INTERCOM, rig
from triage.delivery import GoneDeliveryError, deliver

TOKEN = {"Authorization": "Bearer ic-secret-token-1", "Intercom-Version": "2.14", "Content-Type": "application/json"}
ASSIGNMENT = {"message_type": "assignment", "type": "team", "admin_id": "991", "assignee_id": "5001"}


def test_the_adapters_requests_keep_intercoms_description(tmp_path: Path) -> None:
    with rig(INTERCOM, tmp_path) as r:
        r.ticket(tags=["vip", "triage_p2"])
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1", previous=("hardware-support", "P2")))
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"), resumed=True)  # reads the notes first
        checked = set(r.fake.validated)
        assert r.fake.violations == []
    assert {"POST /conversations/147/parts", "PUT /conversations/147", "GET /conversations/147", "POST /tags",
            "POST /conversations/147/tags", "POST /conversations/147/reply"} <= checked
    assert any(call.startswith("DELETE /conversations/147/tags/") for call in checked)


def test_the_probes_keep_it_too(tmp_path: Path) -> None:
    with rig(INTERCOM, tmp_path) as r:  # no conversation: the team step's 404 is explained by reading it
        with pytest.raises(GoneDeliveryError):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert {"GET /me", "GET /conversations/147"} <= set(r.fake.validated) and r.fake.violations == []


@pytest.mark.parametrize(("body", "broken"), [
    ({**ASSIGNMENT, "admin_id": 991}, "admin_id"),                   # an integer where the API takes a string
    ({key: value for key, value in ASSIGNMENT.items() if key != "admin_id"}, "admin_id"),
    ({**ASSIGNMENT, "message_type": "assign"}, "message_type"),
])
def test_a_body_that_breaks_the_description_is_named(body: dict[str, object], broken: str) -> None:
    violation = contract_violation("POST", "/conversations/147/parts", {}, TOKEN, body)
    assert violation is not None and "/conversations/147/parts" in violation
    assert contract_violation("POST", "/conversations/147/parts", {}, TOKEN, ASSIGNMENT) is None


def test_a_path_a_version_or_a_credential_outside_the_description_is_named() -> None:
    assert contract_violation("POST", "/conversations/147/assign", {}, TOKEN, ASSIGNMENT) is not None
    assert contract_violation("POST", "/conversations/147/parts", {}, {**TOKEN, "Intercom-Version": "9.9"},
                              ASSIGNMENT) is not None
    unsigned = {name: value for name, value in TOKEN.items() if name != "Authorization"}
    assert contract_violation("POST", "/conversations/147/parts", {}, unsigned, ASSIGNMENT) is not None


def test_the_loopback_intercom_refuses_a_drift_and_fails_the_test_that_sent_it() -> None:
    fake = FakeIntercom(token="ic-secret-token-1", admin_id="991").__enter__()
    fake.ticket("147")
    answer = httpx.post(f"{fake.base_url}/conversations/147/parts", headers=TOKEN, json={**ASSIGNMENT, "admin_id": 991})
    assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == "parameter_invalid"
    assert fake.tickets["147"].group is None  # refused before the platform's own behaviour
    with pytest.raises(AssertionError, match=r"break Intercom's 2\.14 description"):
        fake.__exit__(None, None, None)
