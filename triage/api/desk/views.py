"""The dispatch desk's pages: sign in, the queue, a ticket, quality. Thin over the queries and the lifecycle.

    GET  /desk/                      the queue (filters in the query string; refreshes itself)
    GET  /desk/tickets/{id}          one ticket: conversation, fields, routing, attempts, audit trail
    POST /desk/tickets/{id}/claim    | release | correct | confirm | resolve | reprocess   (forms, CSRF-checked)
    GET  /desk/quality?since=DATE    how often the extracted values survived review, with a chart
    GET  /desk/sign-in, POST /desk/sign-in, POST /desk/sign-out

Every form posts back and is answered with a redirect (303) to the page it came from, so the
desk works without JavaScript; htmx (a static file) only refreshes the queue's table in place.
"""

# No `from __future__ import annotations`: FastAPI reads the parameter annotations.
import base64
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from triage.api.bodies import StrictJSONRoute
from triage.api.desk import forms
from triage.api.desk.render import environment
from triage.api.desk.session import PRESESSION_COOKIE, PRESESSION_SECONDS, SESSION_COOKIE, DeskSession, SessionKeys
from triage.api.error_answers import http_status
from triage.api.guard import AuthGuard, TooManyFailuresError
from triage.app import App
from triage.errors import TriageError
from triage.evaluation.charts import ChartsUnavailableError, CoveragePanel, coverage_png
from triage.states.autonomy import Level, band
from triage.states.tickets import Action, Status
from triage.store.accuracy import accuracy
from triage.store.filters import FilterValues, UnknownFilterValueError, as_utc
from triage.store.queries import (
    MAX_TICKET_ID,
    CursorError,
    Order,
    TicketFilter,
    breached_among,
    known_ticket_id,
    list_tickets,
    queue_stats,
    ticket_detail,
)
from triage.tickets import lifecycle
from triage.tickets.route_quality import RouteQuality, route_quality

log = logging.getLogger(__name__)

DESK_PATH = "/desk/"
SIGN_IN_PATH = "/desk/sign-in"
STATIC_PATH = "/desk/static"
#: Tickets per page of the queue.
DESK_PAGE_SIZE = 50
#: A message longer than this shows its beginning; the rest starts collapsed.
LONG_TEXT_CHARS = 3000
SESSION_SECRET_BYTES = 32
#: What the desk's pages may load: only this server's own files, no inline script, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
#: The notice shown after an action (``?done=claimed``); the text is ours, never taken from the URL.
NOTICES = {"claimed": "You claimed this ticket.", "released": "You released this ticket.",
           "corrected": "Correction saved: the ticket was routed again.", "resolved": "Ticket resolved.",
           "reprocess": "Sent for a new extraction.", "signed_out": "You are signed out.",
           "confirmed": "Suggestion confirmed: the helpdesk gets the whole decision."}
#: The ticket page's buttons and the lifecycle action each one takes (the page offers what the lifecycle permits).
ACTIONS = {"claim": Action.ASSIGN, "release": Action.UNASSIGN, "correct": Action.CORRECT, "resolve": Action.RESOLVE,
           "reprocess": Action.REPROCESS, "confirm": Action.CONFIRM}
#: How the desk names the confidence bands.
BAND_NAMES = {"high": "High", "medium": "Medium", "low": "Low"}
ORDERS: dict[str, str] = {"sla": "SLA due first", "newest": "Newest first", "oldest": "Oldest first"}
HTML_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "the page"},
    303: {"description": "not signed in: to the sign-in page"},
    400: {"content": {"text/html": {}}, "description": "a filter value no ticket can have, or a cursor this page "
                                                        "did not hand out: the page says which"},
    422: {"content": {"text/html": {}}, "description": "a request the page cannot read (what is wrong is on it)"},
}
FORM_ANSWERS: dict[int | str, dict[str, Any]] = {
    303: {"description": "done (back to the ticket), or not signed in (to the sign-in page)"},
    403: {"content": {"text/html": {}}, "description": "the form's CSRF token is missing or wrong"},
    404: {"content": {"text/html": {}}, "description": "no such ticket"},
    409: {"content": {"text/html": {}}, "description": "the ticket's status or claim does not allow it"},
    422: {"content": {"text/html": {}}, "description": "a request the page cannot read (what is wrong is on it)"},
}


