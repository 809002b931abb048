"""``triage demo``: the whole pipeline on a fresh clone, with no servers.

Migrates the (SQLite) database, starts ``triage worker`` as a child process, submits the
bundled sample conversations, waits for every ticket to finish, prints them, stops the worker.
Each run submits the samples under fresh ids, so every run triages them anew.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from triage.app import App
from triage.cli.processes import stop_gracefully
from triage.settings import load_settings
from triage.states.tickets import FINISHED

SAMPLES = Path(__file__).with_name("demo_conversations.jsonl")
POLL_SECONDS = 0.5
WORKER_STOP_SECONDS = 15.0


def _demo_environment() -> tuple[dict[str, str], str]:
    env = dict(os.environ)
    if env.get("MIMO_API_KEY", "").strip():
        env.setdefault("TRIAGE_EXTRACTOR", "llm")
        return env, f"MiMo ({env.get('TRIAGE_MODEL', 'mimo-v2-flash')}), because MIMO_API_KEY is set"
    env["TRIAGE_EXTRACTOR"] = "rules"
    return env, "the offline rules extractor, because MIMO_API_KEY is not set"


@contextmanager
def _worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    log_path = Path("var/demo-worker.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "triage", "worker", "--concurrency", "2",
                                    "--loglevel", "WARNING"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            stop_gracefully(process, WORKER_STOP_SECONDS)
    print(f"worker stopped (its log: {log_path})", file=sys.stderr)


def _samples(run_stamp: str) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        row["external_id"] = f"{row['external_id']}@{run_stamp}"
    return rows


def _wait(app: App, ticket_ids: list[int], timeout: float, worker: subprocess.Popen[bytes]) -> bool:
    from triage.store.queries import TicketFilter, list_tickets

    deadline = time.monotonic() + timeout
    done = -1
    while time.monotonic() < deadline and worker.poll() is None:
        views = list_tickets(app.sessions, TicketFilter(ids=ticket_ids)).items
        finished = sum(view.status in FINISHED for view in views)
        if finished != done:
            done = finished
            print(f"  {done}/{len(ticket_ids)} tickets finished", file=sys.stderr)
        if done == len(ticket_ids):
            return True
        time.sleep(POLL_SECONDS)
    return False


def run_demo(timeout: float) -> int:
    """Run the demo; 0 when every sample was triaged in time."""
    from triage.cli.main import print_tickets
    from triage.intake.normalise import normalise_submission
    from triage.intake.submission import accept, parse_submission
    from triage.store.db import upgrade
    from triage.store.queries import TicketFilter, list_tickets

    env, which = _demo_environment()
    app = App.build(load_settings(env))
    print(f"triage demo: extracting with {which}", file=sys.stderr)
    upgrade(app.settings.database_url)
    with _worker(env) as worker:
        stamp = app.clock.now().strftime("%Y%m%dT%H%M%S")
        ids = [accept(app.sessions, normalise_submission(parse_submission(row)), app.publisher.extraction,
                      app.clock.now()).ticket_id for row in _samples(stamp)]
        print(f"submitted {len(ids)} conversations; waiting for the worker", file=sys.stderr)
        finished = _wait(app, ids, timeout, worker)
    print_tickets(list_tickets(app.sessions, TicketFilter(ids=ids)).items, app.schema, as_json=False)
    if not finished:
        print(f"triage demo: not every ticket finished within {timeout:.0f}s; see var/demo-worker.log",
              file=sys.stderr)
        return 1
    return 0
