"""The dispatch review API: list, read, correct, claim and reprocess tickets (bearer-token auth).

    GET  /tickets?status=routed&order=sla&limit=50   newest first, or SLA-breached first
         &assigned_to=me&priority=P1&q=wi-fi          held by the caller, of a priority, text search
         &autonomy=suggest                            by the autonomy level applied
    GET  /tickets/{id}                               ticket, conversation, attempts, audit events
    PATCH /tickets/{id}  {"urgent_level": "high"}    validated, re-routed, status corrected
    POST /tickets/{id}/claim                         409 when someone else holds it
    POST /tickets/{id}/reprocess                     through extraction again
    POST /tickets/{id}/confirm                       a suggestion as it is: written back in full, a review

A ticket someone holds is theirs: another person's PATCH, confirm, reprocess, resolve or release is a 409
naming the holder (the lifecycle decides, under the row lock; so does the desk).
    GET  /queues                                     counts per route and status, oldest SLA due

Views are thin: the queries are :mod:`triage.store.queries`, every change :mod:`triage.tickets.lifecycle`,
and errors become answers in :mod:`triage.api.error_answers`. Every answer has its model in
:mod:`triage.api.responses` and every status a route can give is documented there.
"""

# No `from __future__ import annotations`: FastAPI must see the local `authenticated` dependency
# and the field-filter model in the endpoint signatures, which string annotations would hide.
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Depends, Query, status
from pydantic import BaseModel, Field, create_model

from triage.api.auth import require_actor
from triage.api.bodies import StrictJSONRoute
from triage.api.guard import AuthGuard
from triage.api.params import TicketId, plain_query
from triage.api.responses import (
    Claimed,
    CorrectionRejected,
    QueueStats,
    RequestInvalid,
    Requeued,
    TicketDetail,
    TicketPage,
    documented,
)
from triage.app import App
from triage.states.autonomy import Level
from triage.states.tickets import Status
from triage.store.filters import FilterValues, as_utc
from triage.store.queries import (
    Order,
    TicketFilter,
    TicketNotFoundError,
    list_tickets,
    queue_stats,
    ticket_detail,
)
from triage.tickets import lifecycle

#: ``assigned_to=me``: the caller's tickets.
ME = "me"
#: The longest text search accepted.
SEARCH_MAX_CHARS = 200


def _field_filters(names: list[str]) -> type[BaseModel]:
    """A query-parameter model with one optional parameter per filterable ticket field."""
    fields: dict[str, Any] = {name: (str | None, Field(None, description=f"tickets whose {name} is this value"))
                              for name in names}
    return create_model("FieldFilters", **fields)


#: The 422 of a correction: the schema's refusal, or FastAPI's for a body that is not an object.
CORRECTION_422 = {"model": CorrectionRejected | RequestInvalid,
                  "description": "fields not in the ticket schema, required fields missing, or schema errors "
                                 "(each with its path); or a body that is not a JSON object"}


