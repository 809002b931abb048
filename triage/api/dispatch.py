"""The dispatch review API: list, read, correct, claim and reprocess tickets (bearer-token auth).

    GET  /tickets?status=routed&order=sla&limit=50   newest first, or SLA-breached first
    GET  /tickets/{id}                               ticket, conversation, attempts, audit events
    PATCH /tickets/{id}  {"urgent_level": "high"}    validated, re-routed, status corrected
    POST /tickets/{id}/claim                         409 when someone else holds it
    POST /tickets/{id}/reprocess                     through extraction again
    GET  /queues                                     counts per route and status, oldest SLA due
"""

# No `from __future__ import annotations`: FastAPI must see the local `authenticated` dependency
# in the endpoint signatures, which string annotations would hide.
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, status

from triage.api.auth import require_actor
from triage.components import Components
from triage.store import review
from triage.store.models import utcnow
from triage.store.tickets import CursorError, Order, TicketFilter, list_tickets, queue_stats, ticket_detail


def _not_found(ticket_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no ticket {ticket_id}")


def dispatch_router(parts: Components, enqueue: Callable[[int], None]) -> APIRouter:
    authenticated = require_actor(parts.settings.api.tokens)
    router = APIRouter(tags=["dispatch review"], dependencies=[Depends(authenticated)])
    page_max = parts.settings.api.page_size_max

    @router.get("/tickets", summary="List tickets")
    def get_tickets(
        status_: Annotated[str | None, Query(alias="status")] = None,
        route: str | None = None,
        problem_type: str | None = None,
        urgent_level: str | None = None,
        since: datetime | None = None,
        order: Annotated[Order, Query(description="newest (default), oldest, or sla (breached first)")] = "newest",
        limit: Annotated[int, Query(ge=1, le=page_max)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        filters = TicketFilter(status=status_, route=route, problem_type=problem_type,
                               urgent_level=urgent_level, since=since)
        try:
            page = list_tickets(parts.sessions, filters, order=order, limit=limit, cursor=cursor)
        except CursorError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        return {"items": [view.to_json() for view in page.items], "next_cursor": page.next_cursor}

    @router.get("/tickets/{ticket_id}", summary="One ticket with its conversation, attempts and audit trail")
    def get_ticket(ticket_id: int) -> dict[str, Any]:
        detail = ticket_detail(parts.sessions, ticket_id)
        if detail is None:
            raise _not_found(ticket_id)
        return detail

    @router.patch("/tickets/{ticket_id}", summary="Correct a ticket's fields (re-routes it)")
    def patch_ticket(ticket_id: int, actor: Annotated[str, Depends(authenticated)],
                     changes: Annotated[dict[str, Any], Body(examples=[{"urgent_level": "high"}])]) -> dict[str, Any]:
        current = review.current_fields(parts.sessions, ticket_id)
        if current is None:
            raise _not_found(ticket_id)
        unknown = sorted(set(changes) - set(parts.schema.properties))
        if unknown:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                {"message": "fields not in the ticket schema", "fields": unknown})
        fields = parts.schema.project({**current, **changes})
        issues = parts.schema.validate(fields)
        if issues:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                {"message": "the corrected ticket does not match the schema",
                                 "errors": [{"path": i.path, "message": i.message} for i in issues]})
        review.correct(parts.sessions, ticket_id, actor, fields, parts.router.route(fields, utcnow()))
        return get_ticket(ticket_id)

    @router.post("/tickets/{ticket_id}/claim", summary="Assign the ticket to the caller")
    def claim_ticket(ticket_id: int, actor: Annotated[str, Depends(authenticated)]) -> dict[str, Any]:
        result = review.assign(parts.sessions, ticket_id, actor)
        if not result.found:
            raise _not_found(ticket_id)
        if result.conflict:
            raise HTTPException(status.HTTP_409_CONFLICT, f"ticket {ticket_id} is claimed by {result.assigned_to}")
        return {"ticket_id": ticket_id, "assigned_to": result.assigned_to}

    @router.post("/tickets/{ticket_id}/reprocess", status_code=status.HTTP_202_ACCEPTED,
                 summary="Send the ticket through extraction again")
    def reprocess_ticket(ticket_id: int, actor: Annotated[str, Depends(authenticated)]) -> dict[str, Any]:
        if not review.reprocess(parts.sessions, ticket_id, actor):
            raise _not_found(ticket_id)
        enqueue(ticket_id)
        return {"ticket_id": ticket_id, "status": "queued"}

    @router.get("/queues", summary="Counts per route and status, oldest SLA due time per route")
    def get_queues() -> dict[str, Any]:
        return queue_stats(parts.sessions)

    return router
