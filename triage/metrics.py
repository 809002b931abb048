"""Prometheus metrics (prometheus_client): what each triage process counts.

Counters and the histogram live in the process's default registry, so every place that counts
needs one line (``metrics.TICKETS.labels(...).inc()`` or a helper below). Each process shows its
own: ``triage serve`` at ``/metrics`` (webhooks, and the gauges read from the database, see
:mod:`triage.api.metrics`), each ``triage worker`` on ``--metrics-port`` (tickets, LLM calls,
rate-limit waits; the threads pool keeps a worker in one process, so no multiprocess mode is
needed). This module imports no database, Celery or stage code (the shared core): the extraction room counts
through it.

>>> from prometheus_client import REGISTRY
>>> from triage.extraction.types import Attempt
>>> llm_attempt(Attempt(1, "doc-model", "valid", latency_ms=800, prompt_tokens=300, completion_tokens=40))
>>> REGISTRY.get_sample_value("triage_llm_tokens_total", {"model": "doc-model", "kind": "prompt"})
300.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram, start_http_server

from triage.errors import ConfigError
from triage.states.tickets import AttemptOutcome

if TYPE_CHECKING:
    from triage.extraction.types import Attempt

MILLISECONDS = 1000
#: LLM call durations: MiMo answers in about a second; a truncated or thinking answer takes longer.
LLM_SECONDS_BUCKETS = (0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
#: The label value for what is not known: an API error without an HTTP status (timeout, connection
#: error, broken body), a ticket finished without an extractor (poisoned by the sweep).
NONE_LABEL = "none"
#: Where a worker's metrics endpoint listens (every interface, as Prometheus exporters do).
WORKER_METRICS_ADDRESS = "0.0.0.0"

TICKETS = Counter("triage_tickets_total", "Tickets the pipeline finished (routed, or needs_review via the "
                  "fallback queue or the sweep)", ["status", "route", "extractor"])
LLM_REQUESTS = Counter("triage_llm_requests_total", "LLM API calls by the attempt's outcome "
                       "(valid, invalid, unparseable, truncated, api_error)", ["model", "outcome"])
LLM_SECONDS = Histogram("triage_llm_request_seconds", "Duration of one LLM API call", buckets=LLM_SECONDS_BUCKETS)
LLM_TOKENS = Counter("triage_llm_tokens_total", "Tokens the LLM API reported, by kind (prompt, completion, "
                     "reasoning; reasoning tokens are part of the completion tokens)", ["model", "kind"])
LLM_API_ERRORS = Counter("triage_llm_api_errors_total", "LLM API calls that failed, by HTTP status "
                         "(none: timeout, connection error or a broken body)", ["model", "status_code"])
RATELIMIT_WAIT = Counter("triage_ratelimit_wait_seconds_total", "Seconds of waiting the fleet's rate limiter "
                         "imposed (each deferred extraction adds its wait)", ["model"])
AUTONOMY = Counter("triage_autonomy_total", "Tickets the pipeline finished, by the autonomy level applied (auto: "
                   "written back in full; suggest: a note only; review: needs_review; shadow: nothing written)",
                   ["level"])
WEBHOOKS = Counter("triage_webhooks_total", "Webhook requests answered, by source (unknown for any other) and "
                   "HTTP status", ["source", "status_code"])

CONFIDENCE = Counter("triage_confidence_total", "Tickets the machine decided, by route and confidence band (high, "
                     "medium, low: the autonomy thresholds)", ["route", "band"])


def confidence_counted(route: str, band: str) -> None:
    """Count a decided ticket's confidence band on its route (call after the commit that stored it)."""
    CONFIDENCE.labels(route, band).inc()


#: The autonomy level of a ticket the pipeline sends to review (the fallback queue, the sweep).
REVIEW_LEVEL = "review"


def ticket_finished(status: str, route: str, extractor: str | None, autonomy: str = REVIEW_LEVEL) -> None:
    """Count a ticket the pipeline finished and its autonomy level (call after the commit that finished it)."""
    TICKETS.labels(status, route, extractor or NONE_LABEL).inc()
    AUTONOMY.labels(str(autonomy)).inc()


def llm_attempt(attempt: Attempt) -> None:
    """Count one LLM API call: its outcome, duration, tokens and, for an API error, its status."""
    llm_call(attempt.model, attempt.outcome, attempt.latency_ms,
             {"prompt": attempt.prompt_tokens, "completion": attempt.completion_tokens,
              "reasoning": attempt.reasoning_tokens})
    if attempt.outcome == AttemptOutcome.API_ERROR:
        LLM_API_ERRORS.labels(attempt.model, str(attempt.status_code or NONE_LABEL)).inc()


def llm_call(model: str, outcome: str, latency_ms: int | None, tokens: Mapping[str, int | None]) -> None:
    """Count one LLM API call that answered (a single ticket's, or a batch's once for all its tickets)."""
    LLM_REQUESTS.labels(model, outcome).inc()
    if latency_ms is not None:
        LLM_SECONDS.observe(latency_ms / MILLISECONDS)
    for kind, count in tokens.items():
        if count:
            LLM_TOKENS.labels(model, kind).inc(count)


def ratelimit_wait(model: str, seconds: float) -> None:
    """Count a wait the rate limiter imposed on a call to ``model``."""
    RATELIMIT_WAIT.labels(model).inc(seconds)


def serve_worker_metrics(port: int) -> None:
    """This process's metrics over HTTP on ``port`` (all interfaces), in a daemon thread; 0 does nothing."""
    if not port:
        return
    try:
        start_http_server(port, addr=WORKER_METRICS_ADDRESS)
    except OSError as exc:
        raise ConfigError(f"--metrics-port {port}: cannot listen there ({exc.strerror}); choose a free port, "
                          "or 0 to turn the worker's metrics off") from None
