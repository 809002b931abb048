"""The outbox seen from the API: ``GET /deliveries?status=failed`` (bearer tokens, as the dispatch API).

    GET /deliveries?status=failed&ticket_id=42&limit=50&cursor=...   newest first, pages with next_cursor

A delivery names its target without a secret (a platform, an events endpoint's host, the alerts
webhook) and never shows what it sends; ``last_error`` is the platform's own words with our
credentials scrubbed.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint's annotations at run time.
from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from triage.api.auth import require_actor
from triage.app import App
from triage.outbox.states import DeliveryKind, DeliveryStatus
from triage.store.deliveries import list_deliveries

STATUS_HELP = ("pending (waiting for its first attempt or its next retry), delivering (a worker is sending it), "
               "delivered, gone (the target no longer exists, e.g. the ticket was deleted on the helpdesk: ended, "
               "not retried), failed (refused for good, or writeback.max_attempts spent: see last_error; "
               "`triage deliveries --retry ID` tries again), superseded (a newer write-back of the same ticket "
               "replaced it before it ran)")


class DeliveryOut(BaseModel):
    id: str = Field(description="the delivery's id; an event's webhook-id, the same on every retry")
    ticket_id: int
    kind: DeliveryKind = Field(description="writeback, event or alert")
    target: str = Field(description="the platform, `events endpoint <host>` or `alerts webhook`")
    topic: str = Field(description="what it carries: the decision written back (routed, needs_review, corrected, "
                                   "resolved), the event type (ticket.routed...), or the alert (p1, sla_breach)")
    status: DeliveryStatus = Field(description=STATUS_HELP)
    attempts: int = Field(description="attempts made (at most writeback.max_attempts)")
    steps_done: list[str] = Field(description="the write-back steps already done (never done again)")
    last_error: str | None = Field(description="the last attempt's error, in the peer's own words")
    last_status: int | None = Field(description="the HTTP status of the last error, when there was one")
    next_attempt_at: datetime | None = Field(description="when a pending delivery is tried next")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class DeliveryPageOut(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last one")


def deliveries_router(app: App) -> APIRouter:
    authenticated = require_actor(app.settings.api.tokens)
    router = APIRouter(tags=["outbox"], dependencies=[Depends(authenticated)])
    page_max = app.settings.api.page_size_max

    @router.get("/deliveries", response_model=DeliveryPageOut, summary="Outbox deliveries, newest first",
                responses={400: {"description": "a cursor this listing did not hand out"},
                           401: {"description": "no valid bearer token"}})
    def get_deliveries(
        status_: Annotated[DeliveryStatus | None, Query(alias="status", description=STATUS_HELP)] = None,
        ticket_id: Annotated[int | None, Query(ge=1, description="only this ticket's deliveries")] = None,
        limit: Annotated[int, Query(ge=1, le=page_max)] = 50,
        cursor: str | None = None,
    ) -> DeliveryPageOut:
        page = list_deliveries(app.sessions, status=status_, ticket_id=ticket_id, limit=limit, cursor=cursor)
        return DeliveryPageOut(items=[DeliveryOut(**asdict(view)) for view in page.items],
                               next_cursor=page.next_cursor)

    return router
