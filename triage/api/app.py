"""The HTTP service: webhooks in, dispatch review, health, metrics. ``triage serve`` runs it with uvicorn.

Under another ASGI server: ``uvicorn --factory triage.api.app:create_app`` (the app is then built
from the environment's settings).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage import __version__
from triage.api import error_answers
from triage.api.bodies import StrictJSONRoute
from triage.api.deliveries import deliveries_router
from triage.api.desk import DESK_PATH, install_desk
from triage.api.dispatch import dispatch_router
from triage.api.docs import install_docs
from triage.api.guard import AuthGuard
from triage.api.metrics import install_metrics
from triage.api.responses import Health, SafeJSONResponse, documented
from triage.api.review import review_router
from triage.api.webhooks import webhook_router
from triage.app import App
from triage.app.startup import broker_problem
from triage.settings import load_settings
from triage.worker import logs

#: uvicorn sets this logger's level from its --log-level before it builds the app.
UVICORN_LOGGER = "uvicorn.error"
log = logging.getLogger(__name__)


def _database_problem(app: App) -> str | None:
    try:
        with app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "down"; the reason goes to the log only
        return f"{type(exc).__name__}: {exc}"
    return None


#: What HTTPS answers carry: browsers keep to HTTPS for this host for a year.
HSTS = (b"strict-transport-security", b"max-age=31536000")


class StrictTransportSecurity:
    """Adds HSTS to every answer of a request that came over HTTPS (as a trusted proxy says, or directly);
    plain HTTP (the demo on loopback) is left as it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), HSTS]
            await send(message)

        await self.app(scope, receive, with_hsts)


def create_app(app: App | None = None, publish: Callable[[int], None] | None = None) -> FastAPI:
    """The HTTP service for ``app`` (default: built from the settings), publishing with ``publish``
    (default: the app's publisher, logging a broker outage for the sweep to repair)."""
    if app is None:  # a server process of its own (uvicorn --factory, serve --workers): log as triage serve does
        settings = load_settings()
        logs.configure(settings, logging.getLogger(UVICORN_LOGGER).getEffectiveLevel())
        app = App.build(settings)
    publish = publish or app.publisher.extraction_or_log
    guard = AuthGuard(app.settings, app.engine)
    api = FastAPI(title="triage", summary="Customer-service ticket triage: webhooks in, dispatch review out.",
                  version=__version__, default_response_class=SafeJSONResponse, docs_url=None, redoc_url=None,
                  max_body_size=app.settings.api.max_body_bytes)
    api.router.route_class = StrictJSONRoute  # the app's own routes read JSON as every router's do
    api.add_middleware(StrictTransportSecurity)
    error_answers.install(api)
    install_metrics(api, app)
    install_docs(api)
    api.include_router(webhook_router(app, publish))
    api.include_router(dispatch_router(app, publish, guard))
    api.include_router(review_router(app, guard))
    install_desk(api, app, publish, guard)
    api.include_router(deliveries_router(app, guard))

    @api.get("/", tags=["desk"], status_code=307, response_class=RedirectResponse,
             summary="The dispatch desk (public: redirects to it)")
    def home() -> RedirectResponse:
        return RedirectResponse(DESK_PATH, status_code=307)

    @api.get("/healthz", tags=["health"], summary="200 when the database and the broker are reachable",
             response_model=Health,
             responses={503: {"model": Health, "description": documented(503)[503]["description"]}})
    def healthz() -> Any:
        problems = {"database": _database_problem(app), "broker": broker_problem(app.settings.broker_url)}
        for name, problem in problems.items():
            if problem:
                log.warning("health: the %s is down: %s", name, problem)
        answer = {name: "down" if problem else "ok" for name, problem in problems.items()}
        status = "down" if any(problems.values()) else "ok"
        return SafeJSONResponse({"status": status, **answer}, status_code=503 if status == "down" else 200)

    return api
