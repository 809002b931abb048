"""The HTTP API fuzzed from its own OpenAPI document (Schemathesis), on SQLite and on PostgreSQL.

Every operation ``/openapi.json`` lists, whatever it is (a route added later is fuzzed the day it
is documented), gets a bounded number of generated requests, schema-valid and schema-invalid.
The build fails on any 5xx, on any answer whose status, content type or body its route does not
document, and on any route that answers without a bearer token unless it is one of
:data:`triage.api.auth.PUBLIC_ROUTES`. Webhook bodies are signed with the source's secret so that
they reach the parsers and the normaliser, not only the signature check.

``TRIAGE_TEST_FUZZ_EXAMPLES`` sets the examples per operation and mode (default 25: the whole
file stays within about a minute on a 2-core machine); raise it for a deeper local run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Mount

from tests.factories import ALICE, SECRETS, Service, finish_with_rules, serve, sign_in, submit
from triage.api.auth import PUBLIC_ROUTES, is_public, is_session_route
from triage.api.desk.session import SESSION_COOKIE
from triage.intake.platforms import PLATFORMS, sign

EXAMPLES = int(os.environ.get("TRIAGE_TEST_FUZZ_EXAMPLES", "25"))
CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
MODES = {GenerationMode.POSITIVE: CHECKS, GenerationMode.NEGATIVE: [*CHECKS, negative_data_rejection]}
WEBHOOK_PATH = "/webhooks/{source}"
UNAUTHORIZED = 401
SEE_OTHER = 303
SIGN_IN = "/desk/sign-in"
#: Failed authentications allowed per minute in these tests: above the bad credentials they send in one.
AUTH_FAILURES_ALLOWED = 1000


@pytest.fixture
def seeded(migrated_database_url: str) -> Iterator[Service]:
    """The service with a few tickets in each state the fuzzer may reach (ids 1-3). The tests send bad credentials
    to every route, more than ``api.auth_failures_per_minute`` allows from one address: the limit is raised here
    (tests/test_doors.py tests it), so each answer is the route's own."""
    with serve(migrated_database_url, TRIAGE__API__AUTH_FAILURES_PER_MINUTE=str(AUTH_FAILURES_ALLOWED)) as api:
        for n in range(3):
            submit(api.parts, f"F-{n}", ["Router broken, urgent!", "How do I reset it?", "hello"][n])
        finish_with_rules(api.parts, 1)
        finish_with_rules(api.parts, 2)
        assert api.client.patch("/tickets/2", json={"urgent_level": "high"}, headers=ALICE).status_code == 200
        sign_in(api.client, "alice")
        yield api


def _send_signed(api: Service, case: Any) -> Any:
    """Post the case's body as the platform would: its bytes signed with the source's secret."""
    source = case.path_parameters["source"]
    body = b"" if case.body is NOT_SET else json.dumps(case.body).encode()
    headers = {**dict(case.headers or {}), **sign(source, body, SECRETS[source], now=api.parts.clock.now().timestamp(),
                                                  delivery_id="msg_fuzz")}
    return api.client.post(case.formatted_path, content=body, headers=headers, params=case.query)


def _strategy(operation: Any, mode: GenerationMode) -> st.SearchStrategy[Any]:
    cases = operation.as_strategy(generation_mode=mode)
    if operation.path != WEBHOOK_PATH:
        return cases

    def with_source(pair: tuple[Any, str]) -> Any:
        case, source = pair
        case.path_parameters = {**case.path_parameters, "source": source}
        return case

    return st.tuples(cases, st.sampled_from(sorted(PLATFORMS))).map(with_source)


