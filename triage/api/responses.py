"""Every answer the HTTP service gives, typed: one pydantic model per body, and the statuses each route documents.

The models are the OpenAPI document's response schemas (``/openapi.json``), which the fuzzer
(``tests/test_api_fuzz.py``) holds every answer to. A ticket's extracted fields come from the
ticket schema, so listed tickets and details allow keys beyond the ones named here.

Answers are rendered by :class:`SafeJSONResponse`: text echoed from a request (an unknown event
type, a refused field's name) may hold a lone surrogate, which UTF-8 cannot encode; it is
replaced by U+FFFD rather than failing the answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from triage.states.deliveries import DeliveryKind, DeliveryStatus
from triage.states.tickets import Status
from triage.text import repair_strings

#: An ISO-8601 timestamp with its UTC offset, as the store writes them.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class SafeJSONResponse(JSONResponse):
    """JSON whose text is always encodable: lone surrogates in echoed input become U+FFFD."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(repair_strings(content).value)


# ---- errors ----------------------------------------------------------------------------------------

class ErrorAnswer(BaseModel):
    """Every refusal but a validation error: the reason in words."""

    detail: str


class FieldProblem(BaseModel):
    """One problem FastAPI found validating the request (its own format)."""

    model_config = ConfigDict(extra="allow")
    loc: list[str | int]
    msg: str
    type: str


class RequestInvalid(BaseModel):
    """A request that does not match the documented parameters or body (FastAPI's validation answer)."""

    detail: list[FieldProblem]


class SchemaIssue(BaseModel):
    path: str
    message: str


class CorrectionProblem(BaseModel):
    """Why a correction was refused: fields the schema lacks, required fields the ticket still misses
    (a ticket not extracted yet has none), and every schema error with its path."""

    message: str
    fields: list[str] | None = Field(None, description="fields not in the ticket schema")
    missing: list[str] | None = Field(None, description="required fields the corrected ticket would lack")
    errors: list[SchemaIssue] | None = None


class CorrectionRejected(BaseModel):
    detail: CorrectionProblem


