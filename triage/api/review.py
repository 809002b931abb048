"""The review endpoints the dispatch desk stands on (bearer-token auth, like the rest of the API).

    DELETE /tickets/{id}/claim               release your claim (409 when someone else holds it)
    POST   /tickets/{id}/resolve             close the ticket (resolved; a new customer message reopens it)
    GET    /stats/accuracy?since=2026-11-01  how often the extractors' values survived review
"""

# No `from __future__ import annotations`: FastAPI reads the dependency in the signatures.
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from triage.api.auth import require_actor
from triage.api.bodies import StrictJSONRoute
from triage.api.guard import AuthGuard
from triage.api.review_models import (
    AccuracyReport,
    CorrectionModel,
    DecisionAccuracyModel,
    ErrorAnswer,
    FieldAccuracyModel,
    ReleasedTicket,
    ResolvedTicket,
    VersionAccuracyModel,
)
from triage.app import App
from triage.states.tickets import Status
from triage.store.accuracy import Accuracy, DecisionAccuracy, FieldAccuracy, accuracy
from triage.store.filters import as_utc
from triage.store.queries import known_ticket_id
from triage.tickets import lifecycle

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorAnswer, "description": "no valid bearer token"},
    429: {"model": ErrorAnswer, "description": "too many failed authentication attempts from this address this "
                                                "minute: try again after Retry-After seconds"}}
TICKET_ERRORS: dict[int | str, dict[str, Any]] = {
    **UNAUTHORIZED,
    404: {"model": ErrorAnswer, "description": "no such ticket"},
    409: {"model": ErrorAnswer, "description": "the ticket's status or claim does not allow it"},
}


def _fields(rows: list[FieldAccuracy]) -> list[FieldAccuracyModel]:
    return [FieldAccuracyModel(field=r.field, reviewed=r.reviewed, corrected=r.corrected, survived=r.survived,
                               survived_share=r.survived_share) for r in rows]


def _decisions(rows: list[DecisionAccuracy]) -> list[DecisionAccuracyModel]:
    return [DecisionAccuracyModel(value=r.value, reviewed=r.reviewed, corrected=r.corrected, survived=r.survived,
                                  survived_share=r.survived_share) for r in rows]


def accuracy_report(report: Accuracy) -> AccuracyReport:
    """The API's view of an :class:`~triage.store.accuracy.Accuracy` report."""
    return AccuracyReport(
        since=report.since, reviewed=report.reviewed, corrected=report.corrected, fields=_fields(report.fields),
        versions=[VersionAccuracyModel(extractor=v.extractor, model=v.model, prompt_version=v.prompt_version,
                                       reviewed=v.reviewed, corrected=v.corrected, fields=_fields(v.fields))
                  for v in report.versions],
        corrections=[CorrectionModel(field=c.field, before=c.before, after=c.after, count=c.count)
                     for c in report.corrections],
        routes=_decisions(report.routes), priorities=_decisions(report.priorities))


def review_router(app: App, guard: AuthGuard) -> APIRouter:
    authenticated = require_actor(app.settings.api.tokens, guard)
    router = APIRouter(tags=["dispatch review"], dependencies=[Depends(authenticated)], route_class=StrictJSONRoute)

    @router.delete("/tickets/{ticket_id}/claim", response_model=ReleasedTicket, responses=TICKET_ERRORS,
                   summary="Release your claim on the ticket (only the holder can)")
    def release_ticket(ticket_id: int, actor: Annotated[str, Depends(authenticated)]) -> ReleasedTicket:
        lifecycle.unassign(app.sessions, known_ticket_id(ticket_id), actor, app.clock.now(), outbox=app.outbox)
        return ReleasedTicket(ticket_id=ticket_id)

    @router.post("/tickets/{ticket_id}/resolve", response_model=ResolvedTicket, responses=TICKET_ERRORS,
                 summary="Close the ticket (a new customer message reopens it)")
    def resolve_ticket(ticket_id: int, actor: Annotated[str, Depends(authenticated)]) -> ResolvedTicket:
        lifecycle.resolve(app.sessions, known_ticket_id(ticket_id), actor, app.clock.now(), outbox=app.outbox)
        return ResolvedTicket(ticket_id=ticket_id, status=Status.RESOLVED)

    @router.get("/stats/accuracy", response_model=AccuracyReport, responses=UNAUTHORIZED,
                summary="How often the extracted values survived review, per field and per extractor version")
    def get_accuracy(since: Annotated[datetime | None, Query(description="reviews from this time on "
                                                                         "(ISO 8601; no zone means UTC)")] = None,
                     ) -> AccuracyReport:
        names = list(app.schema.properties)
        return accuracy_report(accuracy(app.sessions, names, as_utc(since)))

    return router
