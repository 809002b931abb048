"""The one place errors become HTTP answers: ``{"detail": "<reason>"}`` with the status below.

Triage's own errors map by kind (:data:`STATUS_BY_KIND`); FastAPI's (an ``HTTPException``, a
request that fails validation) keep their status and format. Every answer is rendered by
:class:`~triage.api.responses.SafeJSONResponse`, so echoed input can never break it.

>>> from triage.store.queries import TicketNotFoundError
>>> http_status(TicketNotFoundError(7))
404
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException

from triage.api.guard import TooManyFailuresError
from triage.api.responses import SafeJSONResponse
from triage.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    DatabaseNotReadyError,
    InputError,
    NotFoundError,
    RejectedError,
    TriageError,
)

#: The first class an error is an instance of decides its status (order matters for multiple bases).
STATUS_BY_KIND: tuple[tuple[type[TriageError], int], ...] = (
    (TooManyFailuresError, 429),
    (AuthError, 401),
    (InputError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (RejectedError, 422),
    (DatabaseNotReadyError, 503),
    (ConfigError, 500),  # our configuration: the sender should retry once it is fixed
)
INTERNAL = 500
VALIDATION_STATUS = 422


def http_status(exc: TriageError) -> int:
    return next((status for kind, status in STATUS_BY_KIND if isinstance(exc, kind)), INTERNAL)


def install(app: FastAPI) -> None:
    """Answer every :class:`~triage.errors.TriageError` an endpoint raises with its status and reason, and
    FastAPI's own errors in their usual format."""

    async def answer(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, TriageError)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        if isinstance(exc, TooManyFailuresError):
            headers = {"Retry-After": str(exc.retry_after)}
        detail = exc.detail() if isinstance(exc, RejectedError) else str(exc)
        return SafeJSONResponse({"detail": detail}, status_code=http_status(exc), headers=headers)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if not is_body_allowed_for_status_code(exc.status_code):
            return Response(status_code=exc.status_code, headers=exc.headers)
        return SafeJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def invalid_request(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return SafeJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=VALIDATION_STATUS)

    app.add_exception_handler(TriageError, answer)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
