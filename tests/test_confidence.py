"""The ticket confidence (triage.confidence): signals and their combination, calibration, storage and display.

The LLM answers through the loopback OpenAI-wire server (tests.fakeapi) to the real ``openai`` client; the
Celery task runs as a worker runs it; ``triage calibrate`` and ``triage tickets`` run as commands on a real
database (SQLite and, for storage, PostgreSQL too).
"""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from tests.factories import CONFIG_PATH, REPO, ManualClock, bearer, build_app, recording, serve, submit
from tests.fakeapi import FakeMiMo, ok
from tests.harness import clean_environ
from triage.app import App
from triage.app.queues import EXTRACT_TASK
from triage.cli.calibrate import calibrate_command
from triage.confidence.calibrate import Decision, FitSettings, calibrate, constant_head, threshold_for
from triage.confidence.combine import (
    DEFAULT,
    DEFAULT_INTERCEPTS,
    DEFAULT_WEIGHTS,
    Combination,
    Head,
    default_head,
    sigmoid,
    ticket_confidence,
)
from triage.confidence.signals import SIGNALS, SecondOpinions, SignalRecord, field_signals, logit, signal_record
from triage.confidence.store import CalibrationSource, latest_calibration, load_calibration, save_calibration
from triage.extraction.injection import InjectionMatch
from triage.extraction.types import Attempt, ExtractionResult
from triage.states.autonomy import band
from triage.store.models import Attempt as AttemptRow
from triage.store.models import Event, Ticket
from triage.tickets import lifecycle
from triage.worker import scheduled
from triage.worker.tasks import celery_for

FAULT = {"problem_type": "device_fault", "device_model": "AX3000", "urgent_level": "high",
         "user_requirements": ["fix the router"]}
FAULT_ROUTE = "hardware-escalation"
FIELDS = ("problem_type", "urgent_level")
PROBLEMS = ("device_fault", "consult", "complaint", "other")
FIXTURES = REPO / "tests" / "fixtures" / "public"


# --- signals and the combination ------------------------------------------------------------------------------


def _llm(*attempts: Attempt, **kw: Any) -> ExtractionResult:
    return ExtractionResult(extractor="llm", ticket=dict(FAULT), attempts=list(attempts), model="m", **kw)


def test_the_default_weights_name_every_signal_and_a_clean_llm_answer_starts_high() -> None:
    assert set(DEFAULT_WEIGHTS) == set(SIGNALS) and set(DEFAULT_INTERCEPTS) == {"llm", "rules", "learned"}
    clean = field_signals(_llm(Attempt(1, "m", "valid", parse_path="strict")), "problem_type", SecondOpinions())
    assert all(value == 0.0 for value in clean.values())  # nothing known against it: every signal neutral
    assert default_head("llm").score(clean) == pytest.approx(sigmoid(2.0))
    assert default_head("rules").score(clean) == pytest.approx(sigmoid(0.5))


def test_each_doubt_lowers_the_default_confidence() -> None:
    clean = _llm(Attempt(1, "m", "valid", parse_path="strict"))
    doubts = {
        "reask": _llm(Attempt(1, "m", "unparseable"), Attempt(2, "m", "valid", parse_path="strict")),
        "repairs": _llm(Attempt(1, "m", "valid", parse_path="tolerant", repairs=("fence", "trailing_comma"))),
        "ambiguous": _llm(Attempt(1, "m", "ambiguous"), Attempt(2, "m", "valid", parse_path="strict")),
        "injection": _llm(Attempt(1, "m", "valid"), injection=InjectionMatch("marker", "<<<end")),
        "trimmed": _llm(Attempt(1, "m", "valid"), trimmed=True),
    }
    base = DEFAULT.field_confidence(signal_record(clean, FIELDS, SecondOpinions()))["problem_type"]
    for name, result in doubts.items():
        lowered = DEFAULT.field_confidence(signal_record(result, FIELDS, SecondOpinions()))["problem_type"]
        assert lowered < base, name
    signals = field_signals(doubts["repairs"], "problem_type", SecondOpinions())
    assert (signals["repairs"], signals["tolerant"]) == (2.0, 1.0)
    assert field_signals(doubts["ambiguous"], "problem_type", SecondOpinions())["ambiguous"] == 1.0
    # API errors are not answers: a 503 before the valid answer is no re-ask
    assert field_signals(_llm(Attempt(1, "m", "api_error"), Attempt(2, "m", "valid")), "problem_type",
                         SecondOpinions())["reasks"] == 0.0


