"""The outbox seen from the API: ``GET /deliveries?status=failed`` (bearer tokens, as the dispatch API).

    GET /deliveries?status=failed&ticket_id=42&limit=50&cursor=...   newest first, pages with next_cursor

A delivery names its target without a secret (a platform, an events endpoint's host, the alerts
webhook) and never shows what it sends; ``last_error`` is the platform's own words with our
credentials scrubbed.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint's annotations at run time.
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from triage.api.auth import require_actor
from triage.api.bodies import StrictJSONRoute
from triage.api.guard import AuthGuard
from triage.api.responses import DELIVERY_STATUS_HELP, DeliveryOut, DeliveryPageOut
from triage.app import App
from triage.states.deliveries import DeliveryStatus
from triage.store.deliveries import list_deliveries


def deliveries_router(app: App, guard: AuthGuard) -> APIRouter:
    authenticated = require_actor(app.settings.api.tokens, guard)
    router = APIRouter(tags=["outbox"], dependencies=[Depends(authenticated)], route_class=StrictJSONRoute)
    page_max = app.settings.api.page_size_max

    @router.get("/deliveries", response_model=DeliveryPageOut, summary="Outbox deliveries, newest first",
                responses={400: {"description": "a cursor this listing did not hand out"},
                           401: {"description": "no valid bearer token"},
                           429: {"description": "too many failed authentication attempts from this address this "
                                                "minute: try again after Retry-After seconds"}})
    def get_deliveries(
        status_: Annotated[DeliveryStatus | None, Query(alias="status", description=DELIVERY_STATUS_HELP)] = None,
        ticket_id: Annotated[int | None, Query(ge=1, description="only this ticket's deliveries")] = None,
        limit: Annotated[int, Query(ge=1, le=page_max)] = 50,
        cursor: str | None = None,
    ) -> DeliveryPageOut:
        page = list_deliveries(app.sessions, status=status_, ticket_id=ticket_id, limit=limit, cursor=cursor)
        return DeliveryPageOut(items=[DeliveryOut(**view.to_json()) for view in page.items],
                               next_cursor=page.next_cursor)

    return router
