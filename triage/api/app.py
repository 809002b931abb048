"""The HTTP service: webhooks in, dispatch review, health. ``triage serve`` runs it with uvicorn.

Under another ASGI server: ``uvicorn --factory triage.api.app:create_app`` (the app is then built
from the environment's settings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi_offline import FastAPIOffline
from kombu import Connection
from sqlalchemy import text

from triage import __version__
from triage.api import errors
from triage.api.desk import DESK_PATH, install_desk
from triage.api.dispatch import dispatch_router
from triage.api.review import review_router
from triage.api.webhooks import webhook_router
from triage.app import App
from triage.settings import load_settings

HEALTH_TIMEOUT_SECONDS = 3


def _database_ok(app: App) -> str | None:
    try:
        with app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "down"; the reason goes in the answer
        return f"{type(exc).__name__}: {exc}"
    return None


def _broker_ok(broker_url: str) -> str | None:
    try:
        with Connection(broker_url, connect_timeout=HEALTH_TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, timeout=HEALTH_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure means "down"; the reason goes in the answer
        return f"{type(exc).__name__}: {exc}"
    return None


def create_app(app: App | None = None, publish: Callable[[int], None] | None = None) -> FastAPI:
    """The HTTP service for ``app`` (default: built from the settings), publishing with ``publish``
    (default: the app's publisher, logging a broker outage for the sweep to repair)."""
    if app is None:
        app = App.build(load_settings())
    publish = publish or app.publisher.extraction_or_log
    # FastAPIOffline: the /docs page's Swagger UI is served from the package, never from a CDN (no /redoc).
    api = FastAPIOffline(title="triage", summary="Customer-service ticket triage: webhooks in, dispatch review out.",
                         version=__version__, redoc_url=None)
    errors.install(api)
    api.include_router(webhook_router(app, publish))
    api.include_router(dispatch_router(app, publish))
    api.include_router(review_router(app))
    install_desk(api, app, publish)

    @api.get("/", tags=["desk"], status_code=307, response_class=RedirectResponse,
             summary="The dispatch desk (public: redirects to it)")
    def home() -> RedirectResponse:
        return RedirectResponse(DESK_PATH, status_code=307)

    @api.get("/healthz", tags=["health"], summary="200 when the database and the broker are reachable")
    def healthz() -> Any:
        problems = {name: reason for name, reason in (("database", _database_ok(app)),
                                                      ("broker", _broker_ok(app.settings.broker_url))) if reason}
        if problems:
            return JSONResponse({"status": "down", "down": problems}, status_code=503)
        return {"status": "ok"}

    return api