def test_second_opinions_count_for_the_field_they_disagree_on_only() -> None:
    result = _llm(Attempt(1, "m", "valid"))
    opinions = SecondOpinions(rules={"problem_type": "consult", "urgent_level": "high"},
                              learned={"problem_type": {"device_fault": 0.9, "consult": 0.1},
                                       "urgent_level": {"high": 0.2, "normal": 0.8}})
    record = signal_record(result, FIELDS, opinions)
    assert record.signals["problem_type"]["rules_disagree"] == 1.0
    assert record.signals["problem_type"]["learned_disagree"] == 0.0
    assert record.signals["problem_type"]["learned_logit"] == pytest.approx(logit(0.9))
    assert record.signals["urgent_level"]["rules_disagree"] == 0.0
    assert record.signals["urgent_level"]["learned_disagree"] == 1.0
    scored = DEFAULT.field_confidence(record)
    alone = DEFAULT.field_confidence(signal_record(result, FIELDS, SecondOpinions()))
    assert scored["urgent_level"] < alone["urgent_level"]
    assert ticket_confidence(scored) == min(scored.values())


def test_an_extractor_is_no_second_opinion_on_itself_and_the_learned_probability_is_its_own() -> None:
    learned = ExtractionResult(extractor="learned", ticket=dict(FAULT), confidence={"problem_type": 0.97})
    opinions = SecondOpinions(rules={"problem_type": "device_fault", "urgent_level": "low"},
                              learned={"problem_type": {"consult": 1.0}})
    record = signal_record(learned, FIELDS, opinions)
    assert record.group == "learned" and record.signals["problem_type"]["learned_disagree"] == 0.0
    assert record.signals["problem_type"]["own_logit"] == pytest.approx(logit(0.97))
    assert record.signals["urgent_level"]["rules_disagree"] == 1.0
    assert DEFAULT.field_confidence(record)["problem_type"] == pytest.approx(0.97, abs=1e-4)
    rules = ExtractionResult(extractor="rules", ticket=dict(FAULT))
    assert signal_record(rules, FIELDS, opinions).signals["problem_type"]["rules_disagree"] == 0.0
    dedupe = ExtractionResult(extractor="dedupe", ticket=dict(FAULT))
    assert signal_record(dedupe, FIELDS, opinions).group == "llm"


def test_logprobs_are_neutral_when_absent_and_count_when_given() -> None:
    attempt = Attempt(1, "m", "valid")
    absent = DEFAULT.field_confidence(signal_record(_llm(attempt), FIELDS, SecondOpinions()))
    sure = DEFAULT.field_confidence(signal_record(
        _llm(attempt, logprob_confidence={"problem_type": 0.999, "urgent_level": 0.3}), FIELDS, SecondOpinions()))
    assert absent["problem_type"] == pytest.approx(sigmoid(2.0), abs=1e-4)
    assert sure["problem_type"] > absent["problem_type"] and sure["urgent_level"] < absent["urgent_level"]


def test_bands_follow_the_autonomy_thresholds() -> None:
    assert [band(c, 0.9, 0.6) for c in (0.95, 0.9, 0.7, 0.6, 0.59)] == ["high", "high", "medium", "medium", "low"]
    assert {band(c, 0.0, 0.0) for c in (0.0, 0.3, 1.0)} == {"high"}  # the shipped thresholds: as today


def test_a_stored_record_reads_back_and_rejects_what_is_not_one() -> None:
    record = signal_record(_llm(Attempt(1, "m", "valid")), FIELDS, SecondOpinions())
    assert SignalRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert SignalRecord.from_json({"group": "robot", "values": {}, "signals": {}}) is None


# --- calibration ---------------------------------------------------------------------------------------------

