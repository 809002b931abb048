"""Real HTTP servers on loopback that speak each helpdesk's REST shape, for the write-back tests.

Each keeps per-ticket state (group, priority, tags with the agents' own, notes) and applies the
calls the way the platform does: Zendesk's ``PUT .../tags`` adds, ``DELETE`` removes, ``POST``
replaces; Chatwoot's ``POST labels`` replaces and keeps only labels defined in the account;
Freshdesk's ``tags`` on an update replaces; Intercom tags by id from ``POST /tags``... Every
request is recorded; auth headers are checked (a wrong token gets the platform's 401); a missing
ticket gets its 404. Answers can be scripted ahead of the real behaviour::

    with FakeZendesk(email="bot@acme.test", token="zd-token") as zendesk:
        zendesk.ticket("35436", tags=["vip"])
        zendesk.answer_next(429, method="PUT", path="/tags", headers={"Retry-After": "7"})
        zendesk.answer_next(500, late=0.5, apply=True)     # do the work, answer after 0.5 s (a lost answer)

Plus :class:`FakeSlack` (an incoming webhook) and :class:`FakeEventsReceiver` (a Standard
Webhooks consumer that verifies every request with the spec's reference library).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.intercom_contract import DOCUMENT_VERSION, contract_violation, intercom_api
from tests.loopback import Loopback


@dataclass
class Note:
    body: str
    private: bool


@dataclass
class FakeTicket:
    """One ticket or conversation as the platform holds it."""

    group: Any = None
    priority: Any = None
    tags: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    closed: bool = False
    #: The agent the ticket is assigned to (Zendesk's ``assignee_id``).
    assignee: int | None = None


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Scripted:
    """An answer given instead of (or, with ``apply``, after) the platform's own behaviour."""

    answer: Answer | None
    method: str | None
    path: str | None
    late: float = 0.0
    apply: bool = False
    #: Matching requests to let through first.
    after: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and (self.path is None or re.search(self.path, path) is not None)


Handler = Callable[[re.Match[str], Any, dict[str, list[str]]], Answer]


