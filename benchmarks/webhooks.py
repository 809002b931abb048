"""Scenario (d)'s pieces: a bare FastAPI endpoint (the HTTP ceiling) and a load of signed webhooks.

The bare endpoint runs under the same server settings as ``triage serve`` (one uvicorn process,
log level WARNING)::

    python -m uvicorn --factory benchmarks.webhooks:create_bare_app --port 8100 --log-level warning
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request

#: A Standard Webhooks signing secret for the ``generic`` source (base64 after ``whsec_``).
SECRET = "whsec_YmVuY2htYXJrLXNlY3JldC1mb3Itd2ViaG9va3M="
ACCEPTED = 202
REQUEST_TIMEOUT_SECONDS = 30


def create_bare_app() -> FastAPI:
    """``POST /webhooks/{source}`` that reads the body and answers 202; ``GET /healthz``."""
    app = FastAPI()

    @app.post("/webhooks/{source}", status_code=ACCEPTED)
    async def take(source: str, request: Request) -> dict[str, Any]:
        await request.body()
        return {"ticket_id": 0, "status": "queued", "duplicate": False}

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def signed_webhooks(count: int, run_id: str, texts: list[str]) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` distinct signed ``generic`` webhooks (Standard Webhooks v1), made by triage's own signer."""
    from triage.intake.platforms import signed_request

    now = time.time()
    return [signed_request("generic", {"external_id": f"{run_id}-wh-{n:05d}", "text": texts[n % len(texts)]},
                           SECRET, now=now, delivery_id=f"msg-{run_id}-{n:05d}") for n in range(count)]


@dataclass
class LoadResult:
    statuses: list[int]
    latencies: list[float]
    seconds: float

    @property
    def accepted(self) -> int:
        return self.statuses.count(ACCEPTED)


def send_load(base_url: str, requests: list[tuple[bytes, dict[str, str]]], clients: int) -> LoadResult:
    """POST every request to ``/webhooks/generic`` from ``clients`` threads; statuses, latencies, wall time."""
    with httpx.Client(timeout=REQUEST_TIMEOUT_SECONDS, limits=httpx.Limits(max_connections=clients)) as client:
        def send(request: tuple[bytes, dict[str, str]]) -> tuple[int, float]:
            started = time.perf_counter()
            try:
                status = client.post(f"{base_url}/webhooks/generic", content=request[0],
                                     headers=request[1]).status_code
            except httpx.HTTPError:
                status = 0
            return status, time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(send, requests))
        seconds = time.perf_counter() - started
    return LoadResult([status for status, _ in answers], sorted(latency for _, latency in answers), seconds)
