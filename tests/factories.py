"""Shared test factories: the repository's config and schema, apps on a test database, a clock to move,
and the few steps tests take a ticket through (submit, finish with the rules extractor).

    app = build_app(migrated_database_url, TRIAGE__JOBS__MAX_REQUEUES="2")
    ticket_id = submit(app, "A-1", "My router is broken")
    finish_with_rules(app, ticket_id)
    ticket_id = receive_from(app, "zendesk", "35436", "22129848", "My watch is dead")   # with the platform's ids
    outcomes = run_deliveries(app, recording(app))     # the outbox's deliveries, one attempt each

The HTTP service on a test database (the ``api`` fixture in conftest.py serves one)::

    with serve(migrated_database_url) as api:
        api.post("generic", {"external_id": "A-1", "text": "hi"})
        api.client.get("/tickets", headers=ALICE)
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, event, func, select

from triage.api.app import create_app
from triage.app import App
from triage.app.queues import Publisher
from triage.conversation import Conversation
from triage.intake.platforms import sample_payloads, signed_request
from triage.intake.receive import PlatformIds, receive
from triage.intake.receive import submit as store_submission
from triage.outbox import send
from triage.outbox.outbox import Wait
from triage.schema import TicketSchema
from triage.settings import Settings, load_settings
from triage.store.db import upgrade
from triage.tickets import lifecycle

REPO = Path(__file__).resolve().parent.parent
CONFIG_PATH = REPO / "config" / "triage.toml"
SCHEMA_PATH = REPO / "config" / "ticket_schema.json"
SCHEMA = TicketSchema.load(SCHEMA_PATH)
#: A fixed moment tests start their clocks at.
EPOCH = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
#: Dispatch API tokens for tests (``TRIAGE_API_TOKENS``), and each person's bearer header.
#: (``triage serve`` takes tokens of 32 characters or more.)
TOKENS = {"alice": "alice-token-0123456789abcdefghijklm", "bob": "bob-token-0123456789abcdefghijklmnop"}
TOKENS_ENV = ",".join(f"{name}:{token}" for name, token in TOKENS.items())


def bearer(name: str) -> dict[str, str]:
    """The ``Authorization`` header of ``name``'s test token."""
    return {"Authorization": f"Bearer {TOKENS[name]}"}


class ManualClock:
    """A clock that moves only when told: ``clock.advance(seconds=90)``."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def settings_for(database_url: str, **env: str) -> Settings:
    """The repository's config on ``database_url`` (rules extractor, in-memory broker), plus ``env``."""
    return load_settings({"TRIAGE_CONFIG": str(CONFIG_PATH), "TRIAGE_DATABASE_URL": database_url,
                          "TRIAGE_BROKER_URL": "memory://", "TRIAGE_EXTRACTOR": "rules", **env})


def ready_environ(folder: Path) -> dict[str, str]:
    """Settings a worker, beat or serve starts with (every start-up check passes): the repository's config, a
    migrated SQLite database in ``folder``, the in-memory broker, the rules extractor."""
    database_url = f"sqlite:///{folder / 'triage.sqlite3'}"
    upgrade(database_url)
    return {"TRIAGE_CONFIG": str(CONFIG_PATH), "TRIAGE_DATABASE_URL": database_url, "TRIAGE_BROKER_URL": "memory://",
            "TRIAGE_EXTRACTOR": "rules"}


def build_app(database_url: str, *, clock: ManualClock | None = None, **env: str) -> App:
    """An app on ``database_url`` (a migrated one: the ``migrated_database_url`` fixture)."""
    return App.build(settings_for(database_url, **env), clock=clock)


def submit(app: App, external_id: str, text: str = "My router is broken", source: str = "shop") -> int:
    """Store a conversation as ``triage submit`` does (without publishing); its ticket id."""
    return store_submission(app.sessions, source, external_id, Conversation.from_text(text), app.clock.now()).ticket_id


def receive_from(app: App, platform: str, platform_ticket_id: str, account_id: str | None = None,
                 text: str = "My router is broken", message: str = "m1") -> int:
    """Store a message as a platform's webhook does (its own ticket id and account kept for write-back),
    without publishing; its ticket id."""
    return receive(app.sessions, platform, platform_ticket_id, Conversation.from_text(text),
                   [f"message:{platform_ticket_id}:{message}"], app.clock.now(),
                   platform=PlatformIds(platform_ticket_id, account_id), outbox=app.outbox).ticket_id


