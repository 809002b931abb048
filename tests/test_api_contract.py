"""The API's contract, case by case (issue 8 section 6 and 9): what the fuzzer found, pinned down.

Ids no ticket can have are 404 on every route, every status is documented with its body, PATCH's
422 matches what it declares and names the fields a not-yet-extracted ticket lacks.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.factories import ALICE, Service, finish_with_rules, serve, submit
from triage.api.responses import CorrectionRejected, RequestInvalid

HUGE_IDS = [2**31, 2**31 + 1, 2**63, 10**30, 0, -1]


def test_ids_no_ticket_can_have_are_404_on_every_route(api: Service) -> None:
    for ticket_id in HUGE_IDS:
        for method, suffix, body in (("GET", "", None), ("PATCH", "", {"urgent_level": "high"}),
                                     ("POST", "/claim", None), ("POST", "/reprocess", None)):
            response = api.client.request(method, f"/tickets/{ticket_id}{suffix}", json=body, headers=ALICE)
            assert response.status_code == 404, (method, suffix, ticket_id, response.text)
            assert response.json() == {"detail": f"no ticket {ticket_id}"}


def _declared(api: Service, method: str, path: str) -> dict[str, Any]:
    return api.client.get("/openapi.json").json()["paths"][path][method]["responses"]


#: What each endpoint can answer (a desk or operability endpoint added later belongs here too).
STATUSES = {
    ("get", "/tickets"): {"200", "400", "401", "422", "429"},
    ("get", "/tickets/{ticket_id}"): {"200", "400", "401", "404", "422", "429"},
    ("patch", "/tickets/{ticket_id}"): {"200", "400", "401", "404", "409", "413", "422", "429"},
    ("post", "/tickets/{ticket_id}/claim"): {"200", "400", "401", "404", "409", "422", "429"},
    ("post", "/tickets/{ticket_id}/reprocess"): {"202", "400", "401", "404", "409", "422", "429"},
    ("get", "/queues"): {"200", "400", "401", "429"},
    ("post", "/webhooks/{source}"): {"200", "202", "400", "401", "404", "413", "415", "422"},
    ("get", "/healthz"): {"200", "503"},
}


def test_every_status_an_endpoint_gives_is_documented_with_a_body(sqlite_url: str) -> None:
    with serve(sqlite_url) as api:
        for (method, path), statuses in STATUSES.items():
            responses = _declared(api, method, path)
            assert set(responses) == statuses, (method, path)
            assert all("application/json" in r.get("content", {}) for r in responses.values()), responses


def test_the_patch_422_answers_match_the_declared_schema(api: Service) -> None:
    submit(api.parts, "P-1", "My router is broken")
    finish_with_rules(api.parts, 1)
    declared = _declared(api, "patch", "/tickets/{ticket_id}")["422"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in declared["anyOf"]} == {"CorrectionRejected", "RequestInvalid"}
    invalid = api.client.patch("/tickets/1", json={"urgent_level": "yesterday"}, headers=ALICE)
    unknown = api.client.patch("/tickets/1", json={"route": "vip"}, headers=ALICE)
    not_an_object = api.client.patch("/tickets/1", json=["urgent_level"], headers=ALICE)
    assert [r.status_code for r in (invalid, unknown, not_an_object)] == [422] * 3
    CorrectionRejected.model_validate(invalid.json(), strict=True)
    CorrectionRejected.model_validate(unknown.json(), strict=True)
    RequestInvalid.model_validate(not_an_object.json())


def test_correcting_a_ticket_not_yet_extracted_says_which_fields_are_missing(api: Service) -> None:
    submit(api.parts, "P-2", "My router is broken")  # queued: no fields yet
    response = api.client.patch("/tickets/1", json={"urgent_level": "high"}, headers=ALICE)  # docs/api.md example
    assert response.status_code == 422
    detail = response.json()["detail"]
    required = api.parts.schema.required
    assert detail["missing"] == [name for name in required if name != "urgent_level"]
    assert all(name in detail["message"] for name in detail["missing"])
    complete = {"problem_type": "device_fault", "device_model": None, "urgent_level": "high",
                "user_requirements": ["fix the router"]}  # the shipped schema's required fields
    assert set(complete) == set(required)
    fixed = api.client.patch("/tickets/1", json=complete, headers=ALICE)
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["ticket"]["status"] == "corrected"


def test_query_values_no_filter_can_match_are_400_not_500(api: Service) -> None:
    for params, status in (({"route": "general\x00inquiries"}, 400), ({"problem_type": "a\x01b"}, 400),
                           ({"cursor": "\x00"}, 400), ({"since": "2026-01-01T00:00:00"}, 200),
                           ({"since": "0001-01-01T00:00:00+14:00"}, 400)):
        response = api.client.get("/tickets", params=params, headers=ALICE)
        assert response.status_code == status, (params, response.text)
        if status == 400:
            assert next(iter(params)) in response.json()["detail"]


def _cursor(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_a_forged_cursor_is_400(api: Service) -> None:
    for values in ({"id": 2**40}, {"id": -5}, {"id": True}, {"id": 1, "due": "garbage"}, {"id": 1, "due": 7},
                   {"id": 1, "due": "2026-01-01T00:00:00"}, [1]):
        response = api.client.get("/tickets", params={"cursor": _cursor(values), "order": "sla"}, headers=ALICE)
        assert response.status_code == 400 and "cursor" in response.json()["detail"], values
