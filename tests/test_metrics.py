"""Metrics: the database gauges and the webhook counter of ``/metrics``, the LLM counters, the deploy/ files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests.factories import REPO, ManualClock, build_app, finish_with_rules, parse_metrics, sample, submit
from triage import metrics
from triage.api.app import create_app
from triage.app import App
from triage.extraction.types import Attempt
from triage.store.queries import ticket_detail

DEPLOY = REPO / "deploy"
#: Every metric a scrape of serve and a worker shows (a histogram's samples carry their suffixes).
EXPORTED = {"triage_tickets_total", "triage_llm_requests_total", "triage_llm_request_seconds",
            "triage_llm_tokens_total", "triage_llm_api_errors_total", "triage_ratelimit_wait_seconds_total",
            "triage_webhooks_total", "triage_queue_depth", "triage_queue_oldest_seconds", "triage_tickets_open",
            "triage_sla_breached", "triage_deliveries", "triage_autonomy_total", "triage_route_review_accuracy",
            "triage_route_reviews", "triage_route_accuracy_target"}


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(create_app(app, publish=lambda _: None)) as http:
        yield http


def _scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")  # public: no token
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return parse_metrics(response.text)


def test_gauges_read_queues_open_tickets_and_breaches_from_the_database(app: App, client: TestClient,
                                                                       clock: ManualClock) -> None:
    submit(app, "Q-1", "How do I set an alarm?")
    routed = submit(app, "R-1", "My router is broken")
    finish_with_rules(app, routed)
    route = (ticket_detail(app.sessions, routed) or {})["ticket"]["route"]
    clock.advance(hours=49)  # past every shipped SLA
    samples = _scrape(client)
    assert sample(samples, "triage_queue_depth", queue="triage") == 1
    assert sample(samples, "triage_queue_depth", queue="fallback") == 0
    assert sample(samples, "triage_queue_oldest_seconds", queue="triage") == 49 * 3600
    assert sample(samples, "triage_tickets_open", status="routed") == 1
    assert sample(samples, "triage_tickets_open", status="needs_review") == 0
    breached = {dict(labels)["route"]: value for (name, labels), value in samples.items()
                if name == "triage_sla_breached"}
    assert breached.pop(route) == 1
    assert breached and set(breached.values()) == {0}, "every configured route has its series"


def test_deliveries_waiting_are_the_deliveries_queue_and_every_status_has_a_series(migrated_sqlite_url: str,
                                                                                   clock: ManualClock) -> None:
    app = build_app(migrated_sqlite_url, clock=clock, TRIAGE__ALERTS__WEBHOOK_URL="http://127.0.0.1:9/hook")
    try:
        finish_with_rules(app, submit(app, "P-1", "My watch is broken, urgent please"))  # P1: one alert to send
        clock.advance(minutes=5)
        with TestClient(create_app(app, publish=lambda _: None)) as http:
            samples = _scrape(http)
    finally:
        app.close()
    assert sample(samples, "triage_queue_depth", queue="deliveries") == 1
    assert sample(samples, "triage_queue_oldest_seconds", queue="deliveries") == 300
    deliveries = {dict(labels)["status"]: value for (name, labels), value in samples.items()
                  if name == "triage_deliveries"}
    assert deliveries == {"pending": 1, "delivering": 0, "delivered": 0, "gone": 0, "skipped": 0, "failed": 0,
                          "superseded": 0}


def test_webhooks_are_counted_by_known_source_and_status(client: TestClient) -> None:
    def count(source: str, status: str) -> float:
        return REGISTRY.get_sample_value("triage_webhooks_total", {"source": source, "status_code": status}) or 0

    before = count("unknown", "404"), count("zendesk", "401")
    assert client.post("/webhooks/not-a-platform", json={}).status_code == 404
    assert client.post("/webhooks/zendesk", json={}).status_code == 401  # no secret configured
    assert (count("unknown", "404") - before[0], count("zendesk", "401") - before[1]) == (1, 1)
    assert not [labels for (name, labels), _ in _scrape(client).items()
                if name == "triage_webhooks_total" and ("source", "not-a-platform") in labels]


def test_an_attempt_counts_its_outcome_duration_tokens_and_api_status() -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0

    before = (value("triage_llm_requests_total", model="unit", outcome="api_error"),
              value("triage_llm_api_errors_total", model="unit", status_code="429"),
              value("triage_llm_api_errors_total", model="unit", status_code="none"),
              value("triage_llm_tokens_total", model="unit", kind="reasoning"),
              value("triage_llm_request_seconds_count"))
    metrics.llm_attempt(Attempt(1, "unit", "api_error", status_code=429, latency_ms=120))
    metrics.llm_attempt(Attempt(2, "unit", "api_error", latency_ms=5000))  # a timeout: no status
    metrics.llm_attempt(Attempt(3, "unit", "valid", latency_ms=900, prompt_tokens=500, completion_tokens=80,
                                reasoning_tokens=30))
    after = (value("triage_llm_requests_total", model="unit", outcome="api_error"),
             value("triage_llm_api_errors_total", model="unit", status_code="429"),
             value("triage_llm_api_errors_total", model="unit", status_code="none"),
             value("triage_llm_tokens_total", model="unit", kind="reasoning"),
             value("triage_llm_request_seconds_count"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1, 30, 3]


def _referenced(text: str) -> set[str]:
    """Metric names an expression mentions, histogram suffixes taken off."""
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"\btriage_[a-z_]+", text)}


def test_alert_rules_and_dashboard_use_only_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"TriageSLABreached", "TriageFallbackRateHigh", "TriageLLM429RateHigh", "TriageQueueStale"} <= set(alerts)
    for name, rule in alerts.items():
        assert _referenced(rule["expr"]) <= EXPORTED, name
        assert rule["labels"]["severity"] and rule["annotations"]["summary"], name
    dashboard = json.loads((DEPLOY / "grafana" / "triage-dashboard.json").read_text(encoding="utf-8"))
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert expressions and all(_referenced(expr) and _referenced(expr) <= EXPORTED for expr in expressions)
    shown = set().union(*map(_referenced, expressions))
    assert shown == EXPORTED, f"metrics without a panel: {EXPORTED - shown}"


def test_scrape_config_targets_serve_and_worker_ports() -> None:
    config = yaml.safe_load(Path(DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"triage-serve", "triage-worker"}
    assert jobs["triage-serve"]["metrics_path"] == "/metrics"
    assert {target.rsplit(":", 1)[1] for target in jobs["triage-worker"]["static_configs"][0]["targets"]} == {"9100"}