def _synthetic(rng: random.Random, count: int) -> list[Decision]:
    """LLM decisions whose chance of surviving review falls with re-asks and repairs, as a team would see."""
    decisions = []
    for _ in range(count):
        reasks, repairs = rng.choice((0, 0, 0, 1, 2)), rng.choice((0, 0, 1, 3))
        chance = sigmoid(2.5 - 1.2 * reasks - 0.6 * repairs)
        signals = {name: 0.0 for name in SIGNALS} | {"reasks": float(reasks), "repairs": float(repairs)}
        right = rng.random() < chance
        record = SignalRecord("llm", {"problem_type": "consult"}, {"problem_type": signals})
        decisions.append(Decision(record, {"problem_type": "consult" if right else "other"}, route="general"))
    return decisions


def test_calibration_recovers_the_rate_the_signals_carry_and_beats_the_default() -> None:
    settings = FitSettings(min_labels=50, folds=5, seed=0, target_precision=0.9)  # the best answers: 92% right
    combination, report = calibrate(_synthetic(random.Random(7), 2000), ["problem_type"], settings)
    head = combination.head("problem_type", "llm")
    assert head.weights["reasks"] < -0.8 and head.weights["repairs"] < -0.3
    assert report.ece["ticket"] < 0.03 and report.ece["ticket"] < report.default_ece["ticket"]
    assert report.heads["problem_type/llm"]["fitted"]
    assert report.threshold is not None and report.threshold.precision is not None
    assert report.threshold.precision >= 0.9 and set(report.routes) == {"general"}
    assert 0.3 < report.threshold.coverage < 0.8  # only the clean answers reach it
    assert combination.head("problem_type", "rules") == default_head("rules")  # no rules labels: the default


def test_too_few_labels_keep_the_default_and_one_sided_labels_give_their_rate() -> None:
    settings = FitSettings(min_labels=50, folds=5, seed=0, target_precision=0.95)
    combination, report = calibrate(_synthetic(random.Random(1), 20), ["problem_type"], settings)
    assert not combination.heads and report.notes
    assert constant_head(9, 10).score({"reasks": 3.0}) == pytest.approx(10 / 12)


def test_the_threshold_is_the_lowest_confidence_reaching_the_precision() -> None:
    found = threshold_for([0.99, 0.95, 0.9, 0.8, 0.5], [True, True, True, False, False], 0.95)
    assert (found.threshold, found.coverage, found.precision) == (0.9, 0.6, 1.0)
    assert threshold_for([0.6, 0.5], [False, True], 0.95).threshold is None


# --- storage, and every worker following the newest version ---------------------------------------------------

def test_a_calibration_is_stored_as_numbers_and_every_worker_notices_a_new_one(migrated_database_url: str) -> None:
    clock = ManualClock()
    app = build_app(migrated_database_url, clock=clock)
    try:
        settings = FitSettings(min_labels=50, folds=5, seed=0, target_precision=0.95)
        combination, report = calibrate(_synthetic(random.Random(3), 600), ["problem_type"], settings)
        source = CalibrationSource(app.sessions, clock, poll_seconds=30)
        assert source.current() is DEFAULT  # none stored: the documented default
        version = save_calibration(app.sessions, combination, report, {"reviews": 600}, 41, clock.now(), keep=2,
                                   library={"scikit-learn": "x"})
        loaded = load_calibration(app.sessions, version)
        assert loaded is not None and loaded.version == version and dict(loaded.heads) == dict(combination.heads)
        assert source.current() is DEFAULT  # checked less than poll_seconds ago
        clock.advance(seconds=30)
        assert source.current().version == version
        for _ in range(2):
            save_calibration(app.sessions, combination, report, {}, 41, clock.now(), keep=2, library={})
        assert latest_calibration(app.sessions) == version + 2 and load_calibration(app.sessions, version) is None
    finally:
        app.close()


# --- the worker: scored before the policy, stored, shown ------------------------------------------------------

@pytest.fixture
def api() -> Iterator[FakeMiMo]:
    with FakeMiMo(ok(FAULT), keep_alive=True) as server:
        yield server


