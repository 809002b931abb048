"""Zendesk Support: group and priority on the ticket, tags through the tags endpoints.

- ``ticket``: ``PUT /api/v2/tickets/{id}`` with ``{"ticket": {"group_id", "priority"}}`` (no
  ``tags`` there: they would replace the agents' tags);
- ``tags``: ``DELETE /api/v2/tickets/{id}/tags`` with triage's old tags, then ``PUT`` on the same
  path with its current ones (``PUT`` adds and keeps the rest; ``POST`` would replace them all);
- ``note``: ``PUT /api/v2/tickets/{id}`` with a private ``comment`` (``public: false`` always
  sent); a retry first reads ``GET /api/v2/tickets/{id}/comments?sort_order=desc``.

Auth: API token, ``Authorization: Basic base64("{email}/token:{token}")``. 429s carry
``Retry-After``. The tags endpoints refuse closed tickets (the delivery fails with Zendesk's message).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import httpx

from triage.settings import ZendeskWriteback

from .adapter import BaseAdapter, StepAction
from .http import build_client
from .note import plain
from .write import Write


class ZendeskAdapter(BaseAdapter[ZendeskWriteback]):
    platform: ClassVar[str] = "zendesk"

    def client(self) -> httpx.Client:
        section = self.section
        auth = httpx.BasicAuth(f"{section.email}/token", section.token.get_secret_value() if section.token else "")
        return build_client(section.url or "", self.settings.timeout_seconds, auth=auth)

    def actions(self, write: Write) -> dict[str, StepAction]:
        actions: dict[str, StepAction] = {"ticket": self._ticket} if self._ticket_fields(write) else {}
        return self.with_note(write, {**actions, "tags": self._tags})

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

    def _ticket(self, write: Write, resumed: bool) -> None:
        self.peer.request("ticket", "PUT", self._path(write, "ticket"), json={"ticket": self._ticket_fields(write)})

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
