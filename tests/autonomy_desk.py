"""The autonomy desk: a triage app on a migrated database with the real LLM extractor asking a loopback
OpenAI-wire server, write-back to a loopback Zendesk, events to a loopback receiver and alerts to a loopback
Slack, and the outbox's deliveries run in the test (tests/test_autonomy.py, tests/test_trust_e2e.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import (
    SECRETS,
    TOKENS_ENV,
    ManualClock,
    RecordingPublisher,
    build_app,
    receive_from,
    recording,
    run_deliveries,
)
from tests.fakeapi import FakeMiMo, ok
from tests.fakehelpdesks import FakeEventsReceiver, FakeSlack, FakeZendesk
from tests.writeback_cases import AGENT_TAGS, ZENDESK, Endpoint, config_file, post_signed
from triage.app import App
from triage.app.queues import EXTRACT_TASK
from triage.store.queries import ticket_detail
from triage.tickets import lifecycle
from triage.worker import runs, tasks
from triage.worker.tasks import celery_for

ZENDESK_ID, ACCOUNT = ZENDESK.ticket_id, ZENDESK.account_id
ESCALATION = {"problem_type": "device_fault", "device_model": "AX3000", "urgent_level": "high",
              "user_requirements": ["replace the router"]}          # hardware-escalation, P1
REVIEW_GROUP = 360009
TABLES = ZENDESK.toml + f'[writeback.zendesk.routes."manual-review"]\ngroup_id = {REVIEW_GROUP}\n'
ESCALATION_TAGS = ["triage-hw", "triage_hardware-escalation", "triage_p1"]


@dataclass
class Desk:
    """The app and its loopback servers; what a test does with a ticket and sees of it."""

    app: App
    api: FakeMiMo
    zendesk: FakeZendesk
    receiver: FakeEventsReceiver
    slack: FakeSlack
    published: RecordingPublisher

    def arrive(self, key: str, answer: dict[str, Any] = ESCALATION) -> int:
        """A Zendesk message whose extraction the loopback API answers with ``answer``."""
        self.api.script(f"[{key}]", ok(answer))
        return receive_from(self.app, "zendesk", ZENDESK_ID, ACCOUNT, f"My router died, replace it [{key}]", key)

    def work(self, ticket_id: int, confidence: float | None) -> str:
        """The worker's run of the ticket with the extraction scored ``confidence``, then every delivery."""
        lease = lifecycle.lease(self.app.sessions, ticket_id, self.app.clock.now(), self.app.lease_seconds)
        assert lease is not None
        outcome = runs.single(self.app, lease)
        assert not isinstance(outcome, Exception) and outcome.ok, outcome
        self.app.confidence.score(outcome, lease.conversation)
        step = tasks.decided(self.app, lease, replace(outcome, ticket_confidence=confidence))
        stored = tasks.apply_step(self.app, self.app.celery.tasks[EXTRACT_TASK], lease, step)
        run_deliveries(self.app, self.published)
        return stored

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        detail = ticket_detail(self.app.sessions, ticket_id)
        assert detail is not None
        return detail

    @property
    def there(self) -> Any:
        return self.zendesk.tickets[ZENDESK_ID]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(received.body) for received in self.receiver.received]

    def run(self, ticket_id: int) -> str:
        """The worker's Celery task on the ticket (extraction, the real confidence scoring, the policy, storage),
        then every delivery the outbox made."""
        stored: str = self.app.celery.tasks[EXTRACT_TASK](ticket_id)
        run_deliveries(self.app, self.published)
        return stored

    def post(self, client: TestClient, payload: dict[str, Any]) -> Any:
        """``payload`` to the Zendesk webhook, signed with the tests' Zendesk secret."""
        return post_signed(client, "zendesk", payload, SECRETS["zendesk"])


def desk_rig(database_url: str, tmp_path: Path, mimo: FakeMiMo, autonomy: str, **env: str) -> Iterator[Desk]:
    """A Desk on ``database_url`` whose config adds the ``autonomy`` tables, with ``env`` on top."""
    with FakeZendesk(email="bot@acme.test", token="zd-secret-token-1") as zendesk, FakeSlack() as slack, \
            FakeEventsReceiver(Endpoint("", ()).secret) as receiver:
        config = config_file(tmp_path, TABLES + autonomy,
                             endpoints=[Endpoint(receiver.url, ("ticket.routed", "ticket.needs_review",
                                                                "ticket.confirmed"))])
        app = build_app(database_url, clock=ManualClock(datetime.now(UTC)), TRIAGE_CONFIG=str(config),
                        TRIAGE_EXTRACTOR="llm", MIMO_API_KEY="sk-test", MIMO_BASE_URL=mimo.base_url,
                        TRIAGE__EXTRACTION__DEDUPE_WINDOW_SECONDS="0", TRIAGE_API_TOKENS=TOKENS_ENV,
                        TRIAGE__ALERTS__WEBHOOK_URL=slack.webhook_url, **ZENDESK.env(zendesk.base_url), **env)
        celery_for(app)
        published = recording(app)
        zendesk.ticket(ZENDESK_ID, tags=list(AGENT_TAGS))
        try:
            yield Desk(app, mimo, zendesk, receiver, slack, published)
        finally:
            app.close()
