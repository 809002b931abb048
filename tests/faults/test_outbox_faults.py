"""The outbox under faults: N Zendesk conversations are routed and then corrected by a person, while
the worker of the ``deliveries`` queue is killed with ``kill -9`` again and again and the loopback
Zendesk restarts twice. The ledger: every decision delivered exactly once in effect.

- **write-back**: each ticket ends on Zendesk with the correction's group, priority and tags (the
  agents' own tags kept, the routed decision's tags gone); each write-back that ran posted its
  note exactly once (its ``triage delivery <id>`` marker appears once); none failed or was lost;
- **events**: every ``ticket.routed`` and ``ticket.corrected`` delivery reached the receiver (its
  ``webhook-id`` seen, the signature verified by the reference library); a redelivery of the same
  id is allowed (receivers de-duplicate on it) and counted.
"""

from __future__ import annotations

import random
import re
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.fakeapi import FakeMiMo
from tests.fakehelpdesks import FakeEventsReceiver, FakeZendesk
from tests.faults.fleet import Fleet, FleetFactory, Ledger, fault_count, fault_deadline, wait_until
from tests.faults.test_fault_ledger import SEED
from tests.writeback_cases import AGENT_TAGS, ZENDESK, Endpoint, config_file
from triage.app import App
from triage.conversation import Conversation
from triage.intake.receive import PlatformIds, receive
from triage.settings import load_settings
from triage.tickets import lifecycle

EMAIL, TOKEN = "bot@acme.test", "zd-secret-token-1"
ESCALATION: dict[str, Any] = {"problem_type": "device_fault", "device_model": None, "urgent_level": "high",
                              "user_requirements": []}
ESCALATION_TAGS = ["triage-hw", "triage_hardware-escalation", "triage_p1"]
EVENTS = ("ticket.routed", "ticket.corrected")
MARKER = re.compile(r"triage delivery (dlv_[0-9a-f]{32})")
#: kill -9 of the deliveries worker per phase (routing, corrections), and Zendesk's time away per restart.
KILLS_PER_PHASE = 3
DOWN_SECONDS = 3.0
#: Seconds each Zendesk answer takes, so a kill lands while deliveries are in a worker's hands.
LATENCY = 0.02


def _zendesk_id(n: int) -> str:
    return str(100_000 + n)


def _delivering(run: Fleet) -> int:
    """Deliveries a worker took in the last 0.3 s and still holds."""
    with run.stack.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM deliveries WHERE status = 'delivering' AND updated_at > :t"),
                                {"t": datetime.now(UTC) - timedelta(seconds=0.3)}).scalar_one())


def _writebacks(run: Fleet, topic: str) -> Counter[str]:
    with run.stack.engine.connect() as conn:
        return Counter(dict(conn.execute(text(
            "SELECT status, count(*) FROM deliveries WHERE kind = 'writeback' AND topic = :topic GROUP BY status"),
            {"topic": topic}).all()))


def _routed(run: Fleet) -> int:
    with run.stack.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM tickets WHERE status = 'routed'")).scalar_one())


def _unfinished(run: Fleet) -> int:
    with run.stack.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'delivering')")).scalar_one())


def _kill_while_delivering(run: Fleet, kills: int, until: Any) -> int:
    """``kill -9`` the deliveries worker up to ``kills`` times, each when it holds deliveries, before ``until()``."""
    done = 0
    while done < kills and not until():
        if wait_until(lambda: _delivering(run) > 0 or until(), 60, 0.01) and not until():
            run.services["deliveries"].kill9()
            done += 1
            time.sleep(random.Random(SEED + done).uniform(1.0, 3.0))  # let the restarted worker take work again
    return done


