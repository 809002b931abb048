"""Shared test factories: the repository's config and schema, apps on a test database, a clock to move,
and the few steps tests take a ticket through (submit, finish with the rules extractor).

    app = build_app(database_url, TRIAGE__JOBS__MAX_REQUEUES="2")
    ticket_id = submit(app, "A-1", "My router is broken")
    finish_with_rules(app, ticket_id)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from triage.app import App
from triage.conversation import Conversation
from triage.intake.receive import submit as store_submission
from triage.queues import Publisher
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
TOKENS = {"alice": "alice-token", "bob": "bob-token"}
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


def build_app(database_url: str, *, clock: ManualClock | None = None, migrate: bool = True, **env: str) -> App:
    """An app on ``database_url`` (migrated to head unless ``migrate=False``)."""
    if migrate:
        upgrade(database_url)
    return App.build(settings_for(database_url, **env), clock=clock)


def submit(app: App, external_id: str, text: str = "My router is broken", source: str = "shop") -> int:
    """Store a conversation as ``triage submit`` does (without publishing); its ticket id."""
    return store_submission(app.sessions, source, external_id, Conversation.from_text(text), app.clock.now()).ticket_id


def finish_with_rules(app: App, ticket_id: int) -> lifecycle.Claim:
    """Claim the ticket and finish it with the rules extractor's ticket on its route (``routed``)."""
    claim = lifecycle.claim(app.sessions, ticket_id, app.clock.now(), lease_seconds=60)
    assert claim is not None, f"ticket {ticket_id} is not claimable"
    result = app.rules.extract(claim.conversation)
    decision = app.router.route(result.ticket or {}, claim.sla_started_at)
    assert lifecycle.finish(app.sessions, claim, result, decision, app.clock.now())
    return claim


class RecordingPublisher(Publisher):
    """A publisher that records what would be published (for tests of jobs and views, not of the broker)."""

    def __init__(self) -> None:  # no Celery app: nothing is sent
        self.extractions: list[int] = []
        self.fallbacks: list[int] = []

    def extraction(self, ticket_id: int) -> None:
        self.extractions.append(ticket_id)

    def fallback(self, ticket_id: int) -> None:
        self.fallbacks.append(ticket_id)


def recording(app: App) -> RecordingPublisher:
    """Make ``app`` publish into a :class:`RecordingPublisher` and return it."""
    app.publisher = publisher = RecordingPublisher()
    return publisher