class SignInRequired(Exception):  # noqa: N818 (a redirect, not an error)
    """No valid desk session: the page answers with a redirect to the sign-in page."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@dataclass(frozen=True)
class Viewer:
    """The signed-in person on this request, with the CSRF token their forms carry."""

    session: DeskSession
    csrf: str

    @property
    def actor(self) -> str:
        return self.session.actor


def _safe_next(path: str | None) -> str:
    """Where to go after signing in: a desk page of ours, never another site."""
    return path if path and path.startswith(DESK_PATH) and not path.startswith("//") and "\\" not in path \
        else DESK_PATH


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")


class Desk:
    """The pages, over one :class:`~triage.app.App`."""

    def __init__(self, app: App, keys: SessionKeys, publish: Callable[[int], None], guard: AuthGuard) -> None:
        self.app, self.keys, self.publish, self.guard = app, keys, publish, guard
        self.templates = environment()
        self.values = FilterValues.of(app.settings, app.schema)

    # ---- rendering ---------------------------------------------------------------------------------

    def page(self, name: str, viewer: Viewer | None, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(
            static=STATIC_PATH, desk=DESK_PATH, actor=viewer.actor if viewer else None,
            csrf=viewer.csrf if viewer else "", now=self.app.clock.now(), **context)
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)

    def viewer(self, request: Request) -> Viewer:
        """The signed-in person; :class:`SignInRequired` otherwise."""
        session = self.keys.read(request.cookies.get(SESSION_COOKIE))
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(target if request.method == "GET" else DESK_PATH)
        return Viewer(session, self.keys.csrf_token(session.sid))

    # ---- sign-in -----------------------------------------------------------------------------------

    def sign_in_page(self, request: Request, next_path: str, error: str | None = None, status_code: int = 200,
                     notice: str | None = None) -> HTMLResponse:
        sid, cookie = self.keys.new_presession()
        response = self.page("sign_in.html", None, status_code, sign_in_csrf=self.keys.csrf_token(sid),
                             next_path=_safe_next(next_path), error=error, notice=notice)
        _cookie(response, request, PRESESSION_COOKIE, cookie, PRESESSION_SECONDS)
        return response

    def sign_in(self, request: Request, token: str, csrf_token: str, next_path: str) -> Response:
        presession = self.keys.read_presession(request.cookies.get(PRESESSION_COOKIE))
        if not self.keys.csrf_ok(presession, csrf_token):
            return self.sign_in_page(request, next_path, "The sign-in form expired. Please try again.", 403)
        try:
            self.guard.check(request)
        except TooManyFailuresError as exc:
            page = self.sign_in_page(request, next_path, f"Too many failed sign-ins from your address: try again "
                                                         f"in {exc.retry_after} s.", 429)
            page.headers["Retry-After"] = str(exc.retry_after)
            return page
        session = self.keys.sign_in(token)
        if session is None:
            self.guard.failed(request)
            return self.sign_in_page(request, next_path, "That access token is not valid.", 401)
        response = RedirectResponse(_safe_next(next_path), status_code=303)
        _cookie(response, request, SESSION_COOKIE, self.keys.cookie(session), self.keys.max_age)
        response.delete_cookie(PRESESSION_COOKIE, path="/")
        return response

    # ---- the queue ---------------------------------------------------------------------------------

    def queue(self, viewer: Viewer, chosen: dict[str, str], cursor: str | None,
              order: Order) -> HTMLResponse:
        filters = TicketFilter(route=chosen["route"] or None, status=chosen["status"] or None,
                               priority=chosen["priority"] or None, search=chosen["q"] or None,
                               assigned_to=viewer.actor if chosen["mine"] else None)
        now = self.app.clock.now()
        error, items, next_cursor, status_code = None, [], None, 200
        try:
            self.values.check(filters)
            page = list_tickets(self.app.sessions, filters, order=order, limit=DESK_PAGE_SIZE, cursor=cursor)
            items, next_cursor = page.items, page.next_cursor
        except (UnknownFilterValueError, CursorError) as exc:
            error, status_code = str(exc), http_status(exc)
        suggestions = list_tickets(self.app.sessions, TicketFilter(status=Status.ROUTED, autonomy=Level.SUGGEST),
                                   order="sla", limit=DESK_PAGE_SIZE).items
        query = {key: value for key, value in chosen.items() if value}
        if order != "sla":
            query["order"] = order
        here = dict(query, cursor=cursor) if cursor else query
        return self.page(
            "queue.html", viewer, status_code, error=error, tickets=items, suggestions=suggestions, trust=self.trust,
            chosen=chosen, order=order,
            orders=ORDERS, values=self.values, statuses=list(Status), stats=queue_stats(self.app.sessions, now),
            breached=breached_among(self.app.sessions, [t.id for t in items], now),
            columns=self.app.settings.api.filter_fields, refresh=self.app.settings.api.desk_refresh_seconds,
            refresh_url=f"{DESK_PATH}?{urlencode(here)}",
            next_url=f"{DESK_PATH}?{urlencode(dict(query, cursor=next_cursor))}" if next_cursor else None,
            first_url=f"{DESK_PATH}?{urlencode(query)}" if cursor else None)

    # ---- a ticket ----------------------------------------------------------------------------------

    def ticket(self, viewer: Viewer, ticket_id: int, *, notice: str | None = None,
               error: str | None = None, status_code: int = 200, submitted: dict[str, Any] | None = None,
               problems: Mapping[str, str] | None = None) -> HTMLResponse:
        detail = ticket_detail(self.app.sessions, ticket_id) if 0 < ticket_id <= MAX_TICKET_ID else None
        if detail is None:
            return self.page("error.html", viewer, 404, title="Not found",
                             message=f"There is no ticket {ticket_id}.")
        ticket = detail["ticket"]
        holder = ticket["assigned_to"]
        allowed = {name: lifecycle.permitted(action, ticket["status"], holder, viewer.actor)
                   for name, action in ACTIONS.items()}
        suggestion = lifecycle.awaits_confirmation(ticket["status"], ticket["autonomy"])
        allowed["confirm"] = allowed["confirm"] and suggestion
        fields = submitted if submitted is not None else dict(ticket["fields"] or {})
        return self.page(
            "ticket.html", viewer, status_code, ticket=ticket, conversation=detail["conversation"],
            messages=[_message(m) for m in detail["conversation"]["messages"]], attempts=detail["attempts"],
            deliveries=detail["deliveries"], trust=self.trust(ticket["confidence"], ticket["route"]),
            events=[_event(e) for e in detail["events"]], holder=holder, allowed=allowed, suggestion=suggestion,
            breached=bool(breached_among(self.app.sessions, [ticket_id], self.app.clock.now())),
            routing=self.routing(ticket), controls=forms.controls(self.app.schema, fields),
            problems=problems or {}, whole_ticket=(problems or {}).get(forms.WHOLE_TICKET), notice=notice,
            error=error, field_prefix=forms.FIELD_PREFIX, none_prefix=forms.NONE_PREFIX)

    def trust(self, confidence: float | None, route: str | None) -> str:
        """The confidence as the desk shows it: the number and its band on the ticket's route (``0.82 High``),
        or a dash before one is known."""
        if confidence is None:
            return "—"
        limits = self.app.settings.autonomy.thresholds(route)
        named = band(confidence, limits.auto_above, limits.review_below)
        return f"{confidence:.2f} {BAND_NAMES[named]}" if named else f"{confidence:.2f}"

    def routing(self, ticket: Mapping[str, Any]) -> str:
        """Why the ticket is on its route, in words: the rule that matched, or the fallback target."""
        settings = self.app.settings.routing
        if ticket["route"] is None:
            return "Not routed yet."
        if ticket["fallback_reason"] or ticket["status"] == Status.NEEDS_REVIEW:
            reason = f" (reason: {ticket['fallback_reason']})" if ticket["fallback_reason"] else ""
            return f"Sent to a person: the fallback target {settings.fallback.route}{reason}."
        found = self.app.router.rule_for(dict(ticket["fields"] or {}))
        if found is not None and (found[1].route, found[1].priority) == (ticket["route"], ticket["priority"]):
            index, rule = found
            when = ", ".join(f"{name} = {' or '.join(map(str, v)) if isinstance(v, list) else v}"
                             for name, v in rule.when.items()) or "any ticket"
            return (f"Rule routing.rules[{index}] matched ({when}): {rule.route}, {rule.priority}, "
                    f"SLA {rule.sla_hours:g} h.")
        if found is None and ticket["route"] == settings.fallback.route:
            return f"No rule matched: the fallback target {settings.fallback.route}."
        return "Routed by an earlier version of the routing rules."

    def act(self, viewer: Viewer, ticket_id: int, done: str, action: Callable[[], None]) -> Response:
        """Run a person's action, then back to the ticket; the lifecycle's refusal (someone else's claim, a
        status that does not allow it) re-renders the ticket with the reason."""
        try:
            known_ticket_id(ticket_id)
            action()
        except TriageError as exc:
            return self.ticket(viewer, ticket_id, error=str(exc), status_code=http_status(exc))
        return RedirectResponse(f"{DESK_PATH}tickets/{ticket_id}?done={done}", status_code=303)

    def correct(self, viewer: Viewer, ticket_id: int, form: forms.Form) -> Response:
        """The form's fields through the lifecycle's correction; what the form or the schema refuses is shown
        next to its field, nothing saved."""
        fields, problems = forms.read_form(self.app.schema, form)
        if not problems:
            try:
                known_ticket_id(ticket_id)
                lifecycle.correct(self.app.sessions, ticket_id, viewer.actor, fields, self.app.schema,
                                  self.app.router, self.app.clock.now(), outbox=self.app.outbox)
            except lifecycle.CorrectionRejectedError as exc:
                problems = forms.issues_by_field(exc.issues, list(self.app.schema.properties)) \
                    or {forms.WHOLE_TICKET: str(exc)}
            except TriageError as exc:
                return self.ticket(viewer, ticket_id, error=str(exc), status_code=http_status(exc))
            else:
                return RedirectResponse(f"{DESK_PATH}tickets/{ticket_id}?done=corrected", status_code=303)
        return self.ticket(viewer, ticket_id, submitted=fields, problems=problems, status_code=422,
                           error="The correction was not saved: see the fields marked below.")

    def reprocess(self, ticket_id: int, actor: str) -> None:
        lifecycle.reprocess(self.app.sessions, ticket_id, actor, self.app.clock.now(), outbox=self.app.outbox)
        self.publish(ticket_id)

    # ---- quality -----------------------------------------------------------------------------------

    def quality(self, viewer: Viewer, since_text: str) -> HTMLResponse:
        since, error = None, None
        if since_text:
            try:
                since = as_utc(datetime.fromisoformat(since_text))
            except ValueError:
                error = f"{since_text!r} is not a date (use YYYY-MM-DD)."
        report = accuracy(self.app.sessions, list(self.app.schema.properties), since)
        target = self.app.settings.quality.target_precision
        routes = route_quality(self.app.sessions, self.app.router, self.app.settings.autonomy, target, since)
        return self.page("quality.html", viewer, 400 if error else 200, report=report, routes=routes,
                         target=target, curves=_curves_png(routes, target), since_text=since_text, error=error)


def _curves_png(routes: list[RouteQuality], target: float) -> str | None:
    """The routes' coverage-accuracy curves (those with scored reviews) as a ``data:`` PNG URL; None when there
    is nothing to draw or matplotlib is not installed (the tables still say it all)."""
    drawn = [route for route in routes if route.curve]
    if not drawn:
        return None
    panels = [CoveragePanel(f"{route.route} ({route.level})", [(p.coverage, p.precision) for p in route.curve],
                            [(label, point.coverage, point.precision) for label, point in (
                                (f"auto_above {route.auto_above:g}", route.at_auto_above),
                                (f"review_below {route.review_below:g}", route.at_review_below),
                                (f"reaches {target:g} at {route.reaching_target.threshold:.2f}"
                                 if route.reaching_target else "", route.reaching_target)) if point is not None],
                            target) for route in drawn]
    try:
        png = coverage_png(panels)
    except ChartsUnavailableError as exc:
        log.info("quality page without its chart: %s", exc)
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    text = str(message.get("text", ""))
    return {"role": message.get("role"), "head": text[:LONG_TEXT_CHARS], "rest": text[LONG_TEXT_CHARS:],
            "length": len(text)}


def _event(event: Mapping[str, Any]) -> dict[str, Any]:
    """An audit event with what it changed, one line per key (fields one by one)."""
    before, after = event.get("before") or {}, event.get("after") or {}
    changes = []
    for key in after:
        if key == "fields":
            old, new = before.get("fields") or {}, after.get("fields") or {}
            changes += [(f"fields.{name}", old.get(name), new.get(name))
                        for name in new if old.get(name) != new.get(name)]
        elif before.get(key) != after.get(key):
            changes.append((key, before.get(key), after.get(key)))
    return {**event, "changes": changes}


def _router(desk: Desk) -> APIRouter:
    router = APIRouter(prefix="/desk", tags=["desk"], route_class=StrictJSONRoute)
    Signed = Annotated[Viewer, Depends(desk.viewer)]  # noqa: N806 (a type)

    def checked(viewer: Viewer, csrf_token: str) -> None:
        if not desk.keys.csrf_ok(viewer.session.sid, csrf_token):
            raise CsrfRefused

    @router.get("/", response_class=HTMLResponse, responses=HTML_ANSWERS, summary="The queue")
    def queue_page(viewer: Signed, route: str = "",
                   status_: Annotated[str, Query(alias="status")] = "", priority: str = "", mine: str = "",
                   q: Annotated[str, Query(max_length=200)] = "", order: Order = "sla",
                   cursor: str | None = None) -> Response:
        chosen = {"route": route, "status": status_, "priority": priority, "mine": "1" if mine else "",
                  "q": q.strip()}
        return desk.queue(viewer, chosen, cursor, order)

    @router.get("/sign-in", response_class=HTMLResponse, responses={200: HTML_ANSWERS[200]},
                summary="The sign-in page (public)")
    def sign_in_page(request: Request, next_: Annotated[str, Query(alias="next")] = DESK_PATH,
                     done: str = "") -> Response:
        if desk.keys.read(request.cookies.get(SESSION_COOKIE)) is not None:
            return RedirectResponse(_safe_next(next_), status_code=303)
        return desk.sign_in_page(request, next_, notice=NOTICES.get(done))

    @router.post("/sign-in", response_class=HTMLResponse, summary="Sign in with an access token (public)",
                 responses={303: {"description": "signed in"}, 401: {"description": "not a valid access token"},
                            403: {"description": "the sign-in form's CSRF token is missing or wrong"},
                            429: {"description": "too many failed sign-ins from this address this minute: try "
                                                 "again after Retry-After seconds"}})
    def sign_in(request: Request, token: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                next_: Annotated[str, Form(alias="next")] = DESK_PATH) -> Response:
        return desk.sign_in(request, token, csrf_token, next_)

    @router.post("/sign-out", responses=FORM_ANSWERS, summary="End the desk session")
    def sign_out(viewer: Signed, csrf_token: Annotated[str, Form()] = "") -> Response:
        checked(viewer, csrf_token)
        desk.keys.sign_out(viewer.session)
        response = RedirectResponse(f"{SIGN_IN_PATH}?done=signed_out", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @router.get("/tickets/{ticket_id}", response_class=HTMLResponse,
                responses={**HTML_ANSWERS, 404: FORM_ANSWERS[404]}, summary="One ticket")
    def ticket_page(viewer: Signed, ticket_id: int, done: str = "") -> Response:
        return desk.ticket(viewer, ticket_id, notice=NOTICES.get(done))

    def action(name: str, done: str, run: Callable[[int, str], None]) -> None:
        @router.post(f"/tickets/{{ticket_id}}/{name}", response_class=HTMLResponse, responses=FORM_ANSWERS,
                     summary=f"{name.capitalize()} the ticket (desk form)", name=f"desk_{name}")
        def post(viewer: Signed, ticket_id: int,
                 csrf_token: Annotated[str, Form()] = "") -> Response:
            checked(viewer, csrf_token)
            return desk.act(viewer, ticket_id, done, lambda: run(ticket_id, viewer.actor))

    app = desk.app
    action("claim", "claimed", lambda t, actor: lifecycle.assign(app.sessions, t, actor, app.clock.now(),
                                                                 outbox=app.outbox))
    action("release", "released", lambda t, actor: lifecycle.unassign(app.sessions, t, actor, app.clock.now(),
                                                                      outbox=app.outbox))
    action("resolve", "resolved", lambda t, actor: lifecycle.resolve(app.sessions, t, actor, app.clock.now(),
                                                                     outbox=app.outbox))
    action("confirm", "confirmed", lambda t, actor: lifecycle.confirm(app.sessions, t, actor, app.clock.now(),
                                                                      outbox=app.outbox))
    action("reprocess", "reprocess", desk.reprocess)

    field_names = {forms.FIELD_PREFIX + name: {"type": "string"} for name in app.schema.properties}

    @router.post("/tickets/{ticket_id}/correct", response_class=HTMLResponse,
                 responses={**FORM_ANSWERS, 422: {"content": {"text/html": {}},
                                                  "description": "not saved: the problems are shown by field"}},
                 summary="Correct the ticket's fields (desk form)",
                 openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                     "type": "object", "properties": {"csrf_token": {"type": "string"}, **field_names}}}}}})
    async def correct(request: Request, viewer: Signed, ticket_id: int) -> Response:
        form = await request.form()
        csrf = form.get("csrf_token")
        checked(viewer, csrf if isinstance(csrf, str) else "")
        submitted = {key: [v for v in form.getlist(key) if isinstance(v, str)] for key in form}
        return desk.correct(viewer, ticket_id, submitted)

    @router.get("/quality", response_class=HTMLResponse, responses=HTML_ANSWERS,
                summary="How often the extracted values survived review")
    def quality_page(viewer: Signed, since: str = "") -> Response:
        return desk.quality(viewer, since.strip())

    return router


class CsrfRefused(Exception):  # noqa: N818 (an answer, not a bug)
    """A form without the right CSRF token: answered 403, nothing done."""


def install_desk(api: FastAPI, app: App, publish: Callable[[int], None], guard: AuthGuard) -> None:
    """Add the desk's pages, static files and redirects to ``api``."""
    configured = app.settings.api.session_secret
    if configured is None:
        log.warning("TRIAGE_SESSION_SECRET is not set: desk sessions are signed with a random key of this process, "
                    "so they end when it restarts and do not carry over to other serve processes")
    secret = configured.get_secret_value() if configured else secrets.token_urlsafe(SESSION_SECRET_BYTES)
    keys = SessionKeys(secret, app.settings.api.tokens, app.settings.api.session_hours, app.clock, app.sessions)
    desk = Desk(app, keys, publish, guard)
    api.mount(STATIC_PATH, StaticFiles(packages=[("triage.api.desk", "static")]), name="desk-static")

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        target = f"{SIGN_IN_PATH}?{urlencode({'next': exc.path})}"
        if request.headers.get("hx-request"):  # htmx's refresh: send the whole page there, not into the table
            return Response(status_code=200, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def refuse(request: Request, exc: Exception) -> Response:
        return desk.page("error.html", None, 403, title="Form expired",
                         message="This form's security token is missing or out of date. Go back, reload the page "
                                 "and try again.")

    async def unreadable(request: Request, exc: Exception) -> Response:
        """A desk request FastAPI cannot read (a path id that is no number, an over-long search): an HTML page
        saying what, like every other desk answer; the API keeps FastAPI's JSON."""
        assert isinstance(exc, RequestValidationError)
        if not request.url.path.startswith(DESK_PATH):
            return await request_validation_exception_handler(request, exc)
        problems = "; ".join(f"{'.'.join(map(str, error['loc'][1:])) or 'request'}: {error['msg']}"
                             for error in exc.errors())
        return desk.page("error.html", None, 422, title="Not understood", message=problems)

    api.add_exception_handler(SignInRequired, to_sign_in)
    api.add_exception_handler(CsrfRefused, refuse)
    api.add_exception_handler(RequestValidationError, unreadable)
    api.include_router(_router(desk))