class FakeHelpdesk(Loopback):
    """The shared server: routing, recording, scripting, auth. Subclasses add the platform's routes."""

    def __init__(self) -> None:
        self.tickets: dict[str, FakeTicket] = {}
        self.requests: list[Recorded] = []
        #: Seconds every answer takes (a real platform is not instant), besides any scripted lateness.
        self.latency = 0.0
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._script: list[Scripted] = []
        self._lock = threading.RLock()
        super().__init__(self._handler())

    # ---- for tests ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.address

    def ticket(self, ticket_id: str, **state: Any) -> FakeTicket:
        with self._lock:
            self.tickets[ticket_id] = FakeTicket(**state)
            return self.tickets[ticket_id]

    def answer_next(self, status: int, *, method: str | None = None, path: str | None = None,
                    headers: dict[str, str] | None = None, message: str = "scripted", body: Any = None,
                    late: float = 0.0, apply: bool = False, times: int = 1, after: int = 0) -> None:
        """The next ``times`` matching requests (after letting ``after`` through) get ``status``, with the
        platform's error body for ``message`` unless ``body`` is given, ``late`` seconds late;
        ``apply`` does the real work first."""
        answer = Answer(status, body if body is not None else self.error(status, message), headers or {})
        with self._lock:
            self._script += [Scripted(answer, method, path, late, apply, after) for _ in range(times)]

    def answer_late(self, seconds: float, *, method: str | None = None, path: str | None = None,
                    after: int = 0) -> None:
        """The next matching request (after ``after``) is handled for real, but answered ``seconds`` late."""
        with self._lock:
            self._script.append(Scripted(None, method, path, seconds, apply=True, after=after))

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests
                    if method in (None, r.method) and (path is None or re.search(path, r.path))]

    # ---- what each platform defines -------------------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Any:
        """The platform's error body."""
        return {"error": message}

    def precheck(self, headers: dict[str, str]) -> Answer | None:
        """An answer before routing (e.g. a missing version header), or None."""
        return None

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern), handler))

    def find(self, ticket_id: str) -> FakeTicket | None:
        return self.tickets.get(ticket_id)

    def missing(self, what: str = "ticket") -> Answer:
        """The platform's answer for a record that does not exist."""
        return Answer(404, self.error(404, f"{what} not found"))

    def no_route(self, method: str, path: str) -> Answer:
        """The platform's answer for a path it does not serve (a misconfigured base URL)."""
        return Answer(404, self.error(404, f"no route {method} {path}"))

    def unauthorized(self) -> Answer:
        """The platform's answer for credentials it does not know."""
        return Answer(401, self.error(401, "authentication failed"))

    # ---- the server -----------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                  body: Any) -> tuple[Answer, float]:
        with self._lock:
            self.requests.append(Recorded(method, path, query, headers, body))
            scripted = self._take_script(method, path)
            if scripted is not None and not scripted.apply and scripted.answer is not None:
                return scripted.answer, scripted.late
            lowered = {k.lower(): v for k, v in headers.items()}
            if not self.authorized(lowered):
                return self.unauthorized(), 0.0
            answer = self.precheck(lowered) or self._route(method, path, query, body)
            if scripted is not None:
                return scripted.answer or answer, scripted.late
            return answer, 0.0

    def _take_script(self, method: str, path: str) -> Scripted | None:
        scripted = next((s for s in self._script if s.matches(method, path)), None)
        if scripted is not None and scripted.after:
            scripted.after -= 1
            return None
        if scripted is not None:
            self._script.remove(scripted)
        return scripted

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        for verb, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and verb == method:
                return handler(match, body, query)
        return self.no_route(method, path)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                parts = urlsplit(self.path)
                answer, late = fake._dispatch(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body)
                if late or fake.latency:
                    time.sleep(max(late, fake.latency))
                self._send(answer)

            def _send(self, answer: Answer) -> None:
                if answer.body is None and answer.status == 204:
                    data, kind = b"", "application/json"
                elif isinstance(answer.body, str):
                    data, kind = answer.body.encode(), "text/plain"
                else:
                    data, kind = json.dumps(answer.body).encode(), "application/json"
                self.send_response(answer.status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _handle  # noqa: N815 - stdlib naming

        return Handler


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _add(tags: list[str], names: list[str]) -> None:
    for name in names:
        if name.casefold() not in {tag.casefold() for tag in tags}:
            tags.append(name)


def _remove(tags: list[str], names: list[str]) -> None:
    gone = {name.casefold() for name in names}
    tags[:] = [tag for tag in tags if tag.casefold() not in gone]


# ---- Zendesk ------------------------------------------------------------------------------------

ZENDESK_PRIORITIES = ("urgent", "high", "normal", "low")
#: Zendesk's 422 bodies: any update of a closed ticket, and a group change whose assignee is not in the group
#: (shapes as Zendesk answers them, quoted in facetoe/zenpy#628 and in clients' tests of closed tickets).
ZENDESK_CLOSED = {"error": "RecordInvalid", "description": "Record validation errors",
                  "details": {"status": [{"description": "Status: closed prevents ticket update"}]}}
ZENDESK_ASSIGNEE_NOT_IN_GROUP = {"error": "RecordInvalid", "description": "Record validation errors", "details": {
    "assignee": [{"description": "Assignee: is invalid", "error": "InvalidValue"},
                 {"description": "Assignee: is not a member of the group"}]}}


class FakeZendesk(FakeHelpdesk):
    """``members``: group id -> the agents in it (a group not listed takes any agent); ``agents``: agent id ->
    name, sideloaded by ``GET /api/v2/tickets/{id}?include=users``."""

    def __init__(self, email: str, token: str) -> None:
        super().__init__()
        self._auth = _basic(f"{email}/token", token)
        self.members: dict[int, set[int]] = {}
        self.agents: dict[int, str] = {}
        self.route("GET", r"/api/v2/tickets/(\d+)", self._show)
        self.route("PUT", r"/api/v2/tickets/(\d+)", self._update)
        for verb in ("PUT", "POST", "DELETE"):
            self.route(verb, r"/api/v2/tickets/(\d+)/tags", self._tags(verb))
        self.route("GET", r"/api/v2/tickets/(\d+)/comments", self._comments)

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == self._auth

    def error(self, status: int, message: str) -> Any:
        titles = {401: "Couldn't authenticate you", 404: "RecordNotFound", 409: "DatabaseConflict",
                  422: "RecordInvalid", 429: "TooManyRequests"}
        return {"error": titles.get(status, "Error"), "description": message}

    def missing(self, what: str = "ticket") -> Answer:
        return Answer(404, {"error": "RecordNotFound", "description": "Not found"})

    def no_route(self, method: str, path: str) -> Answer:
        return Answer(404, {"error": "InvalidEndpoint", "description": "Not found"})

    def _view(self, ticket_id: str, ticket: FakeTicket) -> dict[str, Any]:
        return {"id": int(ticket_id), "group_id": ticket.group, "priority": ticket.priority, "tags": ticket.tags,
                "assignee_id": ticket.assignee, "status": "closed" if ticket.closed else "open"}

    def _show(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing()
        data: dict[str, Any] = {"ticket": self._view(match[1], ticket)}
        if "users" in ",".join(query.get("include", [])).split(","):
            data["users"] = [{"id": ticket.assignee, "name": self.agents[ticket.assignee], "role": "agent"}
                             ] if ticket.assignee in self.agents else []
        return Answer(200, data)

    def _update(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing()
        if ticket.closed:
            return Answer(422, ZENDESK_CLOSED)
        fields = body["ticket"]
        if "priority" in fields and fields["priority"] not in ZENDESK_PRIORITIES:
            return Answer(422, {"error": "RecordInvalid", "description": "Record validation errors",
                                "details": {"priority": [{"description": "Priority: is invalid"}]}})
        assignee = fields.get("assignee_id", ticket.assignee)
        group = fields.get("group_id", ticket.group)
        if assignee is not None and group in self.members and assignee not in self.members[group]:
            return Answer(422, ZENDESK_ASSIGNEE_NOT_IN_GROUP)
        ticket.group, ticket.assignee = group, assignee
        ticket.priority = fields.get("priority", ticket.priority)
        if "tags" in fields:
            ticket.tags = list(fields["tags"])
        if "comment" in fields:
            ticket.notes.append(Note(fields["comment"]["body"], private=fields["comment"].get("public") is False))
        return Answer(200, {"ticket": self._view(match[1], ticket)})

    def _tags(self, verb: str) -> Handler:
        def handle(match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
            ticket = self.find(match[1])
            if ticket is None:
                return self.missing()
            if ticket.closed:  # "the Add, Set and Remove Tags endpoints do not work on closed tickets"
                return Answer(422, ZENDESK_CLOSED)
            names = [name.lower() for name in body["tags"]]
            if verb == "PUT":
                _add(ticket.tags, names)
            elif verb == "DELETE":
                _remove(ticket.tags, names)
            else:
                ticket.tags = names
            return Answer(200, {"tags": ticket.tags})
        return handle

    def _comments(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing()
        comments = [{"id": n, "body": note.body, "plain_body": note.body, "public": not note.private}
                    for n, note in enumerate(ticket.notes, 1)]
        return Answer(200, {"comments": comments[::-1] if query.get("sort_order") == ["desc"] else comments})


# ---- Intercom -----------------------------------------------------------------------------------

class FakeIntercom(FakeHelpdesk):
    """``teams``: the workspace's team ids (None: any). A write naming an admin or team the workspace does not
    have answers 404 ``not_found`` "Resource Not Found", as a missing conversation does; ``GET /admins/{id}``
    and ``GET /teams/{id}`` answer ``admin_not_found`` / ``team_not_found`` (the 2.14 description's examples).

    Every request for version 2.14 to a path Intercom serves is first validated against Intercom's own
    OpenAPI description (:mod:`tests.intercom_contract`): one that breaks it is answered 400
    ``parameter_invalid`` and kept in ``violations``, and leaving the ``with`` block with any violation
    fails the test. A path Intercom does not serve gets its 404.
    """

    def __init__(self, token: str, admin_id: str, version: str = "2.14", teams: set[str] | None = None) -> None:
        super().__init__()
        self._token, self.admin_id, self.version, self.teams = token, admin_id, version, teams
        self.violations: list[str] = []
        #: Requests checked against the description, as "METHOD path" (it loads now: a second, once per process).
        self.validated: list[str] = []
        intercom_api()
        self.tag_ids: dict[str, str] = {}  # id -> name, the workspace's tags
        self._ids = itertools.count(17513)
        self.route("GET", r"/me", self._me)
        self.route("GET", r"/admins/(\w+)", self._admin)
        self.route("GET", r"/teams/(\w+)", self._team)
        self.route("POST", r"/tags", self._create_tag)
        self.route("GET", r"/conversations/(\w+)", self._show)
        self.route("PUT", r"/conversations/(\w+)", self._update)
        self.route("POST", r"/conversations/(\w+)/tags", self._attach)
        self.route("DELETE", r"/conversations/(\w+)/tags/(\w+)", self._detach)
        self.route("POST", r"/conversations/(\w+)/parts", self._assign)
        self.route("POST", r"/conversations/(\w+)/reply", self._reply)

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {self._token}"

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                  body: Any) -> tuple[Answer, float]:
        sent_version = {k.lower(): v for k, v in headers.items()}.get("intercom-version")
        served = any(verb == method and pattern.fullmatch(path) for verb, pattern, _ in self._routes)
        if sent_version == DOCUMENT_VERSION and served:  # a path Intercom does not serve is its 404
            violation = contract_violation(method, path, query, headers, body)
            with self._lock:
                self.validated.append(f"{method} {path}")
                if violation is not None:
                    self.violations.append(violation)
                    self.requests.append(Recorded(method, path, query, headers, body))
                    return Answer(400, {"type": "error.list", "request_id": "req-1",
                                        "errors": [{"code": "parameter_invalid", "message": violation}]}), 0.0
        return super()._dispatch(method, path, query, headers, body)

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if self.violations and exc[0] is None:
            raise AssertionError("requests that break Intercom's 2.14 description:\n" + "\n".join(self.violations))

    def precheck(self, headers: dict[str, str]) -> Answer | None:
        if headers.get("intercom-version") != self.version:
            return Answer(400, self.error(400, "intercom_version_invalid"))
        return None

    def error(self, status: int, message: str) -> Any:
        codes = {401: "unauthorized", 403: "api_plan_restricted", 404: "not_found", 409: "conflict",
                 422: "parameter_invalid", 429: "rate_limit_exceeded"}
        return {"type": "error.list", "request_id": "req-1",
                "errors": [{"code": codes.get(status, "server_error"), "message": message}]}

    def no_route(self, method: str, path: str) -> Answer:
        return Answer(404, self.error(404, "Resource Not Found"))

    def _tag_not_found(self) -> Answer:
        return Answer(404, {"type": "error.list", "errors": [{"code": "tag_not_found", "message": "Tag not found"}]})

    def _admin_ok(self, body: Any) -> bool:
        return isinstance(body, dict) and body.get("admin_id") == self.admin_id

    def _bad_admin(self, body: Any = None) -> Answer:
        if isinstance(body, dict) and body.get("admin_id"):
            return Answer(404, self.error(404, "Resource Not Found"))  # an admin the workspace does not have
        return Answer(400, {"type": "error.list", "request_id": "req-1",
                            "errors": [{"code": "parameter_not_found", "message": "Admin ID not specified"}]})

    def _admin_view(self) -> dict[str, Any]:
        return {"type": "admin", "id": self.admin_id, "name": "triage bot", "email": "bot@acme.test"}

    def _me(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        return Answer(200, self._admin_view())

    def _admin(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        if match[1] != self.admin_id:
            return Answer(404, {"type": "error.list", "request_id": "req-1",
                                "errors": [{"code": "admin_not_found", "message": "Admin not found"}]})
        return Answer(200, self._admin_view())

    def _team(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        if self.teams is not None and match[1] not in self.teams:
            return Answer(404, {"type": "error.list", "request_id": "req-1",
                                "errors": [{"code": "team_not_found", "message": "Team not found"}]})
        return Answer(200, {"type": "team", "id": match[1], "name": f"team {match[1]}", "admin_ids": []})

    def _tag_id(self, name: str) -> str:
        """The workspace's tag called ``name`` (case-insensitively), created when there is none."""
        tag_id = next((i for i, n in self.tag_ids.items() if n.casefold() == name.casefold()), None)
        if tag_id is None:
            tag_id = str(next(self._ids))
            self.tag_ids[tag_id] = name
        return tag_id

    def _create_tag(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        tag_id = self._tag_id(body["name"])
        return Answer(200, {"type": "tag", "id": tag_id, "name": self.tag_ids[tag_id]})

    def _show(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing("conversation")
        tags = [{"type": "tag", "id": self._tag_id(name), "name": name} for name in ticket.tags]  # agents' tags too
        parts = [{"type": "conversation_part", "part_type": "note", "body": note.body} for note in ticket.notes]
        return Answer(200, {"type": "conversation", "id": match[1], "team_assignee_id": ticket.group,
                            "priority": ticket.priority, "custom_attributes": ticket.attributes,
                            "tags": {"type": "tag.list", "tags": tags},
                            "conversation_parts": {"type": "conversation_part.list", "conversation_parts": parts}})

    def _update(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing("conversation")
        ticket.attributes.update(body.get("custom_attributes") or {})
        if "priority" in body:
            ticket.priority = body["priority"]
        return self._show(match, None, query)

    def _attach(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing("conversation")
        if not self._admin_ok(body):
            return self._bad_admin(body)
        if body.get("id") not in self.tag_ids:
            return self._tag_not_found()
        _add(ticket.tags, [self.tag_ids[body["id"]]])
        return Answer(200, {"type": "tag", "id": body["id"], "name": self.tag_ids[body["id"]]})

    def _detach(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing("conversation")
        if not self._admin_ok(body):
            return self._bad_admin(body)
        name = self.tag_ids.get(match[2])
        if name is None or name.casefold() not in {tag.casefold() for tag in ticket.tags}:
            return self._tag_not_found()
        _remove(ticket.tags, [name])
        return Answer(200, {"type": "tag", "id": match[2], "name": name})

    def _assign(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing("conversation")
        if not self._admin_ok(body) or body.get("message_type") != "assignment" or body.get("type") != "team":
            return self._bad_admin(body)
        if self.teams is not None and body["assignee_id"] not in self.teams:
            return Answer(404, self.error(404, "Resource Not Found"))
        ticket.group = body["assignee_id"]
        return self._show(match, None, query)

    def _reply(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing("conversation")
        if not self._admin_ok(body) or body.get("type") != "admin":
            return self._bad_admin(body)
        ticket.notes.append(Note(body["body"], private=body.get("message_type") == "note"))
        return self._show(match, None, query)


# ---- Chatwoot -----------------------------------------------------------------------------------

CHATWOOT_PRIORITIES = ("urgent", "high", "medium", "low", None)


class FakeChatwoot(FakeHelpdesk):
    """``teams``: the account's team ids; ``labels``: the labels defined in the account (None: any string);
    ``bot_token``: an agent bot's access token, which reaches only ``BOT_ACCESSIBLE_ENDPOINTS``
    (app/controllers/concerns/access_token_auth_helper.rb: conversation create, update, toggle_status,
    toggle_priority, custom_attributes; messages create; assignments create). Errors are ``{"error": ...}``;
    a missing account and a missing conversation both answer 404 "Resource could not be found"."""

    BOT_ENDPOINTS = ("assignments", "toggle_priority", "messages")

    def __init__(self, token: str, account_id: int, teams: set[int], labels: set[str] | None = None,
                 bot_token: str | None = None) -> None:
        super().__init__()
        self._token, self.account_id, self.teams, self.labels = token, account_id, teams, labels
        self._bot_token = bot_token
        base = r"/api/v1/accounts/(\d+)/conversations/(\d+)/"
        self.route("GET", r"/api/v1/profile", self._profile)
        self.route("GET", r"/api/v1/accounts/(\d+)/teams", self._teams)
        self.route("GET", base + "labels", self._conversation(self._get_labels))
        self.route("POST", base + "labels", self._conversation(self._set_labels))
        self.route("POST", base + "assignments", self._conversation(self._assign))
        self.route("POST", base + "toggle_priority", self._conversation(self._priority))
        self.route("POST", base + "messages", self._conversation(self._message))
        self.route("GET", base + "messages", self._conversation(self._messages))

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("api_access_token") in (self._token, self._bot_token)

    def error(self, status: int, message: str) -> Any:
        return {"error": message}

    def unauthorized(self) -> Answer:
        return Answer(401, {"error": "Invalid Access Token"})

    def missing(self, what: str = "ticket") -> Answer:
        return Answer(404, {"error": "Resource could not be found"})

    def no_route(self, method: str, path: str) -> Answer:
        return Answer(404, "Not Found")  # Rails' routing error page, not JSON

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                  body: Any) -> tuple[Answer, float]:
        token = {k.lower(): v for k, v in headers.items()}.get("api_access_token")
        if self._bot_token is not None and token == self._bot_token and not self._bot_reaches(method, path):
            with self._lock:
                self.requests.append(Recorded(method, path, query, headers, body))
            return Answer(401, {"error": "Access to this endpoint is not authorized for bots"}), 0.0
        return super()._dispatch(method, path, query, headers, body)

    def _bot_reaches(self, method: str, path: str) -> bool:
        return method == "POST" and path.rsplit("/", 1)[-1] in self.BOT_ENDPOINTS

    def _profile(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        return Answer(200, {"id": 1, "name": "triage", "email": "triage@acme.test",
                            "accounts": [{"id": self.account_id, "name": "Acme", "role": "agent"}]})

    def _teams(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        if int(match[1]) != self.account_id:
            return self.missing()
        return Answer(200, [{"id": team, "name": f"team {team}"} for team in sorted(self.teams)])

    def _conversation(self, handler: Callable[[FakeTicket, Any], Answer]) -> Handler:
        def handle(match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
            ticket = self.find(match[2]) if int(match[1]) == self.account_id else None
            return self.missing("conversation") if ticket is None else handler(ticket, body)
        return handle

    def _get_labels(self, ticket: FakeTicket, body: Any) -> Answer:
        return Answer(200, {"payload": ticket.tags})

    def _set_labels(self, ticket: FakeTicket, body: Any) -> Answer:
        ticket.tags = [label for label in body["labels"] if self.labels is None or label in self.labels]
        return Answer(200, {"payload": ticket.tags})

    def _assign(self, ticket: FakeTicket, body: Any) -> Answer:
        ticket.group = body["team_id"] if body["team_id"] in self.teams else None  # unknown: silently cleared
        return Answer(200, None if ticket.group is None else {"id": ticket.group, "name": f"team {ticket.group}"})

    def _priority(self, ticket: FakeTicket, body: Any) -> Answer:
        if body.get("priority") not in CHATWOOT_PRIORITIES:
            return Answer(422, self.error(422, "'bogus' is not a valid priority"))
        ticket.priority = body.get("priority")
        return Answer(200, {})

    def _message(self, ticket: FakeTicket, body: Any) -> Answer:
        ticket.notes.append(Note(body["content"], private=body.get("private") is True))
        return Answer(200, {"id": len(ticket.notes), "content": body["content"], "private": body.get("private")})

    def _messages(self, ticket: FakeTicket, body: Any) -> Answer:
        payload = [{"id": n, "content": note.body, "private": note.private} for n, note in enumerate(ticket.notes, 1)]
        return Answer(200, {"meta": {"labels": ticket.tags}, "payload": payload})


# ---- Zammad -------------------------------------------------------------------------------------

class FakeZammad(FakeHelpdesk):
    """Errors as Zammad renders them (``{"error", "error_human"}``, app/controllers/application_controller/
    handles_errors.rb). ``by_ticket`` answers every article whatever the page (the controller we read),
    unless ``pages_articles``: then it honours ``page`` / ``per_page`` as Zammad's lists do."""

    def __init__(self, token: str, groups: dict[int, str], priorities: dict[int, str]) -> None:
        super().__init__()
        self._token, self.groups, self.priorities = token, groups, priorities
        self.pages_articles = False
        self.route("GET", r"/api/v1/users/me", self._me)
        self.route("PUT", r"/api/v1/tickets/(\d+)", self._update)
        self.route("GET", r"/api/v1/tags", self._list_tags)
        self.route("POST", r"/api/v1/tags/add", self._tag(_add))
        self.route("DELETE", r"/api/v1/tags/remove", self._tag(_remove))
        self.route("POST", r"/api/v1/ticket_articles", self._article)
        self.route("GET", r"/api/v1/ticket_articles/by_ticket/(\d+)", self._articles)

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == f"Token token={self._token}"

    def error(self, status: int, message: str) -> Any:
        return {"error": message, "error_human": message}

    def missing(self, what: str = "ticket") -> Answer:
        return Answer(404, self.error(404, f"Couldn't find {what.capitalize()} with 'id'"))

    def no_route(self, method: str, path: str) -> Answer:
        return Answer(404, self.error(404, f"No route matches [{method}] \"{path}\""))

    def _me(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        return Answer(200, {"id": 3, "login": "triage@acme.test", "firstname": "triage", "active": True})

    def _update(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing()
        if "group" in body and body["group"] not in self.groups.values():
            return Answer(422, self.error(422, "Group can't be blank"))
        if "group_id" in body and body["group_id"] not in self.groups:
            return Answer(422, self.error(422, "Group can't be blank"))
        if "priority_id" in body and body["priority_id"] not in self.priorities:
            return Answer(422, self.error(422, f"No lookup value found for 'priority_id': {body['priority_id']!r}"))
        if "group" in body:
            ticket.group = next(i for i, name in self.groups.items() if name == body["group"])
        ticket.group = body.get("group_id", ticket.group)
        ticket.priority = body.get("priority_id", ticket.priority)
        return Answer(200, {"id": int(match[1]), "group_id": ticket.group, "priority_id": ticket.priority})

    def _list_tags(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(query.get("o_id", [""])[0]) if query.get("object") == ["Ticket"] else None
        return self.missing() if ticket is None else Answer(200, {"tags": ticket.tags})

    def _tag(self, change: Callable[[list[str], list[str]], None]) -> Handler:
        def handle(match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
            ticket = self.find(str(body.get("o_id"))) if body.get("object") == "Ticket" else None
            if ticket is None:
                return self.missing()
            change(ticket.tags, [body["item"]])
            return Answer(201, True)
        return handle

    def _article(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(str(body.get("ticket_id")))
        if ticket is None:
            return self.missing()
        ticket.notes.append(Note(body["body"], private=body.get("internal") is True and body.get("type") == "note"))
        return Answer(201, {"id": len(ticket.notes), "ticket_id": body["ticket_id"], "body": body["body"]})

    def _articles(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing()
        articles = [{"id": n, "body": note.body, "internal": note.private} for n, note in enumerate(ticket.notes, 1)]
        if self.pages_articles:
            page, per_page = _page(query, default=100, most=500)
            articles = articles[(page - 1) * per_page:page * per_page]
        return Answer(200, articles)


# ---- Freshdesk ----------------------------------------------------------------------------------

class FakeFreshdesk(FakeHelpdesk):
    """A 404 has no body, for a missing ticket as for a path Freshdesk does not serve. Lists are paged (``page``,
    ``per_page``: 30 by default, 100 at most) with ``Link: <...>; rel="next"`` while more follow."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self._api_key = api_key
        self.route("GET", r"/api/v2/agents/me", self._me)
        self.route("GET", r"/api/v2/tickets/(\d+)", self._show)
        self.route("PUT", r"/api/v2/tickets/(\d+)", self._update)
        self.route("POST", r"/api/v2/tickets/(\d+)/notes", self._note)
        self.route("GET", r"/api/v2/tickets/(\d+)/conversations", self._conversations)

    def authorized(self, headers: dict[str, str]) -> bool:
        try:
            user = base64.b64decode(headers.get("authorization", "").removeprefix("Basic ")).decode()
        except ValueError:
            return False
        return user.partition(":")[0] == self._api_key  # the password is ignored

    def error(self, status: int, message: str) -> Any:
        codes = {401: "invalid_credentials", 403: "access_denied", 404: "not_found", 409: "inconsistent_state"}
        return {"code": codes.get(status, "error"), "message": message}

    def missing(self, what: str = "ticket") -> Answer:
        return Answer(404, "")

    def no_route(self, method: str, path: str) -> Answer:
        return Answer(404, "")

    def _me(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        return Answer(200, {"id": 19, "contact": {"email": "triage@acme.test", "name": "triage"}})

    def _view(self, ticket_id: str, ticket: FakeTicket) -> dict[str, Any]:
        return {"id": int(ticket_id), "group_id": ticket.group, "priority": ticket.priority, "tags": ticket.tags}

    def _show(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        return self.missing() if ticket is None else Answer(200, self._view(match[1], ticket))

    def _update(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing()
        if "priority" in body and body["priority"] not in (1, 2, 3, 4):
            return Answer(400, {"description": "Validation failed", "errors": [
                {"field": "priority", "message": "It should be one of these values: '1,2,3,4'",
                 "code": "invalid_value"}]})
        ticket.group = body.get("group_id", ticket.group)
        ticket.priority = body.get("priority", ticket.priority)
        if "tags" in body:
            ticket.tags = list(body["tags"])
        return Answer(200, self._view(match[1], ticket))

    def _note(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing()
        ticket.notes.append(Note(body["body"], private=body.get("private", True) is True))
        return Answer(201, {"id": len(ticket.notes), "body": body["body"], "private": body.get("private", True)})

    def _conversations(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        ticket = self.find(match[1])
        if ticket is None:
            return self.missing()
        page, per_page = _page(query, default=30, most=100)
        entries = [{"id": n, "body": note.body, "body_text": note.body, "private": note.private}
                   for n, note in enumerate(ticket.notes, 1)]
        shown = entries[(page - 1) * per_page:page * per_page]
        more = page * per_page < len(entries)
        link = f"<{self.base_url}{match[0]}?page={page + 1}&per_page={per_page}>; rel=\"next\""
        return Answer(200, shown, {"Link": link} if more else {})


def _page(query: dict[str, list[str]], *, default: int, most: int) -> tuple[int, int]:
    """``page`` (from 1) and ``per_page`` (at most ``most``) of a listing's query."""
    page = int(query.get("page", ["1"])[0])
    per_page = min(int(query.get("per_page", [str(default)])[0]), most)
    return max(page, 1), per_page


# ---- Slack-compatible incoming webhook, Standard Webhooks receiver --------------------------------

SLACK_PATH = "/services/T0001/B0001/abcdefghijklmnop"


class FakeSlack(FakeHelpdesk):
    """An incoming webhook at :data:`SLACK_PATH`: ``{"text": ...}`` in, ``ok`` out; errors are plain strings."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.route("POST", re.escape(SLACK_PATH), self._post)

    @property
    def webhook_url(self) -> str:
        return self.base_url + SLACK_PATH

    def authorized(self, headers: dict[str, str]) -> bool:
        return True  # the URL is the credential

    def error(self, status: int, message: str) -> Any:
        return message

    def _post(self, match: re.Match[str], body: Any, query: dict[str, list[str]]) -> Answer:
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return Answer(400, "invalid_payload")
        self.messages.append(body["text"])
        return Answer(200, "ok")


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    payload: Any


class FakeEventsReceiver(FakeHelpdesk):
    """A Standard Webhooks consumer: verifies each request with the reference ``standardwebhooks``
    library (wall clock, 5-minute window) and answers 204, or 400 when the signature is wrong.
    Header names are recorded in lower case."""

    def __init__(self, secret: str, path: str = "/hooks/triage") -> None:
        super().__init__()
        self._verifier = Webhook(secret)
        self.path = path
        self.received: list[Received] = []
        self.rejected = 0

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def authorized(self, headers: dict[str, str]) -> bool:
        return True  # the signature is checked on the raw body, below

    def error(self, status: int, message: str) -> Any:
        return message

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer, late = fake._receive(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                if late:
                    time.sleep(late)
                data = answer.body.encode() if isinstance(answer.body, str) else b""
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _receive(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[Answer, float]:
        with self._lock:
            self.requests.append(Recorded("POST", path, {}, headers, raw))
            scripted = self._take_script("POST", path)
            if scripted is not None and scripted.answer is not None:
                return scripted.answer, scripted.late
            try:
                payload = self._verifier.verify(raw, headers)
            except WebhookVerificationError:
                self.rejected += 1
                return Answer(400, "invalid signature"), 0.0
            self.received.append(Received(headers, raw, payload))
            return Answer(204), 0.0
