"""End to end, as an operator watches it: `triage serve`, `worker --metrics-port` and `beat` (PostgreSQL + Redis,
loopback MiMo, JSON logs). After a few tickets, both scrapes show every named metric with the values the run
implies, every log line is one JSON object, and no configured secret appears in any log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from benchmarks.stack import free_port
from tests.factories import Samples, parse_metrics, sample
from tests.fakeapi import USAGE, FakeMiMo, error, ok
from tests.harness import Stack
from triage.intake.platforms import sample_payloads, signed_request

pytestmark = pytest.mark.e2e  # make e2e: real processes end to end, left out of make test

MODEL = "mimo-v2-flash"
TICKET = {"problem_type": "device_fault", "device_model": "Speaker X", "urgent_level": "normal",
          "user_requirements": ["restore Wi-Fi"]}
SECRETS = {"TRIAGE_WEBHOOK_SECRET_GENERIC": "whsec_b3BzLWUyZS1zZWNyZXQtZm9yLWdlbmVyaWMtaG9vaw==",
           "TRIAGE_API_TOKENS": "ops:ops-e2e-dispatch-token-0123456789abcdef",
           "TRIAGE_WRITEBACK_ZAMMAD_URL": "https://zammad.example.com",
           "TRIAGE_WRITEBACK_ZAMMAD_TOKEN": "zammad-e2e-api-token"}
SECRET_VALUES = ["sk-test", SECRETS["TRIAGE_WEBHOOK_SECRET_GENERIC"], "ops-e2e-dispatch-token-0123456789abcdef",
                 "zammad-e2e-api-token"]
#: Each conversation's marker and what the API answers it, in order; the run's expected counts follow.
SCRIPTS = {
    "OPS-PLAIN": [ok(TICKET, usage={**USAGE, "completion_tokens_details": {"reasoning_tokens": 12}})],
    "OPS-429": [error(429, headers={"Retry-After": "1"}), ok(TICKET)],
    "OPS-UNPARSEABLE": [ok("I think it is a device fault."), ok(TICKET)],
    "OPS-INVALID": [ok({**TICKET, "urgent_level": "whenever"}), ok(TICKET)],
    "OPS-CUT": [ok('{"problem_type": "device_fault", "device', finish_reason="length"), ok(TICKET)],
    "OPS-REFUSED": [error(401, "invalid api key")],
}
ROUTED = len(SCRIPTS)  # every conversation but OPS-REFUSED, plus the webhook's


@dataclass
class Run:
    serve: Samples
    worker: Samples
    logs: dict[str, str]
    api_requests: int


def _wait_for_metrics(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def run(postgres_module_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    redis.Redis.from_url(redis_url).flushdb()
    schedule = Path(tmp_path_factory.mktemp("beat")) / "schedule"
    with FakeMiMo(default=ok(TICKET)) as api:
        for marker, replies in SCRIPTS.items():
            api.script(marker, *replies)
        env = {**SECRETS, "TRIAGE_LOG_FORMAT": "json", "TRIAGE_RATE_LIMIT_RPM": "3",
               "TRIAGE__RATE_LIMIT__WINDOW_SECONDS": "2", "TRIAGE__WORKER__SWEEP_INTERVAL_SECONDS": "2",
               # the scripted run counts one call per ticket: no batches, whatever the backlog
               "TRIAGE__EXTRACTION__BATCH_MODE": "never"}
        stack = Stack(postgres_module_url, redis_url, api.base_url, env)
        stack.migrate()
        metrics_port = free_port()
        with stack.worker("--concurrency", "4", "--metrics-port", str(metrics_port)), \
                stack.process("beat", "--schedule", str(schedule), "--loglevel", "INFO"), \
                stack.server(free_port(), loglevel="INFO") as base, httpx.Client(timeout=10) as http:
            _wait_for_metrics(f"http://127.0.0.1:{metrics_port}/metrics")
            rows = [{"source": "ops", "external_id": marker, "text": f"{marker}: my speaker lost Wi-Fi"}
                    for marker in SCRIPTS]
            ids = [line["ticket_id"] for line in stack.submit(rows)]
            body, headers = signed_request("generic", sample_payloads()["generic"],
                                           SECRETS["TRIAGE_WEBHOOK_SECRET_GENERIC"], now=time.time())
            hooked = http.post(f"{base}/webhooks/generic", content=body, headers=headers)
            assert hooked.status_code == 202, hooked.text
            assert http.post(f"{base}/webhooks/no-such-platform", json={}).status_code == 404
            stack.wait_finished([*ids, hooked.json()["ticket_id"]], timeout=90)
            serve = parse_metrics(http.get(f"{base}/metrics").text)
            worker = parse_metrics(http.get(f"http://127.0.0.1:{metrics_port}/metrics").text)
        yield Run(serve, worker, stack.logs, len(api.requests))
        stack.close()


def test_the_worker_counts_tickets_llm_calls_tokens_and_waits(run: Run) -> None:
    worker = run.worker
    assert sample(worker, "triage_tickets_total", status="routed", route="hardware-support", extractor="llm") == ROUTED
    assert sample(worker, "triage_tickets_total", status="needs_review", route="manual-review", extractor="rules") == 1
    outcomes = {outcome: sample(worker, "triage_llm_requests_total", model=MODEL, outcome=outcome)
                for outcome in ("valid", "invalid", "unparseable", "truncated", "api_error")}
    assert outcomes == {"valid": ROUTED, "invalid": 1, "unparseable": 1, "truncated": 1, "api_error": 2}
    assert sum(outcomes.values()) == run.api_requests  # every call the API saw, counted once
    assert sample(worker, "triage_llm_request_seconds_count") == run.api_requests
    assert 0 < (sample(worker, "triage_llm_request_seconds_sum") or 0) < run.api_requests * 5
    answered = run.api_requests - 2
    assert sample(worker, "triage_llm_tokens_total", model=MODEL, kind="prompt") == answered * USAGE["prompt_tokens"]
    assert sample(worker, "triage_llm_tokens_total", model=MODEL, kind="completion") == \
        answered * USAGE["completion_tokens"]
    assert sample(worker, "triage_llm_tokens_total", model=MODEL, kind="reasoning") == 12
    assert sample(worker, "triage_llm_api_errors_total", model=MODEL, status_code="429") == 1
    assert sample(worker, "triage_llm_api_errors_total", model=MODEL, status_code="401") == 1
    assert (sample(worker, "triage_ratelimit_wait_seconds_total", model=MODEL) or 0) > 0, \
        "3 calls per 2 s for 7 tickets: some extractions had to wait (each deferral adds its wait)"


def test_serve_counts_webhooks_and_reads_the_gauges_from_the_database(run: Run) -> None:
    serve = run.serve
    assert sample(serve, "triage_webhooks_total", source="generic", status_code="202") == 1
    assert sample(serve, "triage_webhooks_total", source="unknown", status_code="404") == 1
    assert sample(serve, "triage_queue_depth", queue="triage") == 0
    assert sample(serve, "triage_queue_depth", queue="fallback") == 0
    assert sample(serve, "triage_queue_oldest_seconds", queue="triage") == 0
    assert sample(serve, "triage_tickets_open", status="routed") == ROUTED
    assert sample(serve, "triage_tickets_open", status="needs_review") == 1
    assert sample(serve, "triage_sla_breached", route="hardware-support") == 0
    assert sample(serve, "triage_sla_breached", route="manual-review") == 0
    assert not {name for name, _ in serve} & {"triage_tickets_total", "triage_llm_requests_total"}, \
        "the pipeline's counters are the workers'"


def test_every_log_line_is_one_json_object_with_its_context(run: Run) -> None:
    lines = {name: [json.loads(line) for line in text.splitlines() if line.strip()] for name, text in run.logs.items()}
    assert set(lines) == {"worker", "beat", "serve"} and all(lines.values())
    for entries in lines.values():
        assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    worker = lines["worker"]
    assert any(e["logger"] == "celery.app.trace" and "ticket_id" in e and "task_id" in e for e in worker)
    assert any(e["level"] == "WARNING" and e.get("model") == MODEL and e.get("attempt") for e in worker), \
        "the 429's retry line names the model and the attempt"
    assert any("Warm shutdown" in e["message"] for e in worker)
    assert any(e.get("source") == "generic" and e.get("external_id") and e.get("ticket_id") for e in lines["serve"])
    assert any("Sending due task" in e["message"] for e in lines["beat"])


def test_no_configured_secret_reaches_any_log(run: Run) -> None:
    everything = "\n".join(run.logs.values())
    assert [secret for secret in SECRET_VALUES if secret in everything] == []
