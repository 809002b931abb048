"""Zammad: group and priority on the ticket, tags one by one, an internal note article.

- ``ticket``: ``PUT /api/v1/tickets/{id}`` with ``group_id`` (or ``group`` by name) and ``priority_id``;
- ``tags``: ``GET /api/v1/tags?object=Ticket&o_id={id}``, then ``DELETE /api/v1/tags/remove`` for
  triage's old tags that are there and ``POST /api/v1/tags/add`` for its current ones that are
  not, each with ``{"item", "object": "Ticket", "o_id"}``. Other tags are never touched;
- ``note``: ``POST /api/v1/ticket_articles`` with ``type: note``, ``internal: true`` (an email-type
  article would be sent even when internal); a retry first reads every page of
  ``GET /api/v1/ticket_articles/by_ticket/{id}?page=N&per_page=100``. Zammad's API gives no total and
  says to count pages up until no further objects come; the versions we read answer ``by_ticket`` with
  every article whatever the page, so reading stops at a short page, an empty one, or one that brings no
  article not seen before.

Auth: ``Authorization: Token token=<token>``. The token's user needs the groups' permissions.
Rate limits are undocumented: ``writeback.zammad.rate_limited_wait_seconds`` sets the wait after a
429 without Retry-After. A 404's body does not tell a missing ticket from a wrong URL, so a probe
decides: ``GET /api/v1/users/me`` answers when the URL and token are right (then the ticket is gone).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import httpx

from triage.settings import ZammadWriteback

from .adapter import PAGE_SIZE, BaseAdapter, StepAction
from .http import build_client
from .note import plain
from .write import Write

TAG_OBJECT = "Ticket"


class ZammadAdapter(BaseAdapter[ZammadWriteback]):
    platform: ClassVar[str] = "zammad"

    def client(self) -> httpx.Client:
        token = self.section.token.get_secret_value() if self.section.token else ""
        return build_client(self.section.url or "", self.settings.timeout_seconds,
                            headers={"Authorization": f"Token token={token}"})

    def actions(self, write: Write) -> dict[str, StepAction]:
        actions: dict[str, StepAction] = {"ticket": self._ticket} if self._ticket_fields(write) else {}
        return self.with_note(write, {**actions, "tags": self._tags})

    def _ticket_fields(self, write: Write) -> dict[str, Any]:
        if not write.moves:
            return {}
        mapping = self.section.routes.get(write.route)
        fields: dict[str, Any] = {}
        if mapping is not None and mapping.group_id is not None:
            fields["group_id"] = mapping.group_id
        elif mapping is not None and mapping.group is not None:
            fields["group"] = mapping.group
        priority = mapping.priority_id if mapping is not None and mapping.priority_id is not None else (
            self.section.priorities.get(write.priority))
        if priority is not None:
            fields["priority_id"] = priority
        return fields

    def _ticket(self, write: Write, resumed: bool) -> None:
        self.peer.request("ticket", "PUT", f"/api/v1/tickets/{self.ticket_id(write, 'ticket')}",
                          json=self._ticket_fields(write))

    def _tags(self, write: Write, resumed: bool) -> None:
        ticket_id = int(self.ticket_id(write, "tags"))
        data = self.peer.json("tags", self.peer.request("tags", "GET", "/api/v1/tags",
                                                        params={"object": TAG_OBJECT, "o_id": ticket_id}))
        listed = data.get("tags") if isinstance(data, dict) else None
        missing, stale = self.tag_change(write).present([str(tag) for tag in listed or []])
        for tag in stale:
            self.peer.request("tags", "DELETE", "/api/v1/tags/remove",
                              json={"item": tag, "object": TAG_OBJECT, "o_id": ticket_id})
        for tag in missing:
            self.peer.request("tags", "POST", "/api/v1/tags/add",
                              json={"item": tag, "object": TAG_OBJECT, "o_id": ticket_id})

    def probe(self) -> str | None:
        return self.probe_path("/api/v1/users/me", f"{self.url_setting} (https://{{fqdn}}, without /api/v1)")

    def existing_notes(self, write: Write) -> Iterable[str | None]:
        path = f"/api/v1/ticket_articles/by_ticket/{self.ticket_id(write, 'note')}"
        seen: set[Any] = set()

        def page(number: int) -> tuple[list[Any], bool]:
            response = self.peer.request("note", "GET", path, params={"page": number, "per_page": PAGE_SIZE})
            data = self.peer.json("note", response)
            articles = [article for article in data if isinstance(article, dict)] if isinstance(data, list) else []
            new = [article for article in articles if article.get("id") not in seen]
            seen.update(article.get("id") for article in articles)
            return new, len(articles) >= PAGE_SIZE and bool(new)

        return [article.get("body") for article in self.all_pages("note", page)]

    def post_note(self, write: Write, lines: list[str]) -> None:
        self.peer.request("note", "POST", "/api/v1/ticket_articles", json={
            "ticket_id": int(self.ticket_id(write, "note")), "body": plain(lines), "content_type": "text/plain",
            "type": "note", "internal": True, "sender": "Agent"})
