"""Freshdesk: group, priority and tags in one ticket update, a private note.

- ``ticket``: ``GET /api/v2/tickets/{id}`` for its tags, then ``PUT /api/v2/tickets/{id}`` with
  ``group_id``, ``priority`` (1 low, 2 medium, 3 high, 4 urgent) and the merged ``tags``:
  ``tags`` on an update replaces the whole list and Freshdesk has no per-tag call, so this races
  with an agent editing tags at the same moment. Nothing to change: no ``PUT``;
- ``note``: ``POST /api/v2/tickets/{id}/notes`` with ``{"body": <HTML>, "private": true}``; a
  retry first reads every page of ``GET /api/v2/tickets/{id}/conversations?page=N&per_page=100``
  (Freshdesk pages its lists, 30 by default, and says ``Link: <...>; rel="next"`` while more follow).

Auth: ``Authorization: Basic base64("<API key>:X")``. Validation errors are 400s (Freshdesk has no
422) and fail the delivery; 429s carry ``Retry-After``. A 404 body does not say whether the ticket is
missing or the URL is wrong, so a probe decides: ``GET /api/v2/agents/me`` answers when the URL and key
are right (then the ticket is gone).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import httpx

from triage.settings import FreshdeskWriteback

from .adapter import PAGE_SIZE, BaseAdapter, StepAction
from .http import build_client
from .note import html
from .write import Write

#: Freshdesk ignores the password of API-key basic auth; this is the conventional one.
API_KEY_PASSWORD = "X"


class FreshdeskAdapter(BaseAdapter[FreshdeskWriteback]):
    platform: ClassVar[str] = "freshdesk"

    def client(self) -> httpx.Client:
        token = self.section.token.get_secret_value() if self.section.token else ""
        return build_client(self.section.url or "", self.settings.timeout_seconds,
                            auth=httpx.BasicAuth(token, API_KEY_PASSWORD))

    def actions(self, write: Write) -> dict[str, StepAction]:
        return self.with_note(write, {"ticket": self._ticket})

    def _path(self, write: Write, step: str, tail: str = "") -> str:
        return f"/api/v2/tickets/{self.ticket_id(write, step)}{tail}"

    def _ticket(self, write: Write, resumed: bool) -> None:
        path = self._path(write, "ticket")
        ticket = self.peer.json("ticket", self.peer.request("ticket", "GET", path))
        listed = ticket.get("tags") if isinstance(ticket, dict) else None
        if not isinstance(listed, list):  # without the agents' tags, a merged list would drop them
            raise self.peer.retry("ticket", "answered without the ticket's tags")
        current = [str(tag) for tag in listed]
        update: dict[str, Any] = {}
        mapping = self.destination(write)
        if mapping is not None and mapping.group_id is not None:
            update["group_id"] = mapping.group_id
        priority = self.target_priority(write)
        if priority is not None:
            update["priority"] = priority
        tags = self.tag_change(write).merged(current)
        if tags != current:
            update["tags"] = tags
        if update:
            self.peer.request("ticket", "PUT", path, json=update)

    def probe(self) -> str | None:
        return self.probe_path("/api/v2/agents/me", f"{self.url_setting} (https://{{domain}}.freshdesk.com, "
                                                    "without /api/v2)")

    def existing_notes(self, write: Write) -> Iterable[str | None]:
        path = self._path(write, "note", "/conversations")

        def page(number: int) -> tuple[list[Any], bool]:
            response = self.peer.request("note", "GET", path, params={"page": number, "per_page": PAGE_SIZE})
            data = self.peer.json("note", response)
            entries = [entry for entry in data if isinstance(entry, dict)] if isinstance(data, list) else []
            return entries, bool(entries) and "next" in response.links

        return [entry.get("body") or entry.get("body_text") for entry in self.all_pages("note", page)]

    def post_note(self, write: Write, lines: list[str]) -> None:
        path = self._path(write, "note", "/notes")
        self.peer.request("note", "POST", path, json={"body": html(lines), "private": True})
