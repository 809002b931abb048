"""Autonomy per route: the precedence table, its settings, and what each level writes to the helpdesk.

The pipeline tests run the worker's own steps on SQLite and PostgreSQL: a ticket arrives as Zendesk's
webhook stores it, the real LLM extractor asks the loopback OpenAI-wire server, the worker's policy
(:func:`triage.worker.tasks.decided`) decides and :func:`triage.worker.tasks.apply_step` stores the ticket, and the
outbox's deliveries go to the loopback Zendesk. The ticket's confidence is set on the extraction result
between the extractor and the policy, the seam the confidence scoring fills in production (until then a
result has none, and no threshold holds it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests.autonomy_desk import ACCOUNT, ESCALATION, ESCALATION_TAGS, REVIEW_GROUP, ZENDESK_ID, Desk, desk_rig
from tests.factories import (
    bearer,
    csrf_of,
    parse_metrics,
    receive_from,
    run_deliveries,
    sample,
    sign_in,
    submit,
)
from tests.fakeapi import FakeMiMo, ok
from tests.writeback_cases import AGENT_TAGS, CASES, ZENDESK, Case, config_file, rig
from triage.api.app import create_app
from triage.app.queues import EXTRACT_TASK
from triage.cli import main as cli
from triage.delivery import deliver
from triage.learning.reviews import review_labels
from triage.settings import SettingsError, load_settings
from triage.states.autonomy import Level, Thresholds, Verdict, applied, band
from triage.states.tickets import EventKind
from triage.store.accuracy import accuracy
from triage.tickets import lifecycle
from triage.tickets.route_quality import route_accuracy, route_quality

# ---- the precedence table -----------------------------------------------------------------------------

LIMITS = Thresholds(auto_above=0.8, review_below=0.5)
#: Confidences on each side of LIMITS: none known, below review_below, between the two, exactly at each.
LOW, BETWEEN, AT_REVIEW, AT_AUTO, HIGH = 0.2, 0.6, 0.5, 0.8, 0.95
A, S, R, SH = Level.AUTO, Level.SUGGEST, Level.REVIEW, Level.SHADOW

#: (route level, confidence, injection hold) -> the verdict, written out case by case.
PRECEDENCE: list[tuple[Level, float | None, bool, Verdict]] = [
    # shadow: recorded, nothing written, whatever the confidence, even a suspected injection
    *[(SH, c, i, Verdict(SH)) for c in (None, LOW, BETWEEN, AT_REVIEW, AT_AUTO, HIGH) for i in (False, True)],
    # an injection hold comes before every threshold and level but shadow
    *[(level, c, True, Verdict(R, "injection_suspected"))
      for level in (A, S, R) for c in (None, LOW, BETWEEN, AT_REVIEW, AT_AUTO, HIGH)],
    # below review_below: low_confidence, even on a review or suggest route
    (A, LOW, False, Verdict(R, "low_confidence")),
    (S, LOW, False, Verdict(R, "low_confidence")),
    (R, LOW, False, Verdict(R, "low_confidence")),
    # a review route holds everything else
    (R, None, False, Verdict(R, "review_route")),
    (R, AT_REVIEW, False, Verdict(R, "review_route")),
    (R, BETWEEN, False, Verdict(R, "review_route")),
    (R, AT_AUTO, False, Verdict(R, "review_route")),
    (R, HIGH, False, Verdict(R, "review_route")),
    # a suggest route suggests at any confidence at or above review_below
    (S, None, False, Verdict(S)),
    (S, AT_REVIEW, False, Verdict(S)),
    (S, BETWEEN, False, Verdict(S)),
    (S, AT_AUTO, False, Verdict(S)),
    (S, HIGH, False, Verdict(S)),
    # an auto route: between the thresholds a suggestion (review_below itself included), at auto_above auto
    (A, AT_REVIEW, False, Verdict(S)),
    (A, BETWEEN, False, Verdict(S)),
    (A, AT_AUTO, False, Verdict(A)),
    (A, HIGH, False, Verdict(A)),
    # no confidence known: no threshold holds it, the route's level applies
    (A, None, False, Verdict(A)),
]


def test_the_precedence_table_covers_every_level_confidence_and_hold() -> None:
    cases = {(level, confidence, hold) for level, confidence, hold, _ in PRECEDENCE}
    assert len(cases) == len(PRECEDENCE) == 4 * 6 * 2


@pytest.mark.parametrize(("level", "confidence", "injection", "verdict"), PRECEDENCE)
def test_precedence(level: Level, confidence: float | None, injection: bool, verdict: Verdict) -> None:
    assert applied(level, confidence, LIMITS, injection_hold=injection) == verdict


@pytest.mark.parametrize("confidence", [None, 0.0, 0.3, 1.0])
def test_the_shipped_thresholds_change_nothing(confidence: float | None) -> None:
    assert applied(A, confidence, Thresholds()) == Verdict(A)


@pytest.mark.parametrize(("confidence", "expected"), [(None, None), (0.0, "low"), (0.49, "low"), (0.5, "medium"),
                                                      (0.79, "medium"), (0.8, "high"), (1.0, "high")])
def test_bands_are_the_thresholds(confidence: float | None, expected: str | None) -> None:
    assert band(confidence, 0.8, 0.5) == expected
    assert band(confidence, 0.0, 0.0) == (None if confidence is None else "high")


# ---- settings -------------------------------------------------------------------------------------------

def _settings(tmp_path: Path, tables: str) -> Any:
    return load_settings({"TRIAGE_CONFIG": str(config_file(tmp_path, tables)), "TRIAGE_EXTRACTOR": "rules"})


def test_the_shipped_settings_are_auto_with_thresholds_0() -> None:
    autonomy = load_settings({"TRIAGE_EXTRACTOR": "rules"}).autonomy
    assert (autonomy.default, autonomy.auto_above, autonomy.review_below, autonomy.routes) == (A, 0.0, 0.0, {})
    assert load_settings({"TRIAGE_EXTRACTOR": "rules"}).quality.target_precision == 0.95


def test_a_route_sets_its_own_level_and_thresholds(tmp_path: Path) -> None:
    autonomy = _settings(tmp_path, '[autonomy]\ndefault = "suggest"\nauto_above = 0.9\nreview_below = 0.4\n'
                                   '[autonomy.routes."hardware-escalation"]\nlevel = "shadow"\nreview_below = 0.6\n'
                                   '[autonomy.routes."hardware-support"]\nauto_above = 0.7\n').autonomy
    levels = autonomy.level("hardware-escalation"), autonomy.level("hardware-support"), autonomy.level("x")
    assert levels == (SH, S, S)
    assert autonomy.thresholds("hardware-escalation") == Thresholds(auto_above=0.9, review_below=0.6)
    assert autonomy.thresholds("hardware-support") == Thresholds(auto_above=0.7, review_below=0.4)
    assert autonomy.thresholds("general-inquiries") == Thresholds(auto_above=0.9, review_below=0.4)


@pytest.mark.parametrize(("tables", "message"), [
    ('[autonomy.routes."vip-team"]\nlevel = "suggest"\n', "autonomy.routes: 'vip-team' is not a route of [routing]"),
    ('[autonomy]\ndefault = "yolo"\n', "autonomy.default='yolo': Input should be 'auto', 'suggest', 'review' or"),
    ('[autonomy.routes."hardware-support"]\nlevel = "often"\n', 'autonomy.routes.hardware-support.level=\'often\''),
    ('[autonomy]\nauto_above = 1.5\n', "autonomy.auto_above=1.5: Input should be less than or equal to 1"),
    ('[autonomy]\nauto_above = 0.3\nreview_below = 0.5\n',
     "autonomy.review_below=0.5 is above autonomy.auto_above=0.3"),
    ('[autonomy.routes."hardware-support"]\nreview_below = 0.2\n',
     'autonomy.routes."hardware-support".review_below=0.2 is above autonomy.routes."hardware-support".auto_above=0'),
    ('[autonomy.routes."hardware-support"]\nspeed = 3\n', "autonomy.routes.hardware-support.speed=3: Extra inputs"),
    ('[quality]\ntarget_precision = 0\n', "quality.target_precision=0: Input should be greater than 0"),
])
def test_a_bad_autonomy_setting_stops_start_up_naming_the_key(tmp_path: Path, tables: str, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        _settings(tmp_path, tables)


# ---- the pipeline and the helpdesk -------------------------------------------------------------------

ALICE, BOB = bearer("alice"), bearer("bob")


@pytest.fixture(scope="module")
def mimo() -> Iterator[FakeMiMo]:
    with FakeMiMo() as server:
        yield server


def _desk(database_url: str, tmp_path: Path, mimo: FakeMiMo, autonomy: str) -> Iterator[Desk]:
    yield from desk_rig(database_url, tmp_path, mimo, autonomy)


THRESHOLDS = "[autonomy]\nauto_above = 0.8\nreview_below = 0.5\n"


@pytest.fixture
def desk(migrated_database_url: str, tmp_path: Path, mimo: FakeMiMo) -> Iterator[Desk]:
    yield from _desk(migrated_database_url, tmp_path, mimo, THRESHOLDS)


@pytest.fixture
def suggesting(migrated_database_url: str, tmp_path: Path, mimo: FakeMiMo) -> Iterator[Desk]:
    yield from _desk(migrated_database_url, tmp_path, mimo,
                     '[autonomy.routes."hardware-escalation"]\nlevel = "suggest"\n')


@pytest.fixture
def shadowing(migrated_database_url: str, tmp_path: Path, mimo: FakeMiMo) -> Iterator[Desk]:
    yield from _desk(migrated_database_url, tmp_path, mimo,
                     THRESHOLDS + '[autonomy.routes."hardware-escalation"]\nlevel = "shadow"\n')


def _count(level: str) -> float:
    """``triage_autonomy_total{level}`` as this process exposes it."""
    return REGISTRY.get_sample_value("triage_autonomy_total", {"level": level}) or 0.0


def test_a_confident_ticket_on_an_auto_route_is_written_back_in_full(desk: Desk) -> None:
    before = _count("auto")
    ticket_id = desk.arrive("auto-confident")
    assert desk.work(ticket_id, 0.93) == "hardware-escalation"
    ticket = desk.ticket(ticket_id)["ticket"]
    assert (ticket["status"], ticket["autonomy"], ticket["confidence"]) == ("routed", "auto", 0.93)
    assert (desk.there.group, desk.there.priority) == ZENDESK.escalation_p1
    assert sorted(desk.there.tags) == sorted(AGENT_TAGS + ESCALATION_TAGS)
    assert _count("auto") == before + 1


def test_a_low_confidence_ticket_is_held_and_gets_only_the_review_routes_mapping(desk: Desk) -> None:
    before = _count("review")
    ticket_id = desk.arrive("auto-unsure")
    assert desk.work(ticket_id, 0.31) == "needs_review"
    ticket = desk.ticket(ticket_id)["ticket"]
    assert (ticket["status"], ticket["route"], ticket["fallback_reason"], ticket["autonomy"]) == (
        "needs_review", "manual-review", "low_confidence", "review")
    assert ticket["fields"] == ESCALATION, "the answer is kept for the person"
    assert "confidence 0.31 is below review_below 0.5" in ticket["fallback_detail"]
    assert desk.there.group == REVIEW_GROUP
    assert desk.there.priority != "urgent", "nothing of the predicted route's priority"
    assert sorted(desk.there.tags) == sorted([*AGENT_TAGS, "triage_manual-review", "triage_p2"])
    assert not any("hardware-escalation" in tag or tag == "triage-hw" for tag in desk.there.tags)
    assert [event["type"] for event in desk.events()] == ["ticket.needs_review"]
    assert _count("review") == before + 1


def test_between_the_thresholds_an_auto_route_only_suggests(desk: Desk) -> None:
    ticket_id = desk.arrive("auto-between")
    desk.work(ticket_id, 0.66)
    ticket = desk.ticket(ticket_id)["ticket"]
    assert (ticket["status"], ticket["route"], ticket["autonomy"]) == ("routed", "hardware-escalation", "suggest")
    assert (desk.there.group, desk.there.priority, sorted(desk.there.tags)) == (None, None, sorted(AGENT_TAGS))
    assert [note.body.splitlines()[0] for note in desk.there.notes] == [
        "triage suggests routing this ticket to hardware-escalation (P1); nothing was changed: confirm or correct "
        "it in triage."]


def test_a_suggest_route_gets_a_note_until_confirm_writes_the_rest(suggesting: Desk) -> None:
    desk = suggesting
    ticket_id = desk.arrive("suggest-route")
    desk.work(ticket_id, None)  # no confidence: the route's level applies
    assert desk.ticket(ticket_id)["ticket"]["autonomy"] == "suggest"
    puts = desk.zendesk.calls("PUT")
    assert len(puts) == 1 and set(puts[0].body["ticket"]) == {"comment"}, "only the internal note"
    assert puts[0].body["ticket"]["comment"]["public"] is False
    assert (desk.there.group, desk.there.priority, sorted(desk.there.tags)) == (None, None, sorted(AGENT_TAGS))

    with TestClient(create_app(desk.app)) as client:
        listed = client.get("/tickets", params={"status": "routed"}, headers=ALICE).json()["items"]
        assert [(t["id"], t["autonomy"], t["confidence"]) for t in listed] == [(ticket_id, "suggest", None)]
        waiting = client.get("/tickets", params={"autonomy": "suggest", "status": "routed"}, headers=ALICE)
        assert [t["id"] for t in waiting.json()["items"]] == [ticket_id]
        assert client.get("/tickets", params={"autonomy": "auto"}, headers=ALICE).json()["items"] == []
        assert client.get("/tickets", params={"autonomy": "often"}, headers=ALICE).status_code == 422
        assert client.post(f"/tickets/{ticket_id}/claim", headers=ALICE).status_code == 200
        refused = client.post(f"/tickets/{ticket_id}/confirm", headers=BOB)
        assert refused.status_code == 409 and "claimed by alice" in refused.json()["detail"], refused.text
        run_deliveries(desk.app, desk.published)
        assert (desk.there.group, desk.there.priority) == (None, None), "a refused confirm writes nothing"

        confirmed = client.post(f"/tickets/{ticket_id}/confirm", headers=ALICE)
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["ticket"]["status"] == "corrected"
        assert confirmed.json()["ticket"]["fields"] == ESCALATION
        again = client.post(f"/tickets/{ticket_id}/confirm", headers=ALICE)
        assert again.status_code == 409 and "not a suggestion" in again.json()["detail"]
    run_deliveries(desk.app, desk.published)
    assert (desk.there.group, desk.there.priority) == ZENDESK.escalation_p1
    assert sorted(desk.there.tags) == sorted(AGENT_TAGS + ESCALATION_TAGS)
    assert [event["type"] for event in desk.events()] == ["ticket.routed", "ticket.confirmed"]
    assert [event["data"]["ticket"]["autonomy"] for event in desk.events()] == ["suggest", "suggest"]

    labels = review_labels(desk.app.sessions, ["problem_type", "urgent_level"])
    assert [row.labels for row in labels.rows] == [{"problem_type": "device_fault", "urgent_level": "high"}]
    report = accuracy(desk.app.sessions, ["problem_type", "urgent_level"], None)
    assert (report.reviewed, report.corrected) == (1, 0)
    lifecycle.resolve(desk.app.sessions, ticket_id, "alice", desk.app.clock.now(), outbox=desk.app.outbox)
    assert accuracy(desk.app.sessions, ["problem_type"], None).reviewed == 1, "the resolve is not a second label"


def test_the_desk_confirms_a_suggestion_and_tells_a_non_holder_why_not(suggesting: Desk) -> None:
    desk = suggesting
    ticket_id = desk.arrive("suggest-desk")
    desk.work(ticket_id, 0.72)
    lifecycle.assign(desk.app.sessions, ticket_id, "alice", desk.app.clock.now(), outbox=desk.app.outbox)
    with TestClient(create_app(desk.app), base_url="http://127.0.0.1") as bob, \
            TestClient(create_app(desk.app), base_url="http://127.0.0.1") as alice:
        sign_in(bob, "bob")
        queue = bob.get("/desk/").text
        assert "Needs confirmation" in queue and f'href="/desk/tickets/{ticket_id}"' in queue
        assert "0.72 High" in queue, "the shipped thresholds: every confidence is High"
        page = bob.get(f"/desk/tickets/{ticket_id}").text
        assert 'id="autonomy">suggest<' in page and "Confirm</button>" in page
        refused = bob.post(f"/desk/tickets/{ticket_id}/confirm", data={"csrf_token": csrf_of(page)},
                           follow_redirects=False)
        assert refused.status_code == 409 and "claimed by alice" in refused.text
        assert desk.ticket(ticket_id)["ticket"]["status"] == "routed"

        sign_in(alice, "alice")
        page = alice.get(f"/desk/tickets/{ticket_id}").text
        done = alice.post(f"/desk/tickets/{ticket_id}/confirm", data={"csrf_token": csrf_of(page)},
                          follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"].endswith("?done=confirmed")
        assert "Suggestion confirmed" in alice.get(done.headers["location"]).text
        assert "No suggestion is waiting." in alice.get("/desk/").text
    run_deliveries(desk.app, desk.published)
    assert (desk.there.group, desk.there.priority) == ZENDESK.escalation_p1


def test_a_shadow_route_makes_no_helpdesk_request_but_events_and_alerts_go_out(shadowing: Desk) -> None:
    desk = shadowing
    before = _count("shadow")
    ticket_id = desk.arrive("shadow-route")
    desk.work(ticket_id, 0.1)  # below review_below: shadow comes first, nothing is held nor written
    ticket = desk.ticket(ticket_id)
    assert (ticket["ticket"]["status"], ticket["ticket"]["route"], ticket["ticket"]["autonomy"]) == (
        "routed", "hardware-escalation", "shadow")
    assert desk.zendesk.calls() == [], "no request at all"
    assert [d["kind"] for d in ticket["deliveries"]].count("writeback") == 0, "no write-back recorded"
    [event] = desk.events()
    assert (event["type"], event["data"]["ticket"]["autonomy"], event["data"]["ticket"]["route"]) == (
        "ticket.routed", "shadow", "hardware-escalation")
    assert len(desk.slack.messages) == 1 and desk.slack.messages[0].endswith("(autonomy: shadow)")
    assert _count("shadow") == before + 1

    lifecycle.correct(desk.app.sessions, ticket_id, "alice", {"urgent_level": "high"}, desk.app.schema,
                      desk.app.router, desk.app.clock.now(), outbox=desk.app.outbox)
    run_deliveries(desk.app, desk.published)
    assert desk.zendesk.calls() == [], "a person's decision on a shadow ticket is not written either"


def test_a_review_route_holds_every_ticket_with_review_route(
        migrated_database_url: str, tmp_path: Path, mimo: FakeMiMo) -> None:
    for desk in _desk(migrated_database_url, tmp_path, mimo,
                      '[autonomy.routes."hardware-escalation"]\nlevel = "review"\n'):
        ticket_id = desk.arrive("review-route")
        desk.work(ticket_id, 0.99)
        ticket = desk.ticket(ticket_id)["ticket"]
        assert (ticket["status"], ticket["route"], ticket["fallback_reason"], ticket["autonomy"]) == (
            "needs_review", "manual-review", "review_route", "review")
        assert desk.there.group == REVIEW_GROUP


def test_the_celery_task_applies_the_routes_level(suggesting: Desk) -> None:
    desk = suggesting
    desk.api.script("[task-run]", ok(ESCALATION))
    ticket_id = receive_from(desk.app, "zendesk", ZENDESK_ID, ACCOUNT, "Router dead [task-run]", "t1")
    assert desk.app.celery.tasks[EXTRACT_TASK](ticket_id) == "hardware-escalation"
    assert desk.ticket(ticket_id)["ticket"]["autonomy"] == "suggest"
    assert EventKind.CONFIRMED.value == "confirmed"


def test_the_api_and_cli_listing_show_confidence_and_autonomy(desk: Desk, migrated_database_url: str,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ticket_id = desk.arrive("listing")
    desk.work(ticket_id, 0.9)
    with TestClient(create_app(desk.app)) as client:
        record = client.get(f"/tickets/{ticket_id}", headers=ALICE).json()["ticket"]
        [listed] = client.get("/tickets", headers=ALICE).json()["items"]
    assert (record["confidence"], record["autonomy"]) == (listed["confidence"], listed["autonomy"]) == (0.9, "auto")
    for name, value in {"TRIAGE_DATABASE_URL": migrated_database_url, "TRIAGE_EXTRACTOR": "rules"}.items():
        monkeypatch.setenv(name, value)  # the command's settings, as a shell would give them
    capsys.readouterr()
    assert cli.main(["tickets", "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert (json.loads(line)["confidence"], json.loads(line)["autonomy"]) == (0.9, "auto")


# ---- the Quality page and the route-accuracy gauges -------------------------------------------------------

ELSEWHERE = {"problem_type": "consult", "urgent_level": "low"}  # a correction that moves the ticket


def _reviewed(desk: Desk, key: str, confidence: float, review: str) -> int:
    """A ticket (no platform: nothing to write back) worked with ``confidence``, then reviewed by alice:
    ``resolve`` or ``confirm`` keep its route, ``correct`` moves it."""
    desk.api.script(f"[{key}]", ok(ESCALATION))
    ticket_id = submit(desk.app, key, f"My router died [{key}]")
    desk.work(ticket_id, confidence)
    now = desk.app.clock.now()
    if review == "correct":
        lifecycle.correct(desk.app.sessions, ticket_id, "alice", ELSEWHERE, desk.app.schema, desk.app.router, now,
                          outbox=desk.app.outbox)
    elif review == "confirm":
        lifecycle.confirm(desk.app.sessions, ticket_id, "alice", now, outbox=desk.app.outbox)
    else:
        lifecycle.resolve(desk.app.sessions, ticket_id, "alice", now, outbox=desk.app.outbox)
    return ticket_id


SEEDED = [(0.95, "resolve"), (0.9, "resolve"), (0.85, "resolve"), (0.82, "resolve"), (0.81, "correct"),
          (0.6, "confirm"), (0.55, "confirm")]


def test_the_quality_page_shows_each_routes_curve_thresholds_and_what_reaches_the_target(desk: Desk) -> None:
    for index, (confidence, review) in enumerate(SEEDED):
        _reviewed(desk, f"q-{index}", confidence, review)
    _reviewed(desk, "q-held", 0.3, "resolve")  # held for review: counts on the route its fields gave
    quality = {r.route: r for r in route_quality(desk.app.sessions, desk.app.router, desk.app.settings.autonomy,
                                                 0.95)}
    route = quality["hardware-escalation"]
    assert (route.reviewed, route.survived, route.scored) == (8, 7, 8)
    assert [(p.threshold, p.accepted) for p in route.curve] == [
        (0.95, 1), (0.9, 2), (0.85, 3), (0.82, 4), (0.81, 5), (0.6, 6), (0.55, 7), (0.3, 8)]
    assert route.reaching_target is not None and route.reaching_target.threshold == 0.82
    assert route.reaching_target.coverage == 0.5
    assert route.at_auto_above is not None and (route.at_auto_above.threshold, route.at_auto_above.precision) == (
        0.81, 0.8)
    assert route.at_review_below is not None and route.at_review_below.threshold == 0.55
    assert quality["general-inquiries"].reviewed == 0, "a correction counts on the route the machine gave"

    with TestClient(create_app(desk.app), base_url="http://127.0.0.1") as client:
        sign_in(client, "alice")
        page = client.get("/desk/quality").text
        assert '<img class="curves" src="data:image/png;base64,' in page
        assert "0.82: lets through 50% of tickets" in page
        assert "0.8: 62% of tickets, 80% survived" in page
        metrics = parse_metrics(client.get("/metrics").text)
    assert sample(metrics, "triage_route_reviews", route="hardware-escalation") == 8
    assert sample(metrics, "triage_route_review_accuracy", route="hardware-escalation") == 7 / 8
    assert sample(metrics, "triage_route_accuracy_target", route="hardware-escalation") == 0.95
    assert sample(metrics, "triage_route_review_accuracy", route="general-inquiries") is None

    desk.app.clock.advance(days=1, seconds=1)
    assert route_accuracy(desk.app.sessions, desk.app.router, desk.app.clock.now() - timedelta(days=1)) == {}


def test_a_shadow_route_shows_how_often_the_machine_agreed_with_people(shadowing: Desk) -> None:
    desk = shadowing
    _reviewed(desk, "shadow-kept", 0.9, "resolve")
    _reviewed(desk, "shadow-moved", 0.9, "correct")
    with TestClient(create_app(desk.app), base_url="http://127.0.0.1") as client:
        sign_in(client, "alice")
        page = client.get("/desk/quality").text
    assert "the machine agreed with people 50% of the time" in page


# ---- a suggestion on each of the five helpdesks ------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[case.platform for case in CASES])
@pytest.mark.parametrize("notes", [True, False], ids=["notes-on", "notes-off"])
def test_a_suggestion_is_only_an_internal_note_on_every_platform(tmp_path: Path, case: Case, notes: bool) -> None:
    with rig(case, tmp_path, note=notes) as r:
        before = r.ticket()
        state = r.state
        suggestion = replace(r.write("d-s", "hardware-escalation", "P1"), suggestion=True)
        assert deliver(r.adapter, suggestion) == ("note",)
        there = r.fake.tickets[case.ticket_id]
        assert r.state == state and r.tags == sorted(AGENT_TAGS), "no group, team, priority or tags"
        assert before.attributes == there.attributes
        [note] = there.notes
        assert "triage suggests routing this ticket to hardware-escalation (P1)" in note.body
        assert "triage delivery d-s" in note.body


def test_a_new_run_forgets_the_old_runs_confidence_and_level(suggesting: Desk) -> None:
    desk = suggesting
    ticket_id = desk.arrive("rerun")
    desk.work(ticket_id, 0.7)
    lifecycle.reprocess(desk.app.sessions, ticket_id, "alice", desk.app.clock.now(), outbox=desk.app.outbox)
    ticket = desk.ticket(ticket_id)["ticket"]
    assert (ticket["status"], ticket["confidence"], ticket["autonomy"]) == ("queued", None, None)
    desk.work(ticket_id, 0.9)
    assert (desk.ticket(ticket_id)["ticket"]["confidence"], desk.ticket(ticket_id)["ticket"]["autonomy"]) == (
        0.9, "suggest")
