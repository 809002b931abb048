"""The one place triage's errors become HTTP answers: ``{"detail": "<reason>"}`` with the status below.

>>> from triage.store.queries import TicketNotFoundError
>>> http_status(TicketNotFoundError(7))
404
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from triage.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    DatabaseNotReadyError,
    InputError,
    NotFoundError,
    TriageError,
)

#: The first class an error is an instance of decides its status (order matters for multiple bases).
STATUS_BY_KIND: tuple[tuple[type[TriageError], int], ...] = (
    (AuthError, 401),
    (InputError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (DatabaseNotReadyError, 503),
    (ConfigError, 500),  # our configuration: the sender should retry once it is fixed
)
INTERNAL = 500


def http_status(exc: TriageError) -> int:
    return next((status for kind, status in STATUS_BY_KIND if isinstance(exc, kind)), INTERNAL)


def install(app: FastAPI) -> None:
    """Answer every :class:`~triage.errors.TriageError` an endpoint raises with its status and reason."""

    async def answer(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TriageError)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        return JSONResponse({"detail": str(exc)}, status_code=http_status(exc), headers=headers)

    app.add_exception_handler(TriageError, answer)