def _llm_app(database_url: str, api: FakeMiMo, clock: ManualClock | None = None) -> App:
    built = build_app(database_url, clock=clock or ManualClock(), TRIAGE_EXTRACTOR="llm", MIMO_API_KEY="sk-test",
                      MIMO_BASE_URL=api.base_url, TRIAGE__EXTRACTION__TIMEOUT_SECONDS="5",
                      TRIAGE__EXTRACTION__BATCH_MODE="never", TRIAGE__EXTRACTION__DEDUPE_WINDOW_SECONDS="0",
                      TRIAGE_RATE_LIMIT_RPM="100000")  # a thousand tickets in one window of the loopback server
    celery_for(built)
    recording(built)
    return built


def _counted(band_name: str) -> float:
    return REGISTRY.get_sample_value("triage_confidence_total", {"route": FAULT_ROUTE, "band": band_name}) or 0.0


def test_the_worker_stores_the_confidence_on_the_ticket_its_attempt_and_the_audit(migrated_database_url: str,
                                                                                   api: FakeMiMo) -> None:
    app = _llm_app(migrated_database_url, api)
    try:
        api.script("K-REPAIRED", ok("not json"), ok("```json\n" + json.dumps(FAULT)[:-1] + ",}\n```"))
        api.script("K-CLEAN", ok(FAULT))
        before = _counted("high")
        repaired = submit(app, "r", "K-REPAIRED my router AX3000 keeps dropping Wi-Fi, it is broken")
        clean = submit(app, "c", "K-CLEAN my router AX3000 keeps dropping Wi-Fi, it is broken")
        assert app.celery.tasks[EXTRACT_TASK](repaired) == FAULT_ROUTE
        assert app.celery.tasks[EXTRACT_TASK](clean) == FAULT_ROUTE
        assert _counted("high") == before + 2  # shipped thresholds 0/0: every ticket is high
        with app.sessions() as session:
            tickets = {t.id: t for t in session.scalars(select(Ticket))}
            attempts = list(session.scalars(select(AttemptRow).where(AttemptRow.ticket_id == repaired)
                                            .order_by(AttemptRow.n)))
            routed = session.scalars(select(Event).where(Event.ticket_id == repaired, Event.kind == "routed")).one()
        low, high = tickets[repaired], tickets[clean]
        assert low.field_confidence is not None and set(low.field_confidence) == set(FIELDS)
        assert low.confidence == min(low.field_confidence.values())
        assert high.confidence is not None and 0 < low.confidence < high.confidence <= 1
        assert [(a.outcome, a.confidence) for a in attempts] == [("unparseable", None), ("valid", low.confidence)]
        assert attempts[1].field_confidence == low.field_confidence
        assert routed.after["confidence"] == low.confidence and routed.before["confidence"] is None
        assert low.confidence_signals is not None and low.confidence_signals["group"] == "llm"
        assert low.confidence_signals["signals"]["problem_type"]["reasks"] == 1.0
        # a person's correction keeps what the machine thought
        lifecycle.correct(app.sessions, repaired, "dispatcher", {"problem_type": "consult"}, app.schema, app.router,
                          app.clock.now(), outbox=app.outbox)
        with app.sessions() as session:
            assert session.get_one(Ticket, repaired).confidence == low.confidence
    finally:
        app.close()


def test_a_new_calibration_reaches_the_worker_within_its_poll(migrated_sqlite_url: str, api: FakeMiMo) -> None:
    clock = ManualClock()
    app = _llm_app(migrated_sqlite_url, api, clock)
    try:
        first = submit(app, "1", "K-ONE my router AX3000 is broken")
        app.celery.tasks[EXTRACT_TASK](first)
        sure = Head(6.0, {})  # a calibration that trusts the LLM fully
        report = calibrate([], list(FIELDS), FitSettings(50, 5, 0, 0.95))[1]
        save_calibration(app.sessions, Combination({(f, "llm"): sure for f in FIELDS}), report, {}, 0, clock.now(),
                         keep=5, library={})
        clock.advance(seconds=app.settings.learn.poll_seconds)
        second = submit(app, "2", "K-TWO my router AX3000 is broken")
        app.celery.tasks[EXTRACT_TASK](second)
        with app.sessions() as session:
            confidences = {t.id: t.confidence for t in session.scalars(select(Ticket))}
        assert confidences[second] == round(sigmoid(6.0), 4) != confidences[first]
    finally:
        app.close()


