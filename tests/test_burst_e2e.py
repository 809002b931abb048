"""A burst of messages never strands its ticket (PostgreSQL + Redis, real `triage serve` and `triage worker`, no beat).

While intake appends a message it holds the ticket's row lock; an extraction task that meets the lock must
wait for it (or come back shortly), never take the ticket for "finished or held elsewhere" and spend its
message: with no beat running, nothing would publish the ticket again. Two bursts, each within a few
seconds: 20 distinct messages of one new conversation at once, and 20 messages x 3 copies on an existing
one. Every ticket is final within 30 s, with every message in its conversation and one ticket each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import redis
from sqlalchemy import func, select

from benchmarks.stack import free_port
from tests.fakeapi import FakeMiMo, ok
from tests.harness import Stack
from triage.intake.platforms import signed_request
from triage.states.tickets import FINISHED
from triage.store.models import Attempt, Conversation, Ticket

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

SECRET = "whsec_" + "YnVyc3QtZTJlLXNlY3JldC1mb3ItZ2VuZXJpYyEh"
TICKET = {"problem_type": "device_fault", "device_model": "Speaker X", "urgent_level": "normal",
          "user_requirements": ["restore Wi-Fi"]}
MESSAGES = 20
COPIES = 3
#: Every ticket is final this long after its burst was posted.
FINAL_WITHIN_SECONDS = 30
#: The sweep would only republish a lost ticket after this long: far beyond the test's deadline.
STUCK_AFTER_SECONDS = "900"


@dataclass
class Live:
    stack: Stack
    base: str

    def post_all(self, deliveries: list[tuple[str, str, str]]) -> list[httpx.Response]:
        """Post every ``(external_id, message_id, text)`` delivery at once (one thread each, released together)."""
        start = threading.Barrier(len(deliveries))

        def post(delivery: tuple[str, str, str]) -> httpx.Response:
            external_id, message_id, text = delivery
            body, headers = signed_request("generic", {"external_id": external_id, "text": text}, SECRET,
                                           now=time.time(), delivery_id=message_id)
            with httpx.Client(timeout=30) as http:
                start.wait()
                return http.post(f"{self.base}/webhooks/generic", content=body, headers=headers)

        with ThreadPoolExecutor(len(deliveries)) as pool:
            return list(pool.map(post, deliveries))

    def final_within(self, external_id: str, seconds: float) -> tuple[Ticket, list[dict[str, str]], int]:
        """The conversation's one ticket once it is final, its messages and its attempts in the ticket's run."""
        deadline = time.monotonic() + seconds
        while True:
            with self.stack.sessions() as session:
                conversation = session.scalars(select(Conversation).where(
                    Conversation.source == "generic", Conversation.external_id == external_id)).one()
                tickets = session.scalars(select(Ticket).where(Ticket.conversation_id == conversation.id)).all()
                assert len(tickets) == 1, "one ticket per conversation"
                ticket = tickets[0]
                if ticket.status in FINISHED:
                    attempts = session.scalar(select(func.count()).select_from(Attempt).where(
                        Attempt.ticket_id == ticket.id, Attempt.run == ticket.run)) or 0
                    return ticket, list(conversation.messages), attempts
            assert time.monotonic() < deadline, (f"ticket {ticket.id} still {ticket.status} (run {ticket.run}) "
                                                 f"{seconds:g} s after the burst\n{self.stack.logs.get('worker', '')}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def live(postgres_module_url: str, redis_url: str) -> Iterator[Live]:
    redis.Redis.from_url(redis_url).flushdb()
    with FakeMiMo(default=ok(TICKET), latency=0.05) as api:
        stack = Stack(postgres_module_url, redis_url, api.base_url,
                      {"TRIAGE_WEBHOOK_SECRET_GENERIC": SECRET,
                       "TRIAGE__WORKER__STUCK_AFTER_SECONDS": STUCK_AFTER_SECONDS})
        stack.migrate()
        with stack.worker("--concurrency", "4"), stack.server(free_port()) as base:
            yield Live(stack, base)
        stack.close()


def test_twenty_messages_of_a_new_conversation_at_once(live: Live) -> None:
    texts = [f"Message {n}: my speaker lost its Wi-Fi again" for n in range(MESSAGES)]
    answers = live.post_all([("BURST-NEW", f"msg_new_{n}", text) for n, text in enumerate(texts)])
    assert [answer.status_code for answer in answers] == [202] * MESSAGES, [a.text for a in answers]
    assert len({answer.json()["ticket_id"] for answer in answers}) == 1
    ticket, messages, attempts = live.final_within("BURST-NEW", FINAL_WITHIN_SECONDS)
    assert sorted(message["text"] for message in messages) == sorted(texts)
    assert ticket.status == "routed" and attempts >= 1, "extracted, not left without an attempt"


def test_twenty_messages_three_copies_each_on_an_existing_conversation(live: Live) -> None:
    first = live.post_all([("BURST-OLD", "msg_old_first", "My speaker does not connect to Wi-Fi")])[0]
    assert first.status_code == 202
    ticket, _, _ = live.final_within("BURST-OLD", FINAL_WITHIN_SECONDS)
    texts = [f"Update {n}: still no Wi-Fi on the speaker" for n in range(MESSAGES)]
    copies = [("BURST-OLD", f"msg_old_{n}", text) for n, text in enumerate(texts) for _ in range(COPIES)]
    answers = live.post_all(copies)
    assert {answer.status_code for answer in answers} == {202}, [a.text for a in answers if a.status_code != 202]
    assert {answer.json()["ticket_id"] for answer in answers} == {ticket.id}
    assert sum(not answer.json()["duplicate"] for answer in answers) == MESSAGES, "each message taken in once"
    again, messages, attempts = live.final_within("BURST-OLD", FINAL_WITHIN_SECONDS)
    assert sorted(message["text"] for message in messages[1:]) == sorted(texts)
    assert again.run > ticket.run and again.status == "routed" and attempts >= 1
