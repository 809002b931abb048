"""Zendesk Support: group and priority on the ticket, tags through the tags endpoints.

- ``ticket``: ``PUT /api/v2/tickets/{id}`` with ``{"ticket": {"group_id", "priority"}}`` (no
  ``tags`` there: they would replace the agents' tags). Zendesk refuses a group change when the
  ticket's assignee is not a member of the new group (422, ``Assignee: is not a member of the
  group``); with ``writeback.zendesk.clear_assignee_on_group_change`` (default) the adapter reads the
  ticket's assignee (``GET /api/v2/tickets/{id}?include=users``) and sends the change again with
  ``assignee_id: null``; the note then names the agent it unassigned;
- ``tags``: ``DELETE /api/v2/tickets/{id}/tags`` with triage's old tags, then ``PUT`` on the same
  path with its current ones (``PUT`` adds and keeps the rest; ``POST`` would replace them all);
- ``note``: ``PUT /api/v2/tickets/{id}`` with a private ``comment`` (``public: false`` always
  sent); a retry first reads ``GET /api/v2/tickets/{id}/comments?sort_order=desc``.

Zendesk's answers, read by their body: a 404 ``RecordNotFound`` is gone, a 404 ``InvalidEndpoint``
(a wrong path: e.g. a base URL that already ends in ``/api/v2``) fails naming the URL setting; a 409
``DatabaseConflict`` ("Database collision", two updates of one ticket at once) is transient; a 422
``Status: closed prevents ticket update`` (any update of a closed ticket) ends the delivery as
``skipped``. Auth: API token, ``Authorization: Basic base64("{email}/token:{token}")``. 429s carry
``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import httpx

from triage.settings import ZendeskWriteback

from .adapter import BaseAdapter, Remarks, StepAction
from .failures import (
    DeliveryError,
    FailedDeliveryError,
    GoneDeliveryError,
    SkippedDeliveryError,
    UnexplainedNotFoundError,
)
from .http import body_of, build_client, error_codes
from .note import plain
from .write import Write

RECORD_NOT_FOUND, INVALID_ENDPOINT, DATABASE_CONFLICT = "RecordNotFound", "InvalidEndpoint", "DatabaseConflict"
CONFLICT, UNPROCESSABLE = 409, 422
#: The words of Zendesk's 422 details for a closed ticket and for an assignee outside the new group.
CLOSED_TICKET = "closed prevents ticket update"
ASSIGNEE_NOT_IN_GROUP = "not a member of the group"


class AssigneeNotInGroupError(FailedDeliveryError):
    """Zendesk refused a group change: the ticket's assignee is not a member of the new group."""