def test_outbox_delivers_every_decision_once_while_its_worker_is_killed_and_zendesk_restarts(
        fleet: FleetFactory, record_ledger: Any, tmp_path: Path) -> None:
    n = fault_count()
    with FakeMiMo() as api, FakeZendesk(email=EMAIL, token=TOKEN) as zendesk, \
            FakeEventsReceiver(Endpoint("", ()).secret) as receiver:
        zendesk.latency = LATENCY
        for i in range(n):
            zendesk.ticket(_zendesk_id(i), tags=list(AGENT_TAGS))
        config = config_file(tmp_path, ZENDESK.toml, endpoints=[Endpoint(receiver.url, EVENTS)])
        run = fleet("outbox: kill -9 of the deliveries worker, Zendesk restarted", api.base_url,
                    TRIAGE_CONFIG=str(config), TRIAGE_EXTRACTOR="rules", **ZENDESK.env(zendesk.base_url))
        python = [sys.executable, "-m", "triage", "worker", "--loglevel", "INFO"]
        run.service("worker", [*python, "--queues", "triage,fallback"])
        run.service("deliveries", [*python, "--queues", "deliveries"])
        run.beat()
        app = App.build(load_settings(run.stack.env))  # intake and the person's corrections, publishing to Redis
        injected: dict[str, Any] = {}
        try:
            run.started_at = time.monotonic()
            ids = []
            for i in range(n):
                key = _zendesk_id(i)
                received = receive(app.sessions, "zendesk", key, Conversation.from_text(f"My router is broken #{i}"),
                                   [f"message:{key}:1"], app.clock.now(), platform=PlatformIds(key, ZENDESK.account_id),
                                   outbox=app.outbox)
                app.publisher.extraction(received.ticket_id)
                ids.append(received.ticket_id)

            def routed_written() -> bool:
                return _writebacks(run, "routed")["delivered"] >= n and _unfinished(run) == 0

            if wait_until(lambda: _writebacks(run, "routed")["delivered"] >= n // 5, 120):
                zendesk.restart(DOWN_SECONDS)
            injected["kills_routing"] = _kill_while_delivering(run, KILLS_PER_PHASE, routed_written)
            assert wait_until(lambda: _routed(run) >= n and routed_written(), fault_deadline(), 0.5), run.logs_tail()

            for ticket_id in ids:  # a person moves every ticket to hardware-escalation, P1
                now = app.clock.now()
                lifecycle.correct(app.sessions, ticket_id, "alice", ESCALATION, app.schema, app.router, now,
                                  outbox=app.outbox)

            def corrections_written() -> bool:
                return sum(_writebacks(run, "corrected").values()) >= n and _unfinished(run) == 0

            if wait_until(lambda: _writebacks(run, "corrected")["delivered"] >= n // 5, 120):
                zendesk.restart(DOWN_SECONDS)
            injected["kills_corrections"] = _kill_while_delivering(run, KILLS_PER_PHASE, corrections_written)
            wait_until(corrections_written, fault_deadline(), 0.5)
            wall = time.monotonic() - run.started_at
            time.sleep(3)  # late redeliveries and sweeps get their chance
        finally:
            app.close()
        injected["zendesk_restarts"] = zendesk.restarts
        ledger = _ledger(run, zendesk, receiver, n, wall, injected)
    record_ledger(ledger)
    assert injected["kills_routing"] + injected["kills_corrections"] == 2 * KILLS_PER_PHASE, injected
    assert zendesk.restarts == 2, injected
    assert not ledger.problems, f"{ledger.line()}\n{run.logs_tail()}"


def _ledger(run: Fleet, zendesk: FakeZendesk, receiver: FakeEventsReceiver, n: int, wall: float,
            injected: dict[str, Any]) -> Ledger:
    with run.stack.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, kind, topic, status, attempts FROM deliveries")).all()
    writebacks = [row for row in rows if row.kind == "writeback"]
    events = [row for row in rows if row.kind == "event"]
    statuses = Counter((row.topic, row.status) for row in rows)
    markers = Counter(match for ticket in zendesk.tickets.values() for note in ticket.notes
                      for match in MARKER.findall(note.body))
    ran = {row.id for row in writebacks if row.status == "delivered"}
    wrong_state = [key for key, ticket in zendesk.tickets.items()
                   if (ticket.group, ticket.priority) != ZENDESK.escalation_p1
                   or sorted(ticket.tags) != sorted(AGENT_TAGS + ESCALATION_TAGS)]
    notes_missing = sorted(ran - set(markers))
    notes_twice = sorted(delivery for delivery, count in markers.items() if count > 1)
    notes_stray = sorted(set(markers) - ran)
    seen = Counter(received.headers["webhook-id"] for received in receiver.received)
    events_missing = sorted({row.id for row in events} - set(seen))
    corrections = [row for row in writebacks if row.topic == "corrected"]
    undelivered = [row.id for row in corrections if row.status != "delivered"]
    unfinished = [row.id for row in rows if row.status not in ("delivered", "superseded")]
    problems = []
    if len(corrections) != n or len([row for row in events if row.topic == "ticket.corrected"]) != n:
        problems.append(f"{len(corrections)} correction write-backs and events recorded for {n} corrections")
    for name, found in (("tickets in the wrong state on Zendesk", wrong_state),
                        ("correction write-backs not delivered", undelivered),
                        ("deliveries neither delivered nor superseded", unfinished),
                        ("delivered write-backs without their note", notes_missing),
                        ("notes posted twice", notes_twice), ("notes of write-backs that did not run", notes_stray),
                        ("event deliveries never received", events_missing)):
        if found:
            problems.append(f"{len(found)} {name}, e.g. {found[:5]}")
    details = {"deliveries": len(rows), "by_topic_and_status": {f"{t}/{s}": c for (t, s), c in statuses.items()},
               "attempts": sum(row.attempts for row in rows), "zendesk_requests": len(zendesk.requests),
               "event_requests": len(receiver.requests), "event_redeliveries": sum(seen.values()) - len(seen),
               "signatures_rejected": receiver.rejected, "injected": injected}
    lost = len(set(wrong_state) | set(undelivered) | set(notes_missing) | set(events_missing))
    return Ledger(run.name, submitted=2 * n, routed=len(ran), needs_review=0, lost=lost,
                  duplicated=len(notes_twice) + len(notes_stray), wall_seconds=round(wall, 1), details=details,
                  problems=problems)
