"""``GET /metrics`` of ``triage serve`` (public, no token) and the webhook counter.

``/metrics`` shows this process's counters (:mod:`triage.metrics`: ``triage_webhooks_total`` here)
and the gauges read from the database at each scrape (:class:`DatabaseGauges`), which only
``triage serve`` exports: one process, so a fleet of workers does not multiply them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage.app import App
from triage.app.queues import DELIVERIES_QUEUE, FALLBACK_QUEUE, TRIAGE_QUEUE
from triage.intake.platforms import PLATFORMS
from triage.metrics import WEBHOOKS
from triage.states.deliveries import DeliveryStatus
from triage.states.tickets import OPEN, Status
from triage.store.gauges import Gauges, read_gauges
from triage.tickets.route_quality import route_accuracy

log = logging.getLogger(__name__)

WEBHOOK_PREFIX = "/webhooks/"
UNKNOWN_SOURCE = "unknown"
#: The status a webhook request is counted with when the app raised before answering.
UNANSWERED = 500
#: Each ticket queue's gauges count the tickets waiting in the status that queue's workers take.
WAITING_STATUS = {TRIAGE_QUEUE: Status.QUEUED, FALLBACK_QUEUE: Status.FALLBACK}
#: The deliveries queue's gauges count the deliveries waiting in this status.
WAITING_DELIVERY = DeliveryStatus.PENDING
#: The route-accuracy gauges count the reviews of this last stretch (the alert's "over the last day").
ROUTE_ACCURACY_WINDOW = timedelta(days=1)


def _gauge(name: str, documentation: str, label: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class DatabaseGauges(Collector):
    """Queue depth and age, open tickets per status and SLA breaches per route, read at each scrape.

    Every configured route is shown (0 when none of its tickets is breached), so alerts have a
    series to watch. A database that does not answer leaves the gauges out of that scrape
    (``/metrics`` still answers) and logs why.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        rules = [*app.settings.routing.rules, app.settings.routing.fallback]
        self.routes = sorted({rule.route for rule in rules})

    def describe(self) -> Iterable[Metric]:
        return [*self._families({}, {}, {}, {}, {}), *self._accuracy({}, 0.0)]

    def collect(self) -> Iterator[Metric]:
        now = self.app.clock.now()
        try:
            gauges = read_gauges(self.app.sessions, now)
        except SQLAlchemyError as exc:
            log.warning("metrics: database gauges left out of this scrape: %s", type(exc).__name__)
            return
        yield from self._families(
            _depth(gauges), _age(gauges, now),
            {status: gauges.by_status.get(status, 0) for status in OPEN},
            {route: 0 for route in self.routes} | gauges.breached_by_route,
            {status: gauges.deliveries_by_status.get(status, 0) for status in DeliveryStatus})
        try:
            counts = route_accuracy(self.app.sessions, self.app.router, now - ROUTE_ACCURACY_WINDOW)
        except SQLAlchemyError as exc:
            log.warning("metrics: route accuracy left out of this scrape: %s", type(exc).__name__)
            return
        yield from self._accuracy(counts, self.app.settings.quality.target_precision)

    def _accuracy(self, counts: Mapping[str, tuple[int, int]], target: float) -> Iterator[GaugeMetricFamily]:
        """Each route's accuracy from reviews over the last day, its review count and its target (the
        ``TriageRouteAccuracyLow`` alert compares the first with the last)."""
        yield _gauge("triage_route_review_accuracy", "Share of the last day's reviews of machine tickets that kept "
                     "the route the machine gave (routes with reviews only)", "route",
                     {route: survived / reviewed for route, (reviewed, survived) in counts.items() if reviewed})
        yield _gauge("triage_route_reviews", "Reviews of machine tickets over the last day, per predicted route",
                     "route", {route: 0 for route in self.routes} | {r: c[0] for r, c in counts.items()})
        yield _gauge("triage_route_accuracy_target", "The route accuracy reviews should reach "
                     "(quality.target_precision)", "route", dict.fromkeys(self.routes, target))

    @staticmethod
    def _families(depth: Mapping[str, float], age: Mapping[str, float], open_tickets: Mapping[str, float],
                  breached: Mapping[str, float], deliveries: Mapping[str, float]) -> Iterator[GaugeMetricFamily]:
        yield _gauge("triage_queue_depth", "Tickets waiting for each queue's workers (triage: queued, "
                     "fallback: fallback)", "queue", depth)
        yield _gauge("triage_queue_oldest_seconds", "Seconds since the longest-waiting ticket of each queue "
                     "last moved (entered the queue, or was re-published by the sweep)", "queue", age)
        yield _gauge("triage_tickets_open", "Tickets a team still has to handle, per status", "status",
                     open_tickets)
        yield _gauge("triage_sla_breached", "Tickets past their SLA due time and not resolved, per route",
                     "route", breached)
        yield _gauge("triage_deliveries", "Outbox deliveries (write-backs, events, alerts) per status; failed ones "
                     "wait for `triage deliveries --retry`", "status", deliveries)


def _depth(gauges: Gauges) -> dict[str, float]:
    depth = {queue: float(gauges.by_status.get(status, 0)) for queue, status in WAITING_STATUS.items()}
    return depth | {DELIVERIES_QUEUE: gauges.deliveries_by_status.get(WAITING_DELIVERY, 0)}


def _age(gauges: Gauges, now: datetime) -> dict[str, float]:
    age = {queue: gauges.waiting_seconds(status, now) for queue, status in WAITING_STATUS.items()}
    return age | {DELIVERIES_QUEUE: gauges.delivery_waiting_seconds(WAITING_DELIVERY, now)}


class CountWebhooks:
    """ASGI middleware: count every answer under ``/webhooks/`` by source and status code."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(WEBHOOK_PREFIX):
            await self.app(scope, receive, send)
            return
        source = path[len(WEBHOOK_PREFIX):]
        answered = {"status": UNANSWERED}

        async def noting_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            WEBHOOKS.labels(source if source in PLATFORMS else UNKNOWN_SOURCE, str(answered["status"])).inc()


def install_metrics(api: FastAPI, app: App) -> None:
    """Add ``GET /metrics`` and the webhook counter to ``api``."""
    gauges = CollectorRegistry()
    gauges.register(DatabaseGauges(app))
    api.add_middleware(CountWebhooks)

    @api.get("/metrics", tags=["health"], summary="Prometheus metrics (text exposition format)",
             response_class=Response)
    def metrics() -> Any:
        body = generate_latest(REGISTRY) + generate_latest(gauges)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