class ZendeskAdapter(BaseAdapter[ZendeskWriteback]):
    platform: ClassVar[str] = "zendesk"

    def client(self) -> httpx.Client:
        section = self.section
        auth = httpx.BasicAuth(f"{section.email}/token", section.token.get_secret_value() if section.token else "")
        return build_client(section.url or "", self.settings.timeout_seconds, auth=auth)

    def actions(self, write: Write) -> dict[str, StepAction]:
        actions: dict[str, StepAction] = {"ticket": self._ticket} if self._ticket_fields(write) else {}
        return self.with_note(write, {**actions, "tags": self._tags})

    # ---- what Zendesk's answers mean ------------------------------------------------------------

    def read_answer(self, step: str, response: httpx.Response) -> DeliveryError | None:
        if response.status_code not in (CONFLICT, UNPROCESSABLE):
            return None
        body = body_of(response)
        message = self.peer.message(response)
        if response.status_code == CONFLICT and DATABASE_CONFLICT in error_codes(body):
            return self.peer.transient(step, message, status=CONFLICT, wait=self.peer.wait(response))
        details = " ".join(_detail_texts(body)).lower()
        if response.status_code == UNPROCESSABLE and CLOSED_TICKET in details:
            return SkippedDeliveryError(self.platform, step, f"ticket closed: {message}", status=UNPROCESSABLE)
        if response.status_code == UNPROCESSABLE and ASSIGNEE_NOT_IN_GROUP in details:
            return AssigneeNotInGroupError(self.platform, step, message, status=UNPROCESSABLE)
        return None

    def explain_not_found(self, write: Write, answer: UnexplainedNotFoundError) -> DeliveryError:
        codes = error_codes(answer.body)
        if RECORD_NOT_FOUND in codes:
            return GoneDeliveryError(self.platform, answer.step, answer.message, status=answer.status)
        hint = ("Zendesk knows no such API path" if INVALID_ENDPOINT in codes
                else "not Zendesk's answer for a missing ticket")
        return self.failed(answer.step, f"{answer.message} ({hint}: check {self.url_setting}, "
                                        "https://{subdomain}.zendesk.com without /api/v2)", status=answer.status)

    # ---- the steps ------------------------------------------------------------------------------

    def _ticket_fields(self, write: Write) -> dict[str, Any]:
        mapping = self.destination(write)
        fields: dict[str, Any] = {}
        if mapping is not None and mapping.group_id is not None:
            fields["group_id"] = mapping.group_id
        priority = self.target_priority(write)
        if priority is not None:
            fields["priority"] = priority
        return fields

    def _path(self, write: Write, step: str, tail: str = "") -> str:
        return f"/api/v2/tickets/{self.ticket_id(write, step)}{tail}"

    def _ticket(self, write: Write, resumed: bool) -> Remarks | None:
        fields, path = self._ticket_fields(write), self._path(write, "ticket")
        try:
            self.peer.request("ticket", "PUT", path, json={"ticket": fields})
        except AssigneeNotInGroupError as refused:
            if not self.section.clear_assignee_on_group_change:
                raise self.failed("ticket", f"{refused.message} (the ticket's assignee is not a member of group "
                                            f"{fields.get('group_id')}; writeback.zendesk."
                                            "clear_assignee_on_group_change is false)", status=refused.status) from None
            agent = self._assignee(write)
            self.peer.request("ticket", "PUT", path, json={"ticket": {**fields, "assignee_id": None}})
            return (f"triage unassigned {agent}: not a member of group {fields.get('group_id')}, "
                    "where this ticket now belongs.",)
        return None

    def _assignee(self, write: Write) -> str:
        """The ticket's assignee as the note names them: ``Name (agent 123)``, or ``agent 123``."""
        response = self.peer.request("ticket", "GET", self._path(write, "ticket"), params={"include": "users"})
        data = self.peer.json("ticket", response)
        ticket = data.get("ticket") if isinstance(data, dict) else None
        assignee = ticket.get("assignee_id") if isinstance(ticket, dict) else None
        if assignee is None:
            return "the assigned agent"
        users = data.get("users") if isinstance(data, dict) else None
        name = next((user.get("name") for user in users or [] if isinstance(user, dict)
                     and user.get("id") == assignee and isinstance(user.get("name"), str)), None)
        return f"{name} (agent {assignee})" if name else f"agent {assignee}"

    def _tags(self, write: Write, resumed: bool) -> None:
        change, path = self.tag_change(write), self._path(write, "tags", "/tags")
        if change.remove:
            self.peer.request("tags", "DELETE", path, json={"tags": list(change.remove)})
        self.peer.request("tags", "PUT", path, json={"tags": list(change.add)})

    def existing_notes(self, write: Write) -> Iterable[str | None]:
        response = self.peer.request("note", "GET", self._path(write, "note", "/comments"),
                                     params={"sort_order": "desc"})
        data = self.peer.json("note", response)
        comments = data.get("comments") if isinstance(data, dict) else None
        return [comment.get("plain_body") or comment.get("body") for comment in comments or []
                if isinstance(comment, dict)]

    def post_note(self, write: Write, lines: list[str]) -> None:
        comment = {"body": plain(lines), "public": False}
        self.peer.request("note", "PUT", self._path(write, "note"), json={"ticket": {"comment": comment}})


def _detail_texts(body: Any) -> list[str]:
    """The descriptions in a Zendesk 422's ``details`` (``{"status": [{"description": ...}], ...}``)."""
    details = body.get("details") if isinstance(body, dict) else None
    if not isinstance(details, dict):
        return []
    return [str(entry.get("description", "")) for entries in details.values()
            for entry in (entries if isinstance(entries, list) else [entries]) if isinstance(entry, dict)]