STATUS_DESCRIPTIONS = {
    400: "malformed input; the reason is in detail",
    401: "missing or wrong credentials (bearer token, or the webhook's signature)",
    404: "no such ticket (or webhook source)",
    409: "the ticket's status or someone else's claim does not allow it",
    413: "body above its limit (webhooks.max_body_bytes for a webhook, api.max_body_bytes elsewhere)",
    415: "body not sent as application/json",
    422: "the request does not match the documented parameters or body",
    429: "too many failed authentication attempts from this address this minute (api.auth_failures_per_minute): "
         "try again after Retry-After seconds",
    503: "the database or the broker is down",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry documenting each error status with its body model.

    >>> sorted(documented(401, 404))
    [401, 404]
    """
    model: dict[int, type[BaseModel]] = {422: RequestInvalid}
    return {status: {"model": model.get(status, ErrorAnswer), "description": STATUS_DESCRIPTIONS[status]}
            for status in statuses}


# ---- webhooks --------------------------------------------------------------------------------------

class WebhookAccepted(BaseModel):
    ticket_id: int
    status: str
    duplicate: bool = Field(description="the delivery (or its messages) was taken in before; nothing enqueued")
    review: str | None = Field(None, description="only for a helpdesk agent's group or priority change recorded as a "
                               "review label: what it labelled; absent for a conversation")


class WebhookIgnored(BaseModel):
    ignored: str = Field(description="why the event carries nothing to triage")


# ---- dispatch review -------------------------------------------------------------------------------

class ListedTicket(BaseModel):
    """A ticket as listed; its extracted fields (the ticket schema's) are keys of their own beside these."""

    model_config = ConfigDict(extra="allow")
    id: int
    source: str
    external_id: str
    status: str
    route: str | None
    priority: str | None
    sla_due_at: Timestamp | None
    extractor: str | None
    attempts: int
    fallback_reason: str | None
    assigned_to: str | None
    created_at: Timestamp
    confidence: float | None = Field(None, ge=0, le=1, description="the machine's confidence in its routing, in "
                                     "[0, 1] (the lowest routing field's); null on a ticket no machine routed")
    field_confidence: dict[str, float] | None = Field(None, description="the confidence of each routing field")
    autonomy: Literal["auto", "suggest", "review", "shadow"] | None = Field(
        None, description="the autonomy level applied: auto (written back in full), suggest (a note only, until "
        "confirmed), review (needs_review), shadow (nothing written to the helpdesk)")


class TicketPage(BaseModel):
    items: list[ListedTicket]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last")


class TicketRecord(ListedTicket):
    """The listed ticket plus what its detail shows."""

    fields: dict[str, Any] | None
    model: str | None
    schema_version: str | None
    prompt_version: str | None
    fallback_detail: str | None
    fallback_raw_output: str | None
    run: int
    finished_at: Timestamp | None
    resolved_at: Timestamp | None
    trimmed: bool
    flags: dict[str, Any]
    dedupe_of: int | None = Field(None, description="the ticket whose LLM extraction this one reused, with no call "
                                                    "(extractor dedupe); null otherwise")


class StoredMessage(BaseModel):
    role: str
    text: str


class ConversationRecord(BaseModel):
    id: int
    source: str
    external_id: str
    customer: dict[str, Any] | None
    messages: list[StoredMessage]
    received_at: Timestamp | None


class AttemptRecord(BaseModel):
    run: int
    n: int
    model: str
    outcome: str
    raw_output: str | None
    finish_reason: str | None
    error: str | None
    status_code: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    latency_ms: int | None
    max_completion_tokens: int | None
    #: An item of a batch call: the call's id, how many conversations it answered, and its whole raw
    #: output (``raw_output`` is this conversation's own item).
    batch_id: int | None = None
    batch_size: int | None = None
    batch_raw_output: str | None = None
    #: The confidence of the answer that decided the ticket (null on every other attempt).
    confidence: float | None = None
    field_confidence: dict[str, float] | None = None
    created_at: Timestamp | None


class EventRecord(BaseModel):
    actor: str
    kind: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: Timestamp | None


#: What each delivery status means (the outbox's: triage.states.deliveries).
DELIVERY_STATUS_HELP = (
    "pending (waiting for its first attempt or its next retry), delivering (a worker is sending it), "
    "delivered, gone (the platform says the record does not exist, e.g. the ticket was deleted on the "
    "helpdesk: ended, not retried), skipped (the record takes no change, e.g. a closed Zendesk ticket: "
    "ended, not retried, no alert), failed (refused for good, misaddressed, or out of time "
    "(writeback.give_up_after_hours) or attempts (writeback.max_attempts): see last_error; "
    "`triage deliveries --retry ID` tries again), superseded (a newer write-back of the same ticket "
    "replaced it before it ran)")


class DeliveryOut(BaseModel):
    id: str = Field(description="the delivery's id; an event's webhook-id, the same on every retry")
    ticket_id: int
    kind: DeliveryKind = Field(description="writeback, event or alert")
    target: str = Field(description="the platform, `events endpoint <host>` or `alerts webhook`")
    topic: str = Field(description="what it carries: the decision written back (routed, needs_review, corrected, "
                                   "resolved), the event type (ticket.routed...), or the alert (p1, sla_breach)")
    status: DeliveryStatus = Field(description=DELIVERY_STATUS_HELP)
    attempts: int = Field(description="attempts made since the delivery was created or last retried by hand")
    steps_done: list[str] = Field(description="the write-back steps already done (never done again)")
    last_error: str | None = Field(description="the last attempt's error, in the peer's own words")
    last_status: int | None = Field(description="the HTTP status of the last error, when there was one")
    next_attempt_at: Timestamp | None = Field(description="when a pending delivery is tried next")
    created_at: Timestamp
    updated_at: Timestamp
    finished_at: Timestamp | None


class DeliveryPageOut(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last one")


class TicketDetail(BaseModel):
    ticket: TicketRecord
    conversation: ConversationRecord
    attempts: list[AttemptRecord]
    events: list[EventRecord]
    deliveries: list[DeliveryOut] = Field(description="what left triage for this ticket: write-backs, events, "
                                                      "alerts (oldest first)")


class Claimed(BaseModel):
    ticket_id: int
    assigned_to: str


class Requeued(BaseModel):
    ticket_id: int
    status: Literal[Status.QUEUED]


class RouteQueue(BaseModel):
    counts: dict[str, int] = Field(description="tickets per status")
    oldest_sla_due_at: Timestamp | None
    breached: bool
    breached_count: int


class QueueStats(BaseModel):
    routes: dict[str, RouteQueue] = Field(description="per route; tickets without one under (unrouted)")


class Health(BaseModel):
    """Up or down, and nothing more (why goes to the log): ``down`` when the database or the broker is."""

    status: Literal["ok", "down"]
    database: Literal["ok", "down"]
    broker: Literal["ok", "down"]