def test_the_api_and_the_listing_show_the_confidence(migrated_database_url: str) -> None:
    with serve(migrated_database_url) as service:
        app = service.parts
        ticket_id = submit(app, "x", "My router AX3000 is broken and it is urgent")
        lease = lifecycle.lease(app.sessions, ticket_id, app.clock.now(), lease_seconds=60)
        assert lease is not None
        result = app.confidence.score(app.rules.extract(lease.conversation), lease.conversation)
        decision = app.router.route(result.ticket or {}, lease.sla_started_at)
        assert lifecycle.finish(app.sessions, lease, result, decision, app.clock.now(), outbox=app.outbox)
        listed = service.client.get("/tickets", headers=bearer("alice")).json()["items"][0]
        detail = service.client.get(f"/tickets/{ticket_id}", headers=bearer("alice")).json()
        assert listed["confidence"] == result.ticket_confidence
        assert listed["field_confidence"] == result.field_confidence
        assert detail["ticket"]["confidence"] == result.ticket_confidence
        assert 0 < (result.ticket_confidence or 0) < 1


# --- triage calibrate on 1,000 seeded scripted reviews ---------------------------------------------------------

#: Each kind of scripted answer, how often it comes, and how often the machine's problem_type then survives review
#: (clean answers are the most common, as with a real model; a re-ask costs a second call).
KINDS = {"clean": (0.6, 0.95), "repaired": (0.2, 0.75), "reask": (0.1, 0.55), "ambiguous": (0.1, 0.3)}
REVIEWS = 1000


