"""The heartbeat on the app's clock: a worker that lives keeps its lease through a long LLM call, a killed one's
ticket is free once the lease runs out, a lost claim ends the heartbeat. No sleeps: the waiting is injected.

One end-to-end run checks the same in real processes: a worker whose LLM call lasts four lease lengths,
with beat sweeping four times a lease, keeps its ticket (one API call, never taken back)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.factories import ManualClock, build_app, submit
from tests.fakeapi import VALID_TICKET, FakeMiMo, hang, ok
from tests.harness import Stack
from triage.app import App
from triage.settings import SettingsError
from triage.store.models import Event, Ticket
from triage.tickets import lifecycle
from triage.worker.heartbeat import Heartbeat, beat_until_stopped

LEASE, HEARTBEAT = 60.0, 20.0
#: A long LLM call: ten minutes (every attempt timing out, say), ten lease lengths.
LONG_CALL_SECONDS = 600


def _lease(app: App, external_id: str) -> lifecycle.Lease:
    lease = lifecycle.lease(app.sessions, submit(app, external_id), app.clock.now(), LEASE)
    assert lease is not None
    return lease


def _renew(app: App, lease: lifecycle.Lease) -> bool:
    return lifecycle.renew(app.sessions, lease, app.clock.now(), LEASE)


def _takeover(app: App, lease: lifecycle.Lease) -> lifecycle.Lease | None:
    """Another worker (a redelivered message) trying to claim the same ticket now."""
    return lifecycle.lease(app.sessions, lease.ticket_id, app.clock.now(), LEASE)


def test_the_settings_default_to_a_minute_renewed_every_twenty_seconds(app: App) -> None:
    worker = app.settings.worker
    assert (worker.lease_seconds, worker.heartbeat_seconds, worker.sweep_interval_seconds) == (60, 20, 15)
    assert worker.stuck_after_seconds == 900
    assert app.lease_seconds == worker.lease_seconds


@pytest.mark.parametrize(("heartbeat", "lease"), [("60", "60"), ("90", "60")])
def test_a_heartbeat_not_shorter_than_the_lease_stops_start_up(sqlite_url: str, heartbeat: str, lease: str) -> None:
    with pytest.raises(SettingsError, match=r"worker\.heartbeat_seconds=\d+ must be shorter than "
                                            r"worker\.lease_seconds=60"):
        build_app(sqlite_url, TRIAGE__WORKER__HEARTBEAT_SECONDS=heartbeat,
                  TRIAGE__WORKER__LEASE_SECONDS=lease)


def test_a_living_worker_keeps_its_lease_through_a_long_call(app: App, clock: ManualClock) -> None:
    lease = _lease(app, "long-call")
    takeovers: list[lifecycle.Lease | None] = []

    def wait(seconds: float) -> bool:
        """The time between two beats passes on the app's clock; meanwhile someone tries to take the ticket."""
        clock.advance(seconds=seconds)
        takeovers.append(_takeover(app, lease))
        return len(takeovers) * HEARTBEAT >= LONG_CALL_SECONDS

    beats = beat_until_stopped(lambda: _renew(app, lease), HEARTBEAT, wait)
    assert beats == LONG_CALL_SECONDS / HEARTBEAT - 1
    assert takeovers == [None] * len(takeovers), "nobody could take the ticket while its worker lived"
    assert _renew(app, lease), "and the claim still holds at the end"


def test_a_killed_workers_ticket_is_free_once_the_lease_runs_out(app: App, clock: ManualClock) -> None:
    lease = _lease(app, "killed")
    beats = iter([False, False, True])  # two beats, then the process dies: no more renewals
    beat_until_stopped(lambda: _renew(app, lease), HEARTBEAT,
                       lambda seconds: next(beats) or clock.advance(seconds=seconds) is None)
    assert _takeover(app, lease) is None
    clock.advance(seconds=LEASE - 1)
    assert _takeover(app, lease) is None, "the last renewal still runs"
    clock.advance(seconds=2)
    assert _takeover(app, lease) is not None


def test_a_lost_claim_ends_the_heartbeat(app: App, clock: ManualClock) -> None:
    lease = _lease(app, "reprocessed")
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        if len(waits) == 2:  # a person reprocesses the ticket between two beats: a new run, a new lease
            lifecycle.reprocess(app.sessions, lease.ticket_id, "alice", clock.now(), outbox=app.outbox)
        return False

    assert beat_until_stopped(lambda: _renew(app, lease), HEARTBEAT, wait) == 1
    assert waits == [HEARTBEAT, HEARTBEAT]


def test_a_failed_renewal_is_tried_again_at_the_next_beat() -> None:
    answers: Iterator[bool] = iter([True, False])
    calls: list[str] = []

    def renew() -> bool:
        calls.append("renew")
        if len(calls) == 2:
            raise ConnectionError("database restarting")
        return next(answers)

    assert beat_until_stopped(renew, HEARTBEAT, lambda seconds: False) == 1
    assert calls == ["renew"] * 3


def test_the_heartbeat_thread_stops_when_the_work_ends() -> None:
    renewals: list[str] = []
    with Heartbeat(lambda: renewals.append("renew") is None, interval_seconds=3600) as heartbeat:
        assert heartbeat.running
    assert not heartbeat.running, "leaving the block stops the thread at once, mid-wait"
    assert renewals == []


#: The end-to-end run's timings: a call four times the lease, a sweep four times per lease.
E2E_LEASE, E2E_HEARTBEAT, E2E_SWEEP, E2E_CALL = "1", "0.25", "0.25", 4.0


def test_a_long_llm_call_keeps_its_lease_in_a_real_worker(tmp_path: Path) -> None:
    with FakeMiMo() as api:
        api.script("[LONG-CALL]", hang(E2E_CALL, ok(VALID_TICKET)))
        stack = Stack(f"sqlite:///{tmp_path / 'triage.sqlite3'}", f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
                      api.base_url, {"TRIAGE__WORKER__LEASE_SECONDS": E2E_LEASE,
                                     "TRIAGE__WORKER__HEARTBEAT_SECONDS": E2E_HEARTBEAT,
                                     "TRIAGE__WORKER__SWEEP_INTERVAL_SECONDS": E2E_SWEEP,
                                     "TRIAGE__EXTRACTION__TIMEOUT_SECONDS": "10"})
        stack.migrate()
        with stack.worker("--concurrency", "2"), \
                stack.process("beat", "--schedule", str(tmp_path / "beat-schedule"), "--loglevel", "INFO"):
            [line] = stack.submit([{"source": "it", "external_id": "long", "text": "Router broken [LONG-CALL]"}])
            stack.wait_finished([line["ticket_id"]], timeout=60)
        try:
            with stack.sessions() as session:
                ticket = session.get_one(Ticket, line["ticket_id"])
                kinds = list(session.scalars(select(Event.kind).where(Event.ticket_id == ticket.id)))
                status, requeues = ticket.status, ticket.requeue_count
        finally:
            stack.close()
    assert stack.logs["beat"].count("Sending due task sweep-stuck") >= 8, "beat swept during the call"
    assert (status, requeues, kinds) == ("routed", 0, ["routed"])
    assert len(api.requests_for("[LONG-CALL]")) == 1, "the ticket was never taken from its living worker"