def dispatch_router(app: App, publish: Callable[[int], None], guard: AuthGuard) -> APIRouter:
    authenticated = require_actor(app.settings.api.tokens, guard)
    router = APIRouter(tags=["dispatch review"], dependencies=[Depends(authenticated), Depends(plain_query)],
                       route_class=StrictJSONRoute,
                       responses=documented(400, 401, 429))
    page_max = app.settings.api.page_size_max
    FieldFilters = _field_filters(app.settings.api.filter_fields)  # noqa: N806 (a class)
    allowed = FilterValues.of(app.settings, app.schema)

    @router.get("/tickets", summary="List tickets", response_model=TicketPage, responses=documented(422))
    def get_tickets(
        actor: Annotated[str, Depends(authenticated)],
        by_field: Annotated[FieldFilters, Query()],  # type: ignore[valid-type]
        status_: Annotated[str | None, Query(alias="status")] = None,
        route: str | None = None,
        priority: str | None = None,
        assigned_to: Annotated[str | None, Query(description="held by this person; `me`: by the caller")] = None,
        q: Annotated[str | None, Query(max_length=SEARCH_MAX_CHARS,
                                       description="case-insensitive text in the conversation or the fields")] = None,
        since: datetime | None = None,
        autonomy: Annotated[Level | None, Query(description="the autonomy level applied; `autonomy=suggest&"
                                                     "status=routed`: the suggestions waiting for Confirm")] = None,
        order: Annotated[Order, Query(description="newest (default), oldest, or sla (breached first)")] = "newest",
        limit: Annotated[int, Query(ge=1, le=page_max)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        values = cast(BaseModel, by_field).model_dump()
        wanted = {name: value for name, value in values.items() if value is not None}
        holder = actor if assigned_to == ME else assigned_to
        filters = TicketFilter(status=status_, route=route, priority=priority, fields=wanted, since=as_utc(since),
                               assigned_to=holder, search=q, autonomy=autonomy)
        allowed.check(filters)
        page = list_tickets(app.sessions, filters, order=order, limit=limit, cursor=cursor)
        return {"items": [view.to_json() for view in page.items], "next_cursor": page.next_cursor}

    @router.get("/tickets/{ticket_id}", summary="One ticket with its conversation, attempts and audit trail",
                response_model=TicketDetail, responses=documented(404, 422))
    def get_ticket(ticket_id: TicketId) -> dict[str, Any]:
        detail = ticket_detail(app.sessions, ticket_id)
        if detail is None:
            raise TicketNotFoundError(ticket_id)
        return detail

    @router.patch("/tickets/{ticket_id}", summary="Correct a ticket's fields (re-routes it)",
                  response_model=TicketDetail, responses={**documented(404, 409, 413), 422: CORRECTION_422})
    def patch_ticket(ticket_id: TicketId, actor: Annotated[str, Depends(authenticated)],
                     changes: Annotated[dict[str, Any], Body(examples=[{"urgent_level": "high"}])]) -> dict[str, Any]:
        lifecycle.correct(app.sessions, ticket_id, actor, changes, app.schema, app.router, app.clock.now(),
                          outbox=app.outbox)
        return get_ticket(ticket_id)

    @router.post("/tickets/{ticket_id}/claim", summary="Assign the ticket to the caller", response_model=Claimed,
                 responses=documented(404, 409, 422))
    def claim_ticket(ticket_id: TicketId, actor: Annotated[str, Depends(authenticated)]) -> dict[str, Any]:
        lifecycle.assign(app.sessions, ticket_id, actor, app.clock.now(), outbox=app.outbox)
        return {"ticket_id": ticket_id, "assigned_to": actor}

    @router.post("/tickets/{ticket_id}/confirm", summary="Confirm a routed ticket in suggestion as it is",
                 description="The suggestion (autonomy suggest) becomes the caller's decision: status corrected, "
                 "fields and route unchanged, the helpdesk gets group, priority and tags. It counts as a review "
                 "that kept every field. 409 when someone else holds the ticket or it is not a suggestion.",
                 response_model=TicketDetail, responses=documented(404, 409, 422))
    def confirm_ticket(ticket_id: TicketId, actor: Annotated[str, Depends(authenticated)]) -> dict[str, Any]:
        lifecycle.confirm(app.sessions, ticket_id, actor, app.clock.now(), outbox=app.outbox)
        return get_ticket(ticket_id)

    @router.post("/tickets/{ticket_id}/reprocess", status_code=status.HTTP_202_ACCEPTED,
                 summary="Send the ticket through extraction again", response_model=Requeued,
                 responses=documented(404, 409, 422))
    def reprocess_ticket(ticket_id: TicketId, actor: Annotated[str, Depends(authenticated)]) -> dict[str, Any]:
        lifecycle.reprocess(app.sessions, ticket_id, actor, app.clock.now(), outbox=app.outbox)
        publish(ticket_id)
        return {"ticket_id": ticket_id, "status": Status.QUEUED}

    @router.get("/queues", summary="Counts per route and status, oldest SLA due time per route",
                response_model=QueueStats)
    def get_queues() -> dict[str, Any]:
        return queue_stats(app.sessions, app.clock.now())

    return router