def _answer(kind: str, ticket: dict[str, Any]) -> list[Any]:
    text = json.dumps(ticket)
    if kind == "clean":
        return [ok(ticket)]
    if kind == "repaired":
        return [ok("```json\n" + text[:-1] + ",}\n```")]
    if kind == "reask":
        return [ok("I think it is a device fault"), ok(ticket)]
    other = {**ticket, "problem_type": "other" if ticket["problem_type"] != "other" else "consult"}
    return [ok(text + "\n" + json.dumps(other)), ok(ticket)]


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**clean_environ(), "TRIAGE_CONFIG": str(CONFIG_PATH), "TRIAGE_DATABASE_URL": database_url,
           "TRIAGE_BROKER_URL": "memory://", "TRIAGE_EXTRACTOR": "rules"}
    return subprocess.run([sys.executable, "-m", "triage", *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.e2e  # a thousand tickets through the real worker task: about 30 s, so in make e2e
def test_calibrate_on_a_thousand_seeded_scripted_reviews_is_calibrated(migrated_sqlite_url: str,
                                                                        api: FakeMiMo) -> None:
    rng = random.Random(20)
    app = _llm_app(migrated_sqlite_url, api)
    try:
        truth: dict[int, str] = {}
        for n in range(REVIEWS):
            kind = rng.choices(list(KINDS), weights=[share for share, _ in KINDS.values()])[0]
            answer = {**FAULT, "problem_type": rng.choice(PROBLEMS)}
            key = f"K{n:04d}X"
            api.script(key, *_answer(kind, answer))
            ticket_id = submit(app, key, f"{key} hello, something is wrong and I need help")
            app.celery.tasks[EXTRACT_TASK](ticket_id)
            right = rng.random() < KINDS[kind][1]
            truth[ticket_id] = answer["problem_type"] if right else rng.choice(
                [p for p in PROBLEMS if p != answer["problem_type"]])
        with app.sessions() as session:
            stored = {t.id: (t.fields or {}).get("problem_type") for t in session.scalars(select(Ticket))}
        for ticket_id, label in truth.items():  # the desk: confirm what is right, correct what is not
            if stored[ticket_id] == label:
                lifecycle.resolve(app.sessions, ticket_id, "dispatcher", app.clock.now(), outbox=app.outbox)
            else:
                lifecycle.correct(app.sessions, ticket_id, "dispatcher", {"problem_type": label}, app.schema,
                                  app.router, app.clock.now(), outbox=app.outbox)
    finally:
        app.close()
    done = _cli(migrated_sqlite_url, "calibrate", "--json")
    assert done.returncode == 0, done.stderr
    assert "fitting held-out folds" in done.stderr  # progress shown
    report = json.loads(done.stdout)
    assert report["version"] == 1 and report["sources"] == {"reviews": REVIEWS}
    assert report["heads"]["problem_type/llm"]["fitted"] and report["heads"]["problem_type/llm"]["labels"] == REVIEWS
    assert report["ece"]["ticket"] < 0.1  # the bar, held out
    assert report["ece"]["problem_type"] < report["default_ece"]["problem_type"]
    assert report["threshold"]["precision"] is None or report["threshold"]["precision"] >= 0.95
    listed = _cli(migrated_sqlite_url, "tickets", "--json", "--limit", "1")
    row = json.loads(listed.stdout.splitlines()[0])
    assert 0 <= row["confidence"] <= 1 and set(row["field_confidence"]) == set(FIELDS)
    # the confidence the stored calibration now gives a clean answer is about the clean answers' review rate
    calibrated = load_calibration_head(migrated_sqlite_url)
    assert math.isclose(calibrated, KINDS["clean"][1], abs_tol=0.05)


def load_calibration_head(database_url: str) -> float:
    app = build_app(database_url)
    try:
        combination = load_calibration(app.sessions)
        assert combination is not None
        clean = {name: 0.0 for name in SIGNALS}
        return combination.head("problem_type", "llm").score(clean | {"rules_disagree": 1.0})
    finally:
        app.close()


def test_calibrate_on_a_labelled_data_set_fits_the_offline_extractors(migrated_sqlite_url: str) -> None:
    app = build_app(migrated_sqlite_url, clock=ManualClock(), TRIAGE__CALIBRATE__MIN_LABELS="20")
    try:
        out, err = io.StringIO(), io.StringIO()
        assert calibrate_command(app, ["bitext"], data=FIXTURES, as_json=True, out=out, err=err) == 0, err.getvalue()
        report = json.loads(out.getvalue())
        assert report["sources"] == {"bitext": 192}  # 96 rows, decided by the rules and by the learned extractor
        assert report["heads"]["problem_type/rules"]["fitted"] and report["heads"]["problem_type/learned"]["fitted"]
        assert "bitext learned [" in err.getvalue() and "fitting held-out folds" in err.getvalue()
        combination = load_calibration(app.sessions)
        assert combination is not None and ("problem_type", "rules") in combination.heads
        assert calibrate_command(app, ["nowhere.jsonl"], out=out, err=err) == 2
        assert "cannot read the data set" in err.getvalue()
    finally:
        app.close()


def test_calibrate_without_anything_to_learn_from_says_what_to_do(migrated_sqlite_url: str) -> None:
    done = _cli(migrated_sqlite_url, "calibrate")
    assert done.returncode == 2 and "nothing to calibrate on" in done.stderr and "JSON Lines" in done.stderr
    assert _cli(migrated_sqlite_url, "calibrate", "--help").returncode == 0


def test_the_scheduled_calibration_waits_for_enough_new_reviews(migrated_sqlite_url: str) -> None:
    app = build_app(migrated_sqlite_url, clock=ManualClock(), TRIAGE__CALIBRATE__MIN_NEW_LABELS="10")
    try:
        assert (scheduled.calibrate(app, holder="a")
                == "calibrate: 0 new reviews since the last calibration, refitting at 10")
        for n in range(12):
            ticket_id = submit(app, f"s{n}", "My router AX3000 is broken" if n % 2 else "How do I pay my bill?")
            lease = lifecycle.lease(app.sessions, ticket_id, app.clock.now(), lease_seconds=60)
            assert lease is not None
            result = app.confidence.score(app.rules.extract(lease.conversation), lease.conversation)
            lifecycle.finish(app.sessions, lease, result, app.router.route(result.ticket or {}, lease.sla_started_at),
                             app.clock.now(), outbox=app.outbox)
            lifecycle.resolve(app.sessions, ticket_id, "dispatcher", app.clock.now(), outbox=app.outbox)
        app.clock.advance(hours=7)  # past the lock of the first run
        assert scheduled.calibrate(app, holder="a").startswith("calibrate: stored v1 (12 reviewed decisions")
        app.clock.advance(hours=7)
        assert scheduled.calibrate(app, holder="a").startswith("calibrate: 0 new reviews")
    finally:
        app.close()
