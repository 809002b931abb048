"""The HTTP service: webhooks in, dispatch review, health. ``triage serve`` runs it with uvicorn.

Under another ASGI server: ``uvicorn --factory triage.api.app:create_app``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from kombu import Connection
from sqlalchemy import text

from triage.api.dispatch import dispatch_router
from triage.api.webhooks import webhook_router
from triage.components import Components
from triage.settings import load_settings

HEALTH_TIMEOUT_SECONDS = 3.0


def _database_ok(parts: Components) -> str | None:
    try:
        with parts.engine.connect() as connection:
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


def create_app(parts: Components | None = None, enqueue: Callable[[int], None] | None = None) -> FastAPI:
    """The app for ``parts`` (default: from the settings), publishing with ``enqueue``."""
    if parts is None:
        parts = Components.build(load_settings())
    if enqueue is None:
        from triage.tasks import enqueue_extraction_or_log

        enqueue = enqueue_extraction_or_log
    app = FastAPI(title="triage", summary="Customer-service ticket triage: webhooks in, dispatch review out.",
                  version="0.1.0")
    app.include_router(webhook_router(parts, enqueue))
    app.include_router(dispatch_router(parts, enqueue))

    @app.get("/healthz", tags=["health"], summary="200 when the database and the broker are reachable")
    def healthz() -> Any:
        problems = {name: reason for name, reason in (("database", _database_ok(parts)),
                                                      ("broker", _broker_ok(parts.settings.broker_url))) if reason}
        if problems:
            return JSONResponse({"status": "down", "down": problems}, status_code=503)
        return {"status": "ok"}

    return app
