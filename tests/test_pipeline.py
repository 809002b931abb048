"""End to end: `triage submit` -> broker -> real `triage worker` process -> loopback MiMo -> database.

The same scenarios run on three shapes of the product:
- embedded: SQLite database + kombu's SQLAlchemy transport on SQLite, plain JSON answers;
- production: PostgreSQL + Redis, with the worker streaming (SSE) answers;
- rabbitmq: PostgreSQL + RabbitMQ (amqp://, a virtual host of the run's own), plain JSON answers.
Each scenario's conversation carries a marker the loopback API uses to pick its scripted replies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from tests.fakeapi import FakeMiMo, Reply, error, ok
from tests.harness import Stack, fresh_database
from triage.store.models import Attempt, Conversation, Ticket

FAULT = {"problem_type": "device_fault", "device_model": "AX3000", "urgent_level": "high",
         "user_requirements": ["fix the router"]}
CONSULT = {"problem_type": "consult", "device_model": "Watch S1", "urgent_level": "low",
           "user_requirements": ["set the timer"]}
ZH_TICKET = {"problem_type": "device_fault", "device_model": "小米手环8", "urgent_level": "high",
             "user_requirements": ["尽快处理充电问题"]}
ZH_TEXT = "我的小米手环8充不进电了，已经试过换充电线，还是不行，希望尽快处理。🙏"


@dataclass
class Case:
    key: str
    replies: list[Reply]
    text: str = "My router keeps rebooting, please help"
    messages: list[dict[str, str]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"source": "it", "external_id": self.key}
        if self.messages:
            row["messages"] = self.messages
        else:
            row["text"] = f"{self.text} [{self.key}]"
        return row


CASES = [
    Case("valid", [ok(FAULT)]),
    Case("fenced", [ok("```json\n" + json.dumps(CONSULT) + "\n```")]),
    Case("prose", [ok("Sure! Here is the ticket:\n" + json.dumps(FAULT) + "\nHope this helps.")]),
    Case("enum-then-valid", [ok({**FAULT, "urgent_level": "critical"}), ok(FAULT)]),
    Case("always-invalid", [ok({**FAULT, "problem_type": "broken"})]),
    Case("500-then-valid", [error(500), ok(FAULT)]),
    Case("429-then-valid", [error(429, headers={"Retry-After": "1"}), ok(CONSULT)]),
    Case("truncated-then-valid", [ok('{"problem_type": "device_fault", "device_mo', finish_reason="length"),
                                  ok(FAULT)]),
    Case("unauthorized", [error(401, "invalid api key")]),
    Case("always-overloaded", [error(503, "overloaded")]),
    Case("extra-fields", [ok({**CONSULT, "route": "vip-team", "priority": "P0"})]),
    Case("draft-then-final", [ok("<think>" + json.dumps(CONSULT) + "</think>\nDraft: "
                                 + json.dumps({**CONSULT, "urgent_level": "soon"})
                                 + "\nFinal:\n```json\n" + json.dumps(FAULT) + "\n```")]),
    Case("ambiguous-twice", [ok(json.dumps(CONSULT) + "\n" + json.dumps(FAULT))]),
    Case("raw-nul", [ok(json.dumps(FAULT).replace('"AX3000"', '"AX\x003000"'))]),
    Case("surrogate-escape", [ok(json.dumps(FAULT).replace('"AX3000"', '"AX3000\\ud800"'))]),
    Case("nul-escape", [ok(json.dumps(FAULT).replace('"AX3000"', '"AX3000\\u0000"'))]),
    Case("only-a-nul-string", [ok('"\\u0000"')]),
    Case("chinese", [ok(ZH_TICKET)], messages=[
        {"role": "customer", "text": ZH_TEXT + " [chinese]"},
        {"role": "agent", "text": "请问您试过重启吗？"},
        {"role": "customer", "text": "试过了，没用。"}]),
]


@dataclass
class Run:
    stack: Stack
    api: FakeMiMo
    ids: dict[str, int]
    views: dict[int, Any]
    streaming: bool

    def view(self, key: str) -> Any:
        return self.views[self.ids[key]]

    def attempts(self, key: str) -> list[Attempt]:
        with self.stack.sessions() as session:
            return list(session.scalars(select(Attempt).where(Attempt.ticket_id == self.ids[key])
                                        .order_by(Attempt.id)))

    def ticket(self, key: str) -> Ticket:
        with self.stack.sessions() as session:
            return session.get_one(Ticket, self.ids[key])


def _broker(shape: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if shape == "embedded":
        return f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"
    if shape == "rabbitmq":
        return str(request.getfixturevalue("amqp_url"))
    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return url


#: The embedded default runs in ``make test``; the server shapes, minutes more, in ``make e2e``.
SHAPES = ["embedded", *(pytest.param(shape, marks=pytest.mark.e2e) for shape in ("production", "rabbitmq"))]


@pytest.fixture(scope="module", params=SHAPES)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    shape = request.param
    tmp_path = tmp_path_factory.mktemp(shape)
    streaming = shape == "production"
    with ExitStack() as resources:
        if shape == "embedded":
            database_url = f"sqlite:///{tmp_path / 'triage.sqlite3'}"
        else:
            database_url = resources.enter_context(fresh_database(request.getfixturevalue("postgres_server")))
        api = resources.enter_context(FakeMiMo())
        for case in CASES:
            api.script(f"[{case.key}]", *case.replies)
        stack = Stack(database_url, _broker(shape, tmp_path, request), api.base_url,
                      {"TRIAGE__EXTRACTION__STREAM": str(streaming).lower(),
                       "TRIAGE__EXTRACTION__BATCH_MODE": "never"})  # each case counts its own calls
        stack.migrate()
        with stack.worker("--concurrency", "4"):
            printed = stack.submit([case.row() for case in CASES])
            ids = {line["external_id"]: line["ticket_id"] for line in printed}
            views = stack.wait_finished(list(ids.values()))
        yield Run(stack, api, ids, views, streaming)
        stack.close()


def test_submit_prints_one_line_per_input_with_status_queued(run: Run) -> None:
    assert set(run.ids) == {case.key for case in CASES}


def test_valid_answer_is_routed_by_the_rules_table(run: Run) -> None:
    view = run.view("valid")
    assert (view.status, view.route, view.priority, view.extractor) == ("routed", "hardware-escalation", "P1", "llm")
    assert view.fields["problem_type"] == "device_fault" and view.fields["device_model"] == "AX3000"
    assert view.attempts == 1
    ticket = run.ticket("valid")
    assert ticket.sla_due_at is not None and ticket.finished_at is not None
    assert ticket.sla_due_at - ticket.sla_started_at == timedelta(hours=1)  # P1: one hour from the customer's wait


@pytest.mark.parametrize("key", ["fenced", "prose"])
def test_tolerant_parsing_routes_in_one_attempt(run: Run, key: str) -> None:
    view = run.view(key)
    assert view.status == "routed" and view.attempts == 1


def test_invalid_enum_is_reasked_then_routed(run: Run) -> None:
    view = run.view("enum-then-valid")
    assert (view.status, view.attempts, view.route) == ("routed", 2, "hardware-escalation")
    first, second = run.attempts("enum-then-valid")
    assert first.outcome == "invalid" and "critical" in (first.error or "")
    reask = run.api.requests_for("[enum-then-valid]")[1]["body"]["messages"]
    assert "critical" in json.dumps(reask) and second.outcome == "valid"


def test_always_invalid_ends_in_review_with_every_attempt_stored(run: Run) -> None:
    view = run.view("always-invalid")
    assert (view.status, view.route, view.priority) == ("needs_review", "manual-review", "P2")
    assert view.fallback_reason == "invalid_after_attempts" and view.extractor == "rules"
    attempts = run.attempts("always-invalid")
    assert [a.n for a in attempts] == [1, 2, 3]
    assert all(a.outcome == "invalid" and "broken" in (a.raw_output or "") for a in attempts)
    ticket = run.ticket("always-invalid")
    assert "broken" in (ticket.fallback_raw_output or "") and "problem_type" in (ticket.fallback_detail or "")


def test_server_error_is_retried_then_routed(run: Run) -> None:
    view = run.view("500-then-valid")
    assert (view.status, view.attempts) == ("routed", 2)
    assert [a.status_code for a in run.attempts("500-then-valid")] == [500, None]


def test_rate_limit_honours_retry_after(run: Run) -> None:
    view = run.view("429-then-valid")
    assert (view.status, view.route) == ("routed", "general-inquiries")
    first, second = run.api.requests_for("[429-then-valid]")
    assert second["at"] - first["at"] >= 1.0


def test_truncation_doubles_the_token_budget(run: Run) -> None:
    view = run.view("truncated-then-valid")
    assert (view.status, view.attempts) == ("routed", 2)
    budgets = [r["body"]["max_completion_tokens"] for r in run.api.requests_for("[truncated-then-valid]")]
    assert budgets == [1024, 2048]
    assert run.attempts("truncated-then-valid")[0].finish_reason == "length"


def test_unauthorized_is_not_retried(run: Run) -> None:
    view = run.view("unauthorized")
    assert (view.status, view.fallback_reason, view.route) == ("needs_review", "api_error_401", "manual-review")
    assert len(run.api.requests_for("[unauthorized]")) == 1


def test_exhausted_retries_end_in_review(run: Run) -> None:
    view = run.view("always-overloaded")
    assert (view.status, view.fallback_reason, view.route) == ("needs_review", "retries_exhausted", "manual-review")
    assert view.attempts == 4 == len(run.api.requests_for("[always-overloaded]"))  # 1 + max_retries=3


def test_fields_outside_the_schema_never_reach_storage(run: Run) -> None:
    view = run.view("extra-fields")
    assert (view.route, view.priority) == ("general-inquiries", "P3")
    assert set(run.ticket("extra-fields").fields or {}) == set(CONSULT)


def test_a_draft_before_the_final_answer_is_not_what_routes(run: Run) -> None:
    view = run.view("draft-then-final")
    assert (view.status, view.route, view.attempts) == ("routed", "hardware-escalation", 1)
    [attempt] = run.attempts("draft-then-final")
    assert (attempt.parse_path, attempt.repairs) == ("tolerant", ["fence", "last_of_2", "prose", "think_block"])


def test_an_answer_still_ambiguous_after_the_reask_ends_in_review(run: Run) -> None:
    view = run.view("ambiguous-twice")
    assert (view.status, view.fallback_reason, view.route) == ("needs_review", "ambiguous_answer", "manual-review")
    assert [a.outcome for a in run.attempts("ambiguous-twice")] == ["ambiguous", "ambiguous"]
    reask = run.api.requests_for("[ambiguous-twice]")[1]["body"]["messages"][-1]["content"]
    assert reask.startswith("Your answer held 2 JSON objects; answer with exactly one JSON object")


@pytest.mark.parametrize(("key", "device_model"), [("raw-nul", "AX3000"), ("surrogate-escape", "AX3000\ufffd"),
                                                   ("nul-escape", "AX3000")])
def test_hostile_answers_are_stored_sanitised_and_routed(run: Run, key: str, device_model: str) -> None:
    view = run.view(key)
    assert (view.status, view.route, view.fields["device_model"]) == ("routed", "hardware-escalation", device_model)
    [attempt] = run.attempts(key)
    assert "sanitised" in (attempt.repairs or []) and "\x00" not in (attempt.raw_output or "")


def test_an_answer_of_only_a_nul_string_ends_in_review_not_processing(run: Run) -> None:
    view = run.view("only-a-nul-string")
    assert (view.status, view.fallback_reason) == ("needs_review", "invalid_after_attempts")
    assert [a.outcome for a in run.attempts("only-a-nul-string")] == ["unparseable"] * 3


def test_chinese_conversation_is_stored_and_returned_intact(run: Run) -> None:
    view = run.view("chinese")
    assert view.fields["device_model"] == "小米手环8" and view.fields["user_requirements"] == ["尽快处理充电问题"]
    with run.stack.sessions() as session:
        conversation = session.scalars(select(Conversation).where(Conversation.external_id == "chinese")).one()
    assert conversation.messages[0]["text"] == ZH_TEXT + " [chinese]"
    listed = run.stack.cli("tickets", "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert next(r for r in rows if r["external_id"] == "chinese")["user_requirements"] == ["尽快处理充电问题"]


def test_requests_use_json_mode_and_the_configured_transport(run: Run) -> None:
    bodies = [r["body"] for r in run.api.requests_for("[valid]")]
    assert bodies[0]["response_format"] == {"type": "json_object"}
    assert bodies[0]["thinking"] == {"type": "disabled"}
    assert bool(bodies[0].get("stream")) is run.streaming


def test_duplicate_submit_returns_the_ticket_and_enqueues_nothing(run: Run) -> None:
    before = len(run.api.requests)
    again = run.stack.submit([CASES[0].row()])
    assert again == [{"external_id": "valid", "ticket_id": run.ids["valid"], "status": "routed"}]
    assert len(run.api.requests) == before
    assert len(run.stack.tickets()) == len(CASES)


def test_tickets_command_filters_and_prints_a_table(run: Run) -> None:
    table = run.stack.cli("tickets", "--status", "needs_review")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["id", "external_id", "status"]
    assert sorted(line.split()[1] for line in lines[1:]) == ["always-invalid", "always-overloaded", "ambiguous-twice",
                                                             "only-a-nul-string", "unauthorized"]
    listed = run.stack.cli("tickets", "--route", "manual-review", "--json")
    as_json = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {"id", "source", "external_id", "status", "problem_type", "device_model", "urgent_level",
            "user_requirements", "route", "priority", "sla_due_at", "extractor", "attempts",
            "fallback_reason"} <= set(as_json[0])
