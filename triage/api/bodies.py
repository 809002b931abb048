"""Request bodies: each route's JSON read as intake reads a webhook's, refused with a reason otherwise.

FastAPI reads a JSON body with ``json.loads``, which takes a key given twice (the last one wins),
``NaN`` and integers of any length. :class:`StrictJSONRoute` (every router's ``route_class``) reads
it with :func:`triage.intake.jsonbody.load_json` instead: such a body is a 400 naming the
problem, before the endpoint runs, and nothing is stored. What a body may weigh is the app's
``max_body_size`` (``api.max_body_bytes``), set in :func:`triage.api.app.create_app`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute

from triage.errors import InputError
from triage.intake.jsonbody import load_json


class StrictJSONRequest(Request):
    """A request whose :meth:`json` refuses what :func:`~triage.intake.jsonbody.load_json` refuses (400)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = load_json(await self.body(), InputError, subject="body")
            except InputError as exc:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose endpoint reads the body through :class:`StrictJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
