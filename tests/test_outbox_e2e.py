"""End to end on PostgreSQL + Redis: each platform's webhook in, a real `triage worker` routes it, a real
worker on the `deliveries` queue writes the routed ticket, a person's correction and the resolve back
to that platform's loopback server, and signs the events (verified by the reference library)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.factories import TOKENS_ENV, bearer
from tests.fakehelpdesks import FakeEventsReceiver, FakeHelpdesk
from tests.harness import Stack
from tests.writeback_cases import AGENT_TAGS, CASES, FRESHDESK, ZENDESK, Case, Endpoint, config_file
from triage.api.app import create_app
from triage.app import App
from triage.intake.platforms import sample_payloads, signed_request
from triage.settings import load_settings
from triage.store.models import Conversation, Delivery, Ticket
from triage.tickets import lifecycle

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.e2e]  # make e2e

WEBHOOK_SECRET = "e2e-webhook-secret"
ALICE = bearer("alice")
ESCALATION = {"problem_type": "device_fault", "urgent_level": "high"}
ESCALATION_TAGS = ["triage-hw", "triage_hardware-escalation", "triage_p1"]
EVENTS = ("ticket.routed", "ticket.corrected", "ticket.resolved")
WAIT_SECONDS = 60


def _wait(what: str, condition: Callable[[], bool], logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {WAIT_SECONDS}s\n{logs()}")
        time.sleep(0.2)


@dataclass
class Running:
    """One e2e run's stack (its processes' environment and logs) and an app on the same database."""

    stack: Stack
    app: App
    env: dict[str, str]

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{text[-3000:]}" for name, text in self.stack.logs.items())


@contextmanager
def running(postgres_url: str, redis_url: str, cases: Sequence[Case], urls: Mapping[str, str],
            env: Mapping[str, str]) -> Iterator[Running]:
    """A migrated stack on which ``cases`` write back to ``urls`` (by platform) and take signed webhooks,
    plus ``env``; the app and the stack are closed afterwards (their logs stay)."""
    full = {"TRIAGE_EXTRACTOR": "rules", **env}
    for case in cases:
        full |= case.env(urls[case.platform]) | {f"TRIAGE_WEBHOOK_SECRET_{case.platform.upper()}": WEBHOOK_SECRET}
    stack = Stack(postgres_url, redis_url, None, full)
    stack.migrate()
    app = App.build(load_settings({**full, "TRIAGE_DATABASE_URL": postgres_url, "TRIAGE_BROKER_URL": redis_url}))
    try:
        yield Running(stack, app, full)
    finally:
        app.close()
        stack.close()


def post_sample(client: TestClient, platform: str) -> int:
    """The platform's sample webhook, signed as it signs them; the ticket id intake answers with."""
    body, headers = signed_request(platform, sample_payloads()[platform], WEBHOOK_SECRET, time.time())
    answer = client.post(f"/webhooks/{platform}", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    return int(answer.json()["ticket_id"])


@pytest.fixture
def helpdesks() -> Iterator[dict[str, FakeHelpdesk]]:
    with ExitStack() as stack:
        fakes = {case.platform: stack.enter_context(case.fake()) for case in CASES}
        for case in CASES:
            fakes[case.platform].ticket(case.ticket_id, tags=list(AGENT_TAGS))
        yield fakes


def test_each_platform_gets_the_routed_ticket_the_correction_and_the_resolve(
        postgres_url: str, redis_url: str, tmp_path: Path, helpdesks: dict[str, FakeHelpdesk]) -> None:
    with FakeEventsReceiver(Endpoint("", ()).secret) as receiver:
        config = config_file(tmp_path, "".join(case.toml for case in CASES), endpoints=[Endpoint(receiver.url, EVENTS)])
        urls = {platform: fake.base_url for platform, fake in helpdesks.items()}
        with running(postgres_url, redis_url, CASES, urls,
                     {"TRIAGE_CONFIG": str(config), "TRIAGE_API_TOKENS": TOKENS_ENV}) as run:
            stack, app, logs, env = run.stack, run.app, run.logs, run.env

            def writebacks(topic: str) -> dict[str, str]:
                with stack.sessions() as session:
                    rows = session.execute(select(Conversation.source, Delivery.status).join(
                        Ticket, Ticket.conversation_id == Conversation.id).join(
                        Delivery, Delivery.ticket_id == Ticket.id)
                        .where(Delivery.kind == "writeback", Delivery.topic == topic)).all()
                return dict(rows)

            def delivered(topic: str) -> bool:
                """Every platform's write-back of ``topic`` is delivered, and every ticket's event of it received."""
                events = [received.payload["type"] for received in receiver.received]  # type: ignore[index]
                return (writebacks(topic) == dict.fromkeys(helpdesks, "delivered")
                        and events.count(f"ticket.{topic}") == len(helpdesks))

            with stack.worker("--queues", "triage,fallback"), \
                    stack.process("worker", "--queues", "deliveries", "--loglevel", "INFO", name="deliveries"), \
                    TestClient(create_app(app)) as client:
                helpdesks["zendesk"].answer_next(503, method="PUT", message="maintenance")  # one retry on the way
                ids = {case.platform: post_sample(client, case.platform) for case in CASES}
                _wait("the routed tickets were not all written back", lambda: delivered("routed"), logs)
                routes = {platform: client.get(f"/tickets/{ticket_id}", headers=ALICE).json()["ticket"]
                          for platform, ticket_id in ids.items()}
                for case in CASES:  # the rules route the samples to general-inquiries (P3) or hardware-support (P2)
                    ticket, there = routes[case.platform], helpdesks[case.platform].tickets[case.ticket_id]
                    expected = [*AGENT_TAGS, f"triage_{ticket['route']}", f"triage_{ticket['priority'].lower()}"]
                    assert sorted(there.tags) == sorted(expected), case.platform
                    if ticket["route"] == "hardware-support":
                        assert case.state(there) == case.support_p2, case.platform

                for ticket_id in ids.values():
                    assert client.patch(f"/tickets/{ticket_id}", headers=ALICE, json=ESCALATION).status_code == 200
                _wait("the corrections were not all written back", lambda: delivered("corrected"), logs)
                for ticket_id in ids.values():
                    lifecycle.resolve(app.sessions, ticket_id, "alice", app.clock.now(), outbox=app.outbox)
                _wait("the resolves were not all written back", lambda: delivered("resolved"), logs)
                detail = client.get(f"/tickets/{ids['zendesk']}", headers=ALICE).json()

    for case in CASES:
        fake = helpdesks[case.platform]
        ticket = fake.tickets[case.ticket_id]
        assert case.state(ticket) == case.escalation_p1, case.platform
        assert sorted(ticket.tags) == sorted([*AGENT_TAGS, *ESCALATION_TAGS, "triage_resolved"]), case.platform
        heads = [note.body.removeprefix("<p>").split(".")[0] for note in ticket.notes]
        assert len(heads) == 3 and heads[1:] == ["triage routed this ticket to hardware-escalation (P1)",
                                                 "triage: this ticket was resolved (hardware-escalation, P1)"]
        assert all(note.private for note in ticket.notes)
    by_ticket: dict[int, list[str]] = {}
    for received in receiver.received:
        payload: Any = received.payload
        by_ticket.setdefault(payload["data"]["ticket"]["id"], []).append(payload["type"])
        assert received.headers["webhook-id"].startswith("dlv_")
    assert receiver.rejected == 0
    assert by_ticket == {ticket_id: list(EVENTS) for ticket_id in ids.values()}
    assert sorted(d["topic"] for d in detail["deliveries"] if d["kind"] == "writeback") == [
        "corrected", "resolved", "routed"]
    assert {d["status"] for d in detail["deliveries"]} == {"delivered"} and len(detail["deliveries"]) == 6
    # the retry went back to the deliveries queue: the other worker never ran a delivery
    assert "503 Error: maintenance; retry in" in stack.logs["deliveries"]
    assert "Task triage.deliver" in stack.logs["deliveries"] and "Task triage.deliver" not in stack.logs["worker"]
    secrets = [receiver.url, *(env[case.token_variable] for case in CASES)]
    assert not [secret for secret in secrets for log in stack.logs.values() if secret in log]


def test_a_deliveries_worker_rides_out_more_429s_than_max_attempts_and_fails_a_misaddressed_404(
        postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    """Real workers, the real clock: Zendesk answers 429 more times than writeback.max_attempts (3, with
    retry.backoff_* shortened to 0.05-0.2 s) and the write-back still lands; a Freshdesk configured with its
    API path doubled fails naming the URL variable, announced as delivery.failed and counted by the metric."""
    with ZENDESK.fake() as zendesk, FRESHDESK.fake() as freshdesk, \
            FakeEventsReceiver(Endpoint("", ()).secret) as receiver:
        for case, fake in ((ZENDESK, zendesk), (FRESHDESK, freshdesk)):
            fake.ticket(case.ticket_id, tags=list(AGENT_TAGS))
        zendesk.answer_next(429, method="PUT", times=6, headers={"Retry-After": "0"}, message="Rate limit exceeded")
        config = config_file(tmp_path, ZENDESK.toml + FRESHDESK.toml,
                             endpoints=[Endpoint(receiver.url, ("delivery.failed",))])
        env = {"TRIAGE_CONFIG": str(config), "TRIAGE__WRITEBACK__MAX_ATTEMPTS": "3",
               "TRIAGE__RETRY__BACKOFF_BASE_SECONDS": "0.05", "TRIAGE__RETRY__BACKOFF_MAX_SECONDS": "0.2"}
        urls = {"zendesk": zendesk.base_url, "freshdesk": freshdesk.base_url + "/api/v2"}
        with running(postgres_url, redis_url, (ZENDESK, FRESHDESK), urls, env) as run:

            def writebacks() -> dict[str, tuple[str, int, str | None]]:
                with run.stack.sessions() as session:
                    rows = session.execute(select(Conversation.source, Delivery.status, Delivery.attempts,
                                                  Delivery.last_error)
                                           .join(Ticket, Ticket.conversation_id == Conversation.id)
                                           .join(Delivery, Delivery.ticket_id == Ticket.id)
                                           .where(Delivery.kind == "writeback")).all()
                return {source: (status, attempts, error) for source, status, attempts, error in rows}

            def settled() -> bool:
                found = {source: row[0] for source, row in writebacks().items()}
                return found == {"zendesk": "delivered", "freshdesk": "failed"} and len(receiver.received) == 1

            with run.stack.worker("--queues", "triage,fallback"), \
                    run.stack.process("worker", "--queues", "deliveries", "--loglevel", "INFO", name="deliveries"), \
                    TestClient(create_app(run.app)) as client:
                for platform in urls:
                    post_sample(client, platform)
                _wait("the write-backs did not settle", settled, run.logs)
                metrics = client.get("/metrics").text
                found = writebacks()

    assert found["zendesk"][1] == 7 > 3  # six 429s, then delivered
    assert found["freshdesk"][1] == 1 and "check TRIAGE_WRITEBACK_FRESHDESK_URL" in (found["freshdesk"][2] or "")
    [failed] = [received.payload for received in receiver.received]
    assert failed["type"] == "delivery.failed" and failed["data"]["delivery"]["target"] == "freshdesk"  # type: ignore[index]
    assert 'triage_deliveries{status="failed"} 1.0' in metrics
    ticket = zendesk.tickets[ZENDESK.ticket_id]  # the write-back landed: the route's priority, both triage tags
    assert ticket.priority is not None and len(ticket.tags) == len(AGENT_TAGS) + 2 and ticket.notes