def finish_with_rules(app: App, ticket_id: int) -> lifecycle.Lease:
    """Claim the ticket and finish it with the rules extractor's ticket on its route (``routed``)."""
    lease = lifecycle.lease(app.sessions, ticket_id, app.clock.now(), lease_seconds=60)
    assert lease is not None, f"ticket {ticket_id} is not claimable"
    result = app.rules.extract(lease.conversation)
    decision = app.router.route(result.ticket or {}, lease.sla_started_at)
    assert lifecycle.finish(app.sessions, lease, result, decision, app.clock.now(), outbox=app.outbox)
    return lease


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(exposition: str) -> Samples:
    """A Prometheus text exposition as ``{(sample name, labels): value}``, parsed by prometheus_client."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(exposition) for sample in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of sample ``name`` with exactly ``labels``, or ``None``."""
    return samples.get((name, frozenset(labels.items())))


def sample_names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


class RecordingPublisher(Publisher):
    """A publisher that records what would be published (for tests of jobs and views, not of the broker)."""

    def __init__(self) -> None:  # no Celery app: nothing is sent
        self.extractions: list[int] = []
        self.fallbacks: list[int] = []
        self.deliveries: list[str] = []

    def extraction(self, ticket_id: int) -> None:
        self.extractions.append(ticket_id)

    def extraction_later(self, ticket_id: int, countdown: float) -> None:
        self.extractions.append(ticket_id)

    def fallback(self, ticket_id: int) -> None:
        self.fallbacks.append(ticket_id)

    def delivery(self, delivery_id: str) -> None:
        self.deliveries.append(delivery_id)


def recording(app: App) -> RecordingPublisher:
    """Make ``app`` publish into a :class:`RecordingPublisher` and return it."""
    app.publisher = publisher = RecordingPublisher()
    return publisher


# ---- the HTTP service ------------------------------------------------------------------------------

#: Each webhook source's secret in the test environments.
SECRETS = {
    "generic": "whsec_" + base64.b64encode(b"generic-test-secret-32-bytes!!!!").decode(),
    "zendesk": "zendesk-signing-secret", "intercom": "intercom-client-secret", "chatwoot": "chatwoot-token",
    "zammad": "zammad-hmac-token", "freshdesk": "freshdesk-shared-secret",
}
ALICE, BOB = bearer("alice"), bearer("bob")
#: The hidden CSRF field of a desk form.
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the (first) desk form on ``html``."""
    found = CSRF.search(html)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, name: str) -> TestClient:
    """Sign ``name`` in to the desk on ``client`` (its cookie jar keeps the session)."""
    form = client.get("/desk/sign-in")
    response = client.post("/desk/sign-in", data={"token": TOKENS[name], "csrf_token": csrf_of(form.text)},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return client


def api_environment(database_url: str, **extra: str) -> dict[str, str]:
    """The repository's config on ``database_url`` with every webhook secret and the two API tokens set."""
    secrets = {f"TRIAGE_WEBHOOK_SECRET_{name.upper()}": secret for name, secret in SECRETS.items()}
    return {"TRIAGE_CONFIG": str(CONFIG_PATH), "TRIAGE_DATABASE_URL": database_url, "TRIAGE_BROKER_URL": "memory://",
            "TRIAGE_EXTRACTOR": "rules", "TRIAGE_API_TOKENS": TOKENS_ENV, **secrets, **extra}


@dataclass
class Service:
    """The real HTTP app in a test client; publishing is recorded in ``enqueued``."""

    client: TestClient
    parts: App
    enqueued: list[int] = field(default_factory=list)

    def post(self, source: str, payload: dict[str, Any] | None = None, *, now: float | None = None,
             delivery_id: str | None = None, secret: str | None = None) -> Any:
        body, headers = signed_request(source, payload or sample_payloads()[source], secret or SECRETS[source],
                                       now=time.time() if now is None else now, delivery_id=delivery_id)
        return self.client.post(f"/webhooks/{source}", content=body, headers=headers)

    def count(self, model: type) -> int:
        with self.parts.sessions() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0


@contextmanager
def serve(database_url: str, **env: str) -> Iterator[Service]:
    """The HTTP service on ``database_url`` (a migrated one), with :func:`api_environment` plus ``env``."""
    parts = App.build(load_settings(api_environment(database_url, **env)))
    enqueued: list[int] = []
    with TestClient(create_app(parts, publish=enqueued.append)) as client:
        yield Service(client, parts, enqueued)
    parts.close()
def run_deliveries(app: App, publisher: RecordingPublisher) -> dict[str, str | Wait]:
    """One attempt of each delivery published so far (and of those published meanwhile, e.g. a
    ``delivery.failed`` event), as the ``deliveries`` task makes it: each delivery's outcome."""
    outcomes: dict[str, str | Wait] = {}
    while publisher.deliveries:
        delivery_id = publisher.deliveries.pop(0)
        outcomes[delivery_id] = send.attempt(app.outbox, app.senders, app.clock, delivery_id)
    return outcomes


@contextmanager
def count_statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent on ``engine`` inside the block (a ``before_cursor_execute`` listener): the
    round trips a code path costs, counted deterministically. SQLite's ``BEGIN IMMEDIATE`` is among them."""
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
