"""Requests per second that ``triage serve`` sustains for valid, signed webhooks.

Starts ``triage serve`` (one uvicorn process) on the database and broker from the environment
(default: the embedded SQLite + SQLAlchemy transport under a temporary folder), then sends
``--requests`` distinct signed generic webhooks from ``--clients`` threads and reports the rate
of 202 answers. No worker runs: this measures intake (verify, store, publish), not extraction.

    python benchmarks/webhook_rps.py --requests 2000 --clients 16
    TRIAGE_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/bench TRIAGE_BROKER_URL=redis://127.0.0.1:6379/14 \\
        python benchmarks/webhook_rps.py
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from triage.intake.platforms import signed_request
from triage.store.db import upgrade

SECRET = "whsec_YmVuY2htYXJrLXNlY3JldC1mb3Itd2ViaG9va3M="


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="signed webhooks to send (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent senders (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="triage serve --workers (default: %(default)s)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="triage-bench-"))
    env = dict(os.environ)
    env.setdefault("TRIAGE_DATABASE_URL", f"sqlite:///{workdir / 'triage.sqlite3'}")
    env.setdefault("TRIAGE_BROKER_URL", f"sqla+sqlite:///{workdir / 'broker.sqlite3'}")
    env |= {"TRIAGE_WEBHOOK_SECRET_GENERIC": SECRET, "TRIAGE_EXTRACTOR": "rules"}
    upgrade(env["TRIAGE_DATABASE_URL"])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "triage", "serve", "--port", str(port), "--loglevel", "WARNING",
                               "--workers", str(args.workers)], env=env)
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        run_id = f"{time.time_ns()}"
        requests = [signed_request("generic", {"external_id": f"bench-{run_id}-{i}", "text": f"Router {i} broken"},
                                   SECRET, now=time.time(), delivery_id=f"msg-{run_id}-{i}")
                    for i in range(args.requests)]
        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=args.clients)) as client:
            def send(request: tuple[bytes, dict[str, str]]) -> int:
                return client.post(f"{base}/webhooks/generic", content=request[0], headers=request[1]).status_code

            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                statuses = list(pool.map(send, requests))
            elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(20)
    accepted = statuses.count(202)
    print(f"database: {env['TRIAGE_DATABASE_URL'].split('://')[0]}, broker: {env['TRIAGE_BROKER_URL'].split('://')[0]}")
    print(f"{accepted}/{len(statuses)} accepted (202) in {elapsed:.2f} s with {args.clients} clients: "
          f"{accepted / elapsed:.0f} requests/s")
    return 0 if accepted == len(statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