def _fuzz(api: Service, operation: Any, mode: GenerationMode) -> str | None:
    """Run the fuzzer on one operation in one mode; the failure report, or None."""
    checks = MODES[mode]
    signed = operation.path == WEBHOOK_PATH and mode is GenerationMode.POSITIVE

    # a desk page takes alice's session cookie (as a browser sends it): without one it would only redirect
    session = {"Cookie": f"{SESSION_COOKIE}={api.client.cookies[SESSION_COOKIE]}"} if is_session_route(
        operation.path) else {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=_strategy(operation, mode))
    def run(case: Any) -> None:
        if signed:
            case.validate_response(_send_signed(api, case), checks=checks)
        else:
            token = ALICE if mode is GenerationMode.POSITIVE else {}
            case.call_and_validate(headers={**token, **session}, checks=checks)

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body): no negative case exists
        return None
    except Exception as exc:  # Schemathesis raises a group of failures: report them all, per operation
        return f"{operation.label} ({mode.value}): {exc}"
    return None


def _schema(api: Service) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", api.client.app)


def test_every_documented_operation_survives_the_fuzzer(seeded: Service) -> None:
    operations = [result.ok() for result in _schema(seeded).get_all_operations()]
    assert {op.label for op in operations} >= {"GET /tickets", "PATCH /tickets/{ticket_id}",
                                                "POST /webhooks/{source}", "GET /healthz"}
    failures = [report for op in operations for mode in MODES if (report := _fuzz(seeded, op, mode))]
    assert not failures, "\n\n".join(failures)


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, descending into included routers (FastAPI keeps them as branches
    with their prefix) and mounts (their whole subtree: ``/docs/static/*``)."""
    for route in routes:
        branch = getattr(route, "original_router", None)
        if branch is not None:
            yield from _routes(branch.routes, prefix + route.include_context.prefix)
        elif isinstance(route, Mount):
            yield prefix + route.path + "/*", {"GET"}
        else:
            yield prefix + route.path, set(getattr(route, "methods", None) or {"GET"}) - {"HEAD"}


def test_only_the_public_routes_answer_without_a_token(seeded: Service) -> None:
    seeded.client.cookies.clear()  # no desk session either
    documented = set(_schema(seeded).raw_schema["paths"])
    routes = list(_routes(seeded.client.app.routes))
    undocumented = [path for path, _ in routes if path not in documented and not is_public(path)]
    assert not undocumented, f"neither in the OpenAPI document (so fuzzed) nor public: {undocumented}"
    asked = []
    for path, methods in routes:
        if is_public(path):
            continue
        concrete = path.replace("{ticket_id}", "1")
        for method in sorted(methods):
            for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YWxpY2U6eA=="}):
                response = seeded.client.request(method, concrete, headers=headers, json={}, follow_redirects=False)
                if is_session_route(path):  # a desk page: no session (a bearer header is none) is the sign-in page
                    assert response.status_code == SEE_OTHER, (method, concrete, headers, response.text)
                    assert response.headers["location"].startswith(SIGN_IN), response.headers
                    continue
                assert response.status_code == UNAUTHORIZED, (method, concrete, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
            asked.append(f"{method} {concrete}")
    assert {"GET /tickets", "PATCH /tickets/1", "POST /tickets/1/claim", "GET /queues"} <= set(asked)


def test_the_public_list_is_one_constant_holding_what_issue_8_names() -> None:
    assert {"/healthz", "/metrics", "/webhooks/*", "/docs", "/openapi.json", "/"} <= set(PUBLIC_ROUTES)
    assert not is_public("/tickets") and not is_public("/queues") and not is_public("/tickets/{ticket_id}/claim")


def test_docs_load_nothing_from_elsewhere(seeded: Service) -> None:
    page = seeded.client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    urls = re.findall(r"""url:\s*['"]([^'"]+)['"]""", page.text)
    assert assets and all(asset.startswith("/docs/static/") for asset in assets), assets
    assert all(not url.startswith(("http:", "https:", "//")) for url in [*assets, *urls])
    fetched = [*assets, *urls, "/docs/oauth2-redirect"]
    assert [seeded.client.get(path).status_code for path in fetched] == [200] * len(fetched)
    assert seeded.client.get("/redoc").status_code == 404  # ReDoc loads from a CDN: not served
