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

from triage import __version__, logs
from triage.api import errors
from triage.api.bodies import StrictJSONRoute
from triage.api.deliveries import deliveries_router
from triage.api.desk import DESK_PATH, install_desk
from triage.api.dispatch import dispatch_router
from triage.api.docs import install_docs
from triage.api.metrics import install_metrics
from triage.api.responses import Health, SafeJSONResponse, documented
from triage.api.review import review_router
from triage.api.webhooks import webhook_router
from triage.app import App
from triage.settings import load_settings
from triage.startup import broker_problem

#: uvicorn sets this logger's level from its --log-level before it builds the app.
UVICORN_LOGGER = "uvicorn.error"


def _database_ok(app: App) -> str | None:
    try:
        with app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "down"; the reason goes in the answer
        return f"{type(exc).__name__}: {exc}"
    return None


def create_app(app: App | None = None, publish: Callable[[int], None] | None = None) -> FastAPI:
    """The HTTP service for ``app`` (default: built from the settings), publishing with ``publish``
    (default: the app's publisher, logging a broker outage for the sweep to repair)."""
    if app is None:  # a server process of its own (uvicorn --factory, serve --workers): log as triage serve does
        settings = load_settings()
        logs.configure(settings, logging.getLogger(UVICORN_LOGGER).getEffectiveLevel())
        app = App.build(settings)
    publish = publish or app.publisher.extraction_or_log
    api = FastAPI(title="triage", summary="Customer-service ticket triage: webhooks in, dispatch review out.",
                  version=__version__, default_response_class=SafeJSONResponse, docs_url=None, redoc_url=None)
    api.router.route_class = StrictJSONRoute  # the app's own routes read JSON as every router's do
    errors.install(api)
    install_metrics(api, app)
    install_docs(api)
    api.include_router(webhook_router(app, publish))
    api.include_router(dispatch_router(app, publish))
    api.include_router(review_router(app))
    install_desk(api, app, publish)
    api.include_router(deliveries_router(app))

    @api.get("/", tags=["desk"], status_code=307, response_class=RedirectResponse,
             summary="The dispatch desk (public: redirects to it)")
    def home() -> RedirectResponse:
        return RedirectResponse(DESK_PATH, status_code=307)

    @api.get("/healthz", tags=["health"], summary="200 when the database and the broker are reachable",
             response_model=Health, response_model_exclude_none=True,
             responses={503: {"model": Health, "description": documented(503)[503]["description"]}})
    def healthz() -> Any:
        problems = {name: reason for name, reason in (("database", _database_ok(app)),
                                                      ("broker", broker_problem(app.settings.broker_url))) if reason}
        if problems:
            return SafeJSONResponse({"status": "down", "down": problems}, status_code=503)
        return {"status": "ok"}

    return api
