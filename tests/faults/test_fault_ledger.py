"""Fault survival: N conversations through real processes while something breaks, then the ledger.

Every test submits ``TRIAGE_FAULTS_N`` conversations (default 500) with ``triage submit`` to a
running fleet (PostgreSQL, a Redis of its own with the append-only file on, ``triage worker``,
``triage beat``, the loopback MiMo), injects its fault while the work is in flight, waits for
quiescence and checks the ledger: each conversation ends exactly once as ``routed`` or
``needs_review``; none missing, none twice, none extracted after it finished.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from tests.fakeapi import CHAOS_KINDS, Chaos, FakeMiMo, raw
from tests.faults.fleet import (
    DEFAULT_SWEEP,
    MARKER,
    SOURCE,
    Fleet,
    FleetFactory,
    Ledger,
    conversation_rows,
    fault_count,
    marker_id,
    pg_ctlcluster,
    postgres_restored,
    require_pg_ctlcluster,
    wait_until,
)
from triage.conversation import Conversation
from triage.intake.receive import submit

SEED = int(os.environ.get("TRIAGE_FAULTS_SEED", "20261125"))
KILLS = 5
#: Seconds the fake API takes per answer in the kill tests, so that a kill lands mid-task.
LATENCY = 0.05
#: A killed worker's tickets are extracted again within this long (the issue's contract): the lease (60 s)
#: runs out, the next sweep (every 15 s) takes them back, a worker extracts them.
RECOVERY_BOUND_SECONDS = 90


def _assert_ledger(ledger: Ledger, run: Fleet) -> None:
    assert not ledger.problems, f"{ledger.line()}\n{run.logs_tail()}"


def _assert_recovered_in_time(ledger: Ledger) -> None:
    recovery = ledger.details.get("recovery_max_seconds")
    assert recovery is not None, f"no ticket was held at any kill: {ledger.details.get('held_at_faults')}"
    assert recovery <= RECOVERY_BOUND_SECONDS, f"a killed worker's ticket took {recovery}s to finish: {ledger.line()}"


def _kill_loop(run: Fleet, kill: Callable[[], None], n: int, kills: int, rng: random.Random) -> int:
    """Call ``kill()`` up to ``kills`` times in the first part of the run, each time once the fleet
    has finished a random number of tickets since the last kill (steady state, not a cold start)
    and at a moment when a ticket claimed in the last 0.3 s is in a worker's hands (mid-task)."""
    done = 0
    while done < kills:
        base = run.finished()
        target = min(n - 1, base + rng.randint(5, max(6, n // (kills * 3))))
        if base >= n - 1 or not wait_until(lambda target=target: run.finished() >= target, 90):
            break
        if not wait_until(lambda: run.claimed_since(datetime.now(UTC) - timedelta(seconds=0.3)) > 0, 30, 0.02):
            break
        run.mark_fault()
        kill()
        done += 1
    return done


def test_worker_process_killed_with_sigkill_repeatedly(fleet: FleetFactory, record_ledger: Any) -> None:
    """kill -9 of the threads-pool worker process mid-task, again and again, restarting it each time."""
    n, rows, rng = fault_count(), conversation_rows(fault_count()), random.Random(SEED)
    with FakeMiMo(latency=LATENCY) as api:
        run = fleet("kill -9 worker process", api.base_url, **DEFAULT_SWEEP)
        worker = run.worker()
        run.beat()
        run.submit(rows)

        kills = _kill_loop(run, worker.kill9, n, KILLS, rng)
        wall = run.wait_all_finished(n)
        ledger = run.ledger(api, rows, wall, {"worker_kill9": kills})
    record_ledger(ledger)
    assert kills == KILLS, f"only {kills} kills landed mid-task: the run finished too fast for the fault"
    _assert_ledger(ledger, run)
    _assert_recovered_in_time(ledger)


def test_pool_child_killed_with_sigkill_repeatedly(fleet: FleetFactory, record_ledger: Any) -> None:
    """kill -9 of a prefork pool child mid-task, again and again (Celery replaces the child)."""
    n, rows, rng = fault_count(), conversation_rows(fault_count()), random.Random(SEED + 1)
    with FakeMiMo(latency=LATENCY) as api:
        run = fleet("kill -9 pool child (prefork)", api.base_url, **DEFAULT_SWEEP)
        pool = run.prefork_worker(concurrency=2)
        run.beat()
        run.submit(rows)
        killed: list[int] = []

        def kill_child() -> None:
            assert wait_until(lambda: len(pool.children()) >= 1, 20), "the prefork worker has no pool children"
            child = rng.choice(pool.children())
            os.kill(child, signal.SIGKILL)
            killed.append(child)

        kills = _kill_loop(run, kill_child, n, KILLS + 3, rng)
        wall = run.wait_all_finished(n)
        lost_workers = pool.log().count("exited with 'signal 9 (SIGKILL)'")
        ledger = run.ledger(api, rows, wall, {"pool_child_kill9": kills, "worker_lost_errors": lost_workers})
    record_ledger(ledger)
    assert kills == KILLS + 3, f"only {kills} kills landed mid-task: the run finished too fast for the fault"
    _assert_ledger(ledger, run)
    _assert_recovered_in_time(ledger)


def test_redis_restarted_mid_run(fleet: FleetFactory, record_ledger: Any) -> None:
    """The broker restarts twice: cleanly while conversations are being submitted, then killed -9
    while they are processed. Its append-only file (fsync always) keeps the queued messages.

    Processes are supervised as in docker-compose (``restart: unless-stopped``): a worker that
    exits on the broker's loss is started again, and its exits are listed in the ledger line.
    """
    n, rows = fault_count(), conversation_rows(fault_count())
    with FakeMiMo(latency=LATENCY) as api:
        run = fleet("Redis restarted (AOF)", api.base_url)
        run.worker()
        run.beat()
        run.submit(rows)
        injected: dict[str, Any] = {}
        if wait_until(lambda: run.stored() >= n // 4, 60):
            injected["restart_1_at_stored"] = run.stored()
            run.mark_fault()
            run.redis.restart(down_seconds=3)
        if wait_until(lambda: run.finished() >= n // 2, 120):
            injected["restart_2_at_finished"] = run.finished()
            run.mark_fault()
            run.redis.restart(crash=True, down_seconds=3)
        injected["redis_restarts"] = run.redis.restarts
        wall = run.wait_all_finished(n)
        ledger = run.ledger(api, rows, wall, injected)
    record_ledger(ledger)
    assert run.redis.restarts == 2, f"the run did not reach both restart points: {injected}"
    _assert_ledger(ledger, run)


def test_postgres_restarted_mid_run(fleet: FleetFactory, record_ledger: Any) -> None:
    """The shared PostgreSQL cluster restarts twice mid-run (fast, then immediate shutdown mode);
    it is running again afterwards whatever happens."""
    require_pg_ctlcluster()
    n, rows = fault_count(), conversation_rows(fault_count())
    with FakeMiMo(latency=LATENCY) as api, postgres_restored():
        run = fleet("PostgreSQL restarted", api.base_url)
        run.worker()
        run.beat()
        run.submit(rows)
        injected: dict[str, Any] = {"postgres_restarts": 0}
        for share, mode in ((4, "fast"), (2, "immediate")):
            target = n // share
            if not wait_until(lambda target=target: run.finished() >= target, 120):
                break
            injected[f"restart_{mode}_at_finished"] = run.finished()
            run.mark_fault()
            done = pg_ctlcluster("restart", "--mode", mode)
            assert done.returncode == 0, done.stderr
            injected["postgres_restarts"] += 1
        wall = run.wait_all_finished(n)
        ledger = run.ledger(api, rows, wall, injected)
    record_ledger(ledger)
    assert injected["postgres_restarts"] == 2, f"the run did not reach both restart points: {injected}"
    _assert_ledger(ledger, run)


def test_api_chaos(fleet: FleetFactory, record_ledger: Any) -> None:
    """The API answers a seeded mix of 429, 500, 503, hangs past the timeout, non-JSON, truncated
    and schema-invalid answers, and broken bodies; every conversation still ends exactly once."""
    n, rows = fault_count(), conversation_rows(fault_count())
    chaos = Chaos(seed=SEED, hang_seconds=3.0)
    with FakeMiMo(chaos=chaos) as api:
        run = fleet("API chaos", api.base_url)
        run.worker()
        run.beat()
        run.submit(rows)
        wall = run.wait_all_finished(n)
        ledger = run.ledger(api, rows, wall, {"answers": dict(api.kinds())})
    record_ledger(ledger)
    assert set(api.kinds()) == set(CHAOS_KINDS), f"not every fault was drawn: {api.kinds()}"
    _assert_ledger(ledger, run)


BROKEN_BODIES = {
    "[BODY-HTML-1]": raw("<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
    "[BODY-HTML-2]": raw("<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
    "[BODY-CUT-1]": raw('{"id": "chatcmpl-fake", "object": "chat.completion", "choices": [{"in'),
    "[BODY-CUT-2]": raw('{"id": "chatcmpl-fake", "object": "chat.completion", "choices": [{"in'),
}


def test_api_answering_broken_bodies_ends_in_review_as_retries_exhausted(
        fleet: FleetFactory, record_ledger: Any) -> None:
    """An API that always answers 200 with an HTML page or a cut-off JSON body is an API error:
    retried, then the fallback queue with ``retries_exhausted``, every call stored as an attempt."""
    rows = [{"source": SOURCE, "external_id": marker.strip("[]"), "text": f"My router is broken {marker}"}
            for marker in BROKEN_BODIES]
    with FakeMiMo() as api:
        for marker, reply in BROKEN_BODIES.items():
            api.script(marker, reply)
        run = fleet("API broken bodies", api.base_url)
        run.worker()
        run.beat()
        run.submit(rows)
        wall = run.wait_all_finished(len(rows), timeout=30)
        ledger = run.ledger(api, rows, wall, {"answers": dict(api.kinds())}, settle=0)
        with run.stack.engine.connect() as conn:
            ends = conn.execute(text(
                "SELECT c.external_id, t.status, t.fallback_reason, "
                "(SELECT count(*) FROM attempts a WHERE a.ticket_id = t.id AND a.outcome = 'api_error') "
                "FROM tickets t JOIN conversations c ON c.id = t.conversation_id")).all()
    record_ledger(ledger)
    assert not ledger.problems, ledger.line()
    for external_id, status, reason, api_errors in ends:
        assert (status, reason) == ("needs_review", "retries_exhausted"), (external_id, status, reason)
        assert api_errors >= 1, f"{external_id}: the broken answers were not stored as attempts"


SWEEP_RESULT = re.compile(r"Task triage\.sweep_stuck\[[^\]]+\] succeeded in [\d.]+s: '([^']*)'")
SWEEP_SENT = "Sending due task sweep-stuck"


def test_two_beats_started_at_once_run_each_sweep_once(fleet: FleetFactory, record_ledger: Any) -> None:
    """Two ``triage beat`` processes fire the same schedule: every stuck ticket is re-enqueued once
    (``requeue_count`` 1) and extracted once, and each sweep slot runs once (the other is skipped)."""
    n, rows = fault_count(), conversation_rows(fault_count())
    with FakeMiMo() as api:
        # A threshold far above the time to drain the queue: "once per threshold" means once here.
        run = fleet("two beats at once", api.base_url, TRIAGE__WORKER__STUCK_AFTER_SECONDS="90")
        for row in rows:  # stored, never published: lost messages only a sweep can recover
            submit(run.stack.sessions, SOURCE, row["external_id"], Conversation.from_text(row["text"]),
                   datetime.now(UTC))
        with run.stack.engine.begin() as conn:
            conn.execute(text("UPDATE tickets SET updated_at = now() - interval '1 hour'"))
        worker = run.worker()
        assert wait_until(lambda: " ready." in worker.log(), 60), run.logs_tail()
        run.started_at = time.monotonic()
        beats = [run.beat("beat-a"), run.beat("beat-b")]
        wall = run.wait_all_finished(n)
        ledger = run.ledger(api, rows, wall, {"beats": len(beats)})
        for beat in beats:
            beat.stop()
        worker.stop()
        with run.stack.engine.connect() as conn:
            requeues = Counter(r[0] for r in conn.execute(text("SELECT requeue_count FROM tickets")))
        calls = Counter({marker_id(m): len(t) for m, t in api.times_by_marker(MARKER).items()})
    sent = sum(beat.log().count(SWEEP_SENT) for beat in beats)
    results = SWEEP_RESULT.findall(worker.log())
    ran = [r for r in results if "skipped" not in r]
    requeued = sum(int(m.group(1)) for r in ran if (m := re.search(r"(\d+) re-enqueued", r)))
    ledger.details |= {"sweeps_sent": sent, "sweeps_ran": len(ran), "sweeps_skipped": len(results) - len(ran),
                       "requeue_counts": dict(requeues), "re_enqueued_by_sweeps": requeued}
    record_ledger(ledger)
    _assert_ledger(ledger, run)
    assert requeues == Counter({1: n}), f"requeue_count per ticket (want 1 for all {n}): {dict(requeues)}"
    assert calls == Counter(dict.fromkeys((row["external_id"] for row in rows), 1)), \
        f"API calls per ticket (want exactly 1 each): {Counter(calls.values())}"
    assert requeued == n, f"the sweeps re-enqueued {requeued} tickets in all, want {n}: {ran}"
    assert sent >= 4, f"the two beats sent only {sent} sweeps"
    assert len(ran) <= sent // 2 + 1, f"{len(ran)} of {sent} sweeps ran: a slot ran twice ({results})"
