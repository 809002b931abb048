"""De-duplication (``extraction.dedupe_window_seconds``, ``extraction.dedupe_sources_off``), on SQLite and
PostgreSQL: the same conversation again (whitespace, case and PII aside) with the same schema and prompt
versions, within the window, reuses the earlier LLM extraction with no call; the loopback server's request
log proves which tickets called. The Celery task runs as a worker runs it, with the real ``openai`` client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from tests.factories import EPOCH, SCHEMA_PATH, ManualClock, build_app, recording, submit
from tests.fakeapi import FakeMiMo, ok
from triage.app import App
from triage.app.queues import EXTRACT_TASK
from triage.conversation import Conversation
from triage.extraction.dedupe import conversation_key
from triage.settings import PrivacySettings
from triage.store.models import Event, Ticket
from triage.store.purge import purge_before
from triage.store.queries import ticket_detail
from triage.worker.tasks import celery_for

FAULT = {"problem_type": "device_fault", "device_model": "AX3000", "urgent_level": "high",
         "user_requirements": ["fix the router"]}
ROUTE = "hardware-escalation"


@pytest.fixture
def api() -> Iterator[FakeMiMo]:
    with FakeMiMo(ok(FAULT)) as server:
        yield server


def _app(database_url: str, api: FakeMiMo, clock: ManualClock | None = None, **env: str) -> App:
    built = build_app(database_url, clock=clock or ManualClock(), TRIAGE_EXTRACTOR="llm", MIMO_API_KEY="sk-test",
                      MIMO_BASE_URL=api.base_url, TRIAGE__EXTRACTION__TIMEOUT_SECONDS="5", **env)
    celery_for(built)
    recording(built)
    return built


@pytest.fixture
def app(migrated_database_url: str, api: FakeMiMo) -> Iterator[App]:
    built = _app(migrated_database_url, api)
    yield built
    built.close()


def _work(app: App, external_id: str, text: str, source: str = "shop") -> Ticket:
    ticket_id = submit(app, external_id, text, source)
    assert app.celery.tasks[EXTRACT_TASK](ticket_id) == ROUTE
    with app.sessions() as session:
        ticket = session.get_one(Ticket, ticket_id)
        session.expunge(ticket)
    return ticket


def _finished(extractor: str) -> float:
    return REGISTRY.get_sample_value("triage_tickets_total",
                                     {"status": "routed", "route": ROUTE, "extractor": extractor}) or 0.0


def test_the_same_text_differently_spaced_and_cased_reuses_the_extraction(app: App, api: FakeMiMo) -> None:
    counted = _finished("dedupe")
    first = _work(app, "D-1", "My router is broken, AX3000 keeps rebooting [same-1]")
    second = _work(app, "D-2", "  my ROUTER is   broken,\n ax3000 KEEPS rebooting   [SAME-1] ")
    assert len(api.requests_for("[same-1]")) == 1 and api.requests_for("[SAME-1]") == []
    assert (first.extractor, first.dedupe_of, second.extractor, second.dedupe_of) == ("llm", None, "dedupe", first.id)
    assert second.dedupe_key == first.dedupe_key is not None
    assert (second.status, second.route, second.fields) == ("routed", ROUTE, first.fields)
    assert (second.model, second.schema_version, second.prompt_version) == (
        first.model, first.schema_version, first.prompt_version)
    assert _finished("dedupe") == counted + 1, "counted like any finished ticket"
    detail = ticket_detail(app.sessions, second.id)
    assert detail is not None and (detail["ticket"]["extractor"], detail["ticket"]["dedupe_of"]) == ("dedupe", first.id)
    with app.sessions() as session:
        [event] = session.scalars(select(Event).where(Event.ticket_id == second.id)).all()
        assert (event.kind, event.after["extractor"], event.after["route"]) == ("routed", "dedupe", ROUTE)
        assert session.get_one(Ticket, second.id).attempts == [], "no LLM call, no attempt"


def test_pii_placeholders_make_two_customers_the_same_conversation(app: App, api: FakeMiMo) -> None:
    _work(app, "P-1", "Router dead, mail me at li.lei@example.com or call 13800138000 [pii-1]")
    second = _work(app, "P-2", "Router dead, mail me at wang.fang@example.org or call 139 0013 9000 [pii-1]")
    assert second.extractor == "dedupe"
    assert len(api.requests_for("[pii-1]")) == 1


def test_outside_the_window_the_llm_is_called_again(migrated_database_url: str, api: FakeMiMo) -> None:
    clock = ManualClock()
    app = _app(migrated_database_url, api, clock, TRIAGE__EXTRACTION__DEDUPE_WINDOW_SECONDS="600")
    try:
        _work(app, "W-1", "My router is broken [window-1]")
        clock.advance(seconds=599)
        assert _work(app, "W-2", "My router is broken [window-1]").extractor == "dedupe"
        clock.advance(seconds=2)  # 601 s after the LLM extraction (a reuse does not restart the window)
        third = _work(app, "W-3", "My router is broken [window-1]")
        assert third.extractor == "llm"
        assert len(api.requests_for("[window-1]")) == 2
    finally:
        app.close()


def test_window_zero_turns_it_off(migrated_database_url: str, api: FakeMiMo) -> None:
    app = _app(migrated_database_url, api, TRIAGE__EXTRACTION__DEDUPE_WINDOW_SECONDS="0")
    try:
        tickets = [_work(app, f"Z-{n}", "My router is broken [zero-1]") for n in range(2)]
        assert [t.extractor for t in tickets] == ["llm", "llm"]
        assert len(api.requests_for("[zero-1]")) == 2
    finally:
        app.close()


def test_a_source_switched_off_neither_reuses_nor_is_reused(migrated_database_url: str, api: FakeMiMo) -> None:
    app = _app(migrated_database_url, api, TRIAGE__EXTRACTION__DEDUPE_SOURCES_OFF='["vip"]')
    try:
        text = "My router is broken [source-1]"
        outcomes = [_work(app, "S-1", text, "shop"), _work(app, "S-2", text, "vip"),
                    _work(app, "S-3", text, "shop")]
        assert [t.extractor for t in outcomes] == ["llm", "llm", "dedupe"]
        assert outcomes[2].dedupe_of == outcomes[0].id
        assert len(api.requests_for("[source-1]")) == 2
        alone = [_work(app, "S-4", "My router is broken [source-2]", "vip"),
                 _work(app, "S-5", "My router is broken [source-2]", "web")]
        assert [t.extractor for t in alone] == ["llm", "llm"], "an extraction from a source that is off is not reused"
    finally:
        app.close()


def test_another_schema_version_calls_the_llm(migrated_database_url: str, api: FakeMiMo, tmp_path: Path) -> None:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    schema["$comment"] = "a new version of the same fields"
    changed = tmp_path / "ticket_schema.json"
    changed.write_text(json.dumps(schema), encoding="utf-8")
    before = _app(migrated_database_url, api)
    after = _app(migrated_database_url, api, TRIAGE__SCHEMA__PATH=str(changed))
    try:
        first = _work(before, "V-1", "My router is broken [version-1]")
        second = _work(after, "V-2", "My router is broken [version-1]")
        assert (second.extractor, second.schema_version != first.schema_version) == ("llm", True)
        assert second.prompt_version != first.prompt_version
        assert len(api.requests_for("[version-1]")) == 2
        assert _work(after, "V-3", "My router is broken [version-1]").dedupe_of == second.id
    finally:
        before.close()
        after.close()


def test_an_extraction_that_was_not_routed_by_the_llm_is_not_reused(app: App, api: FakeMiMo) -> None:
    api.script("[failed-1]", ok("no JSON here"), ok("still none"), ok("nope"), ok(FAULT))
    ticket_id = submit(app, "F-1", "My router is broken [failed-1]")
    assert app.celery.tasks[EXTRACT_TASK](ticket_id) == "fallback"
    assert _work(app, "F-2", "My router is broken [failed-1]").extractor == "llm"
    assert len(api.requests_for("[failed-1]")) == 4


def test_purging_the_source_ticket_leaves_the_reuse_in_place(migrated_database_url: str, api: FakeMiMo) -> None:
    clock = ManualClock()
    app = _app(migrated_database_url, api, clock)
    try:
        source = _work(app, "R-1", "My router is broken [purge-1]")
        clock.advance(seconds=120)
        reuse = _work(app, "R-2", "My router is broken [purge-1]")
        assert reuse.dedupe_of == source.id
        report = purge_before(app.sessions, EPOCH + timedelta(seconds=60), actor="test", clock=clock)
        assert report.counts.tickets == 1
        with app.sessions() as session:
            assert session.get(Ticket, source.id) is None
            kept = session.get_one(Ticket, reuse.id)
            assert (kept.extractor, kept.dedupe_of, kept.fields) == ("dedupe", None, reuse.fields)
    finally:
        app.close()


def test_the_key_covers_the_versions_and_folds_only_case_whitespace_and_pii() -> None:
    privacy = PrivacySettings()

    def key(text: str, schema: str = "s1", prompt: str = "p1") -> str:
        return conversation_key(Conversation.from_text(text), privacy, schema, prompt)

    assert key("Router\tdead  NOW") == key("router dead now") == key(" ROUTER\n\ndead now ")
    assert key("router dead now") != key("router dead now!")
    assert key("router dead now") not in {key("router dead now", schema="s2"), key("router dead now", prompt="p2")}
    assert key("call 13800138000") == key("call 139 0013 9000")
    agent = Conversation.from_dicts([{"role": "agent", "text": "router dead now"}])
    assert conversation_key(agent, privacy, "s1", "p1") != key("router dead now"), "who said it counts"
    assert len(key("x")) == 64


def test_a_batch_reuses_what_it_can_and_asks_only_for_the_rest(migrated_database_url: str, api: FakeMiMo) -> None:
    app = _app(migrated_database_url, api, TRIAGE__EXTRACTION__BATCH_MODE="always")
    try:
        first = _work(app, "B-1", "My router is broken [batch-same]")
        copy = submit(app, "B-2", "my router IS broken   [batch-same]")
        new = submit(app, "B-3", "My router is broken too [batch-new]")
        assert app.celery.tasks[EXTRACT_TASK](new) == ROUTE  # claims both; the copy needs no call
        assert len(api.requests_for("[batch-same]")) == 1 and len(api.requests_for("[batch-new]")) == 1
        with app.sessions() as session:
            reused, asked = session.get_one(Ticket, copy), session.get_one(Ticket, new)
            assert (reused.status, reused.extractor, reused.dedupe_of) == ("routed", "dedupe", first.id)
            assert asked.extractor == "llm" and asked.dedupe_key not in (None, reused.dedupe_key)
    finally:
        app.close()
