"""End to end through a running `triage serve` and `triage worker` (PostgreSQL + Redis, loopback MiMo).

Each platform's sample payload, signed as that platform signs it, becomes a routed ticket;
bad requests get their status code with nothing stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
from sqlalchemy import func, select

from benchmarks.stack import free_port
from tests.fakeapi import FakeMiMo, ok
from tests.harness import Stack
from triage.intake.platforms import PLATFORMS, sample_payloads, signed_request
from triage.store.models import Conversation

pytestmark = pytest.mark.e2e  # make e2e: real processes end to end, left out of make test

SECRETS = {"generic": "whsec_c2VydmUtZTJlLXNlY3JldC1mb3ItZ2VuZXJpYw==", "zendesk": "zd", "intercom": "ic",
           "chatwoot": "cw", "zammad": "zm", "freshdesk": "fd"}
TICKET = {"problem_type": "device_fault", "device_model": "Speaker X", "urgent_level": "normal",
          "user_requirements": ["restore Wi-Fi"]}


@dataclass
class Live:
    stack: Stack
    base: str
    http: httpx.Client

    def conversations(self) -> int:
        with self.stack.sessions() as session:
            return session.scalar(select(func.count()).select_from(Conversation)) or 0


@pytest.fixture(scope="module")
def live(postgres_module_url: str, redis_url: str) -> Iterator[Live]:
    redis.Redis.from_url(redis_url).flushdb()
    with FakeMiMo(default=ok(TICKET)) as api:
        env = {f"TRIAGE_WEBHOOK_SECRET_{name.upper()}": secret for name, secret in SECRETS.items()}
        env["TRIAGE_API_TOKENS"] = "dispatch:e2e-dispatch-token-0123456789abcdef"
        stack = Stack(postgres_module_url, redis_url, api.base_url, env)
        stack.migrate()
        with stack.worker("--concurrency", "4"), stack.server(free_port()) as base, httpx.Client(timeout=10) as http:
            yield Live(stack, base, http)
        stack.close()


def test_every_platform_sample_becomes_a_routed_ticket(live: Live) -> None:
    ids = {}
    for source in sorted(PLATFORMS):
        body, headers = signed_request(source, sample_payloads()[source], SECRETS[source], now=time.time())
        response = live.http.post(f"{live.base}/webhooks/{source}", content=body, headers=headers)
        assert response.status_code == 202, (source, response.text)
        ids[source] = response.json()["ticket_id"]
        again = live.http.post(f"{live.base}/webhooks/{source}", content=body, headers=headers)
        assert (again.json()["ticket_id"], again.json()["duplicate"]) == (ids[source], True)
    views = live.stack.wait_finished(list(ids.values()), timeout=60)
    assert {views[i].status for i in ids.values()} == {"routed"}
    assert {views[i].route for i in ids.values()} == {"hardware-support"}
    listed = live.http.get(f"{live.base}/tickets", params={"limit": 50},
                           headers={"Authorization": "Bearer e2e-dispatch-token-0123456789abcdef"}).json()["items"]
    assert {t["id"] for t in listed} >= set(ids.values())
    assert {t["source"] for t in listed} >= set(PLATFORMS)


@pytest.mark.parametrize(("headers_change", "body", "status"), [
    ({"webhook-signature": "v1,AAAA"}, None, 401),
    ({"content-type": "text/plain"}, None, 415),
    ({}, b'{"external_id": "big", "text": "' + b"x" * (300 * 1024) + b'"}', 413),
])
def test_bad_requests_store_nothing(live: Live, headers_change: dict[str, str], body: bytes | None,
                                    status: int) -> None:
    before = live.conversations()
    signed_body, headers = signed_request("generic", {"external_id": "bad", "text": "hi"}, SECRETS["generic"],
                                          now=time.time())
    response = live.http.post(f"{live.base}/webhooks/generic", content=body or signed_body,
                              headers=headers | headers_change)
    assert response.status_code == status and response.json()["detail"]
    assert live.conversations() == before


def test_health_reports_both_services(live: Live) -> None:
    assert live.http.get(f"{live.base}/healthz").json() == {"status": "ok", "database": "ok", "broker": "ok"}
