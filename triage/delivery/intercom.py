"""Intercom: team assignment, tags by id, an admin note; priority as configured.

- ``team``: ``POST /conversations/{id}/parts`` with ``{"message_type": "assignment", "type":
  "team", "admin_id", "assignee_id": <team id>}``;
- ``priority`` (only when ``priority_via`` is not ``none``: no stable API version documents a
  way to write it): ``PUT /conversations/{id}`` with ``{"custom_attributes": {<attribute>: <value>}}``
  or, for Preview versions, ``{"priority": <value>, "admin_id"}``;
- ``tags``: ``GET /conversations/{id}`` for the attached tags; ``DELETE
  /conversations/{id}/tags/{tag id}`` for triage's old ones; ``POST /tags`` (creates the tag or
  returns the existing one) and ``POST /conversations/{id}/tags`` for the current ones. Tag ids
  are kept per adapter; one that was deleted in the workspace meanwhile is looked up again.
  Other tags are never touched;
- ``note``: ``POST /conversations/{id}/reply`` with ``{"message_type": "note", "type": "admin",
  "admin_id", "body": <HTML>}``; a retry first reads the conversation's parts.

Auth: ``Authorization: Bearer <token>`` and ``Intercom-Version`` (``writeback.intercom.version``).
A 429 carries ``X-RateLimit-Reset`` (unix seconds), waited for; errors come as ``error.list``.

A 404 is gone only when it is the conversation's: ``not_found`` on reading the conversation, with the
workspace itself answering (``GET /me``, the probe). A write to the conversation answers the same
``not_found`` for a wrong admin or team id, so the adapter reads the conversation, then
``GET /admins/{admin id}`` and ``GET /teams/{team id}`` (``admin_not_found``, ``team_not_found``) to
say which setting is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import httpx

from triage.settings import IntercomWriteback, WritebackSettings

from .adapter import SAFE_ID, BaseAdapter, StepAction
from .failures import DeliveryError, GoneDeliveryError, UnexplainedNotFoundError
from .http import build_client, error_codes
from .note import html
from .write import Write

TAG_NOT_FOUND, NOT_FOUND = "tag_not_found", "not_found"
ADMIN_NOT_FOUND, TEAM_NOT_FOUND = "admin_not_found", "team_not_found"
ADMIN_VARIABLE = "TRIAGE_WRITEBACK_INTERCOM_ADMIN_ID"
#: Attempts to attach a tag whose cached id may be stale: the cached id, then a fresh one.
ATTACH_TRIES = 2


class IntercomAdapter(BaseAdapter[IntercomWriteback]):
    platform: ClassVar[str] = "intercom"
    reset_header: ClassVar[str | None] = "X-RateLimit-Reset"
    numeric_ids: ClassVar[bool] = False

    def __init__(self, settings: WritebackSettings, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings, clock=clock)
        self._tag_ids: dict[str, str] = {}  # tag name (case-folded) -> the workspace's tag id

    def client(self) -> httpx.Client:
        section = self.section
        token = section.token.get_secret_value() if section.token else ""
        return build_client(section.url or "", self.settings.timeout_seconds,
                            headers={"Authorization": f"Bearer {token}", "Intercom-Version": section.version})

    def actions(self, write: Write) -> dict[str, StepAction]:
        actions: dict[str, StepAction] = {}
        mapping = self.destination(write)
        if mapping is not None and mapping.team_id is not None:
            actions["team"] = self._team
        if self.section.priority_via != "none" and self.target_priority(write) is not None:
            actions["priority"] = self._priority
        return self.with_note(write, {**actions, "tags": self._tags})

    @property
    def _admin(self) -> str:
        return self.section.admin_id or ""

    def _path(self, write: Write, step: str, tail: str = "") -> str:
        return f"/conversations/{self.ticket_id(write, step)}{tail}"

    # ---- what a 404 means -----------------------------------------------------------------------

    def probe(self) -> str | None:
        return self.probe_path("/me", f"{self.url_setting} (https://api.intercom.io, https://api.eu.intercom.io "
                                      "or https://api.au.intercom.io)")

    def explain_not_found(self, write: Write, answer: UnexplainedNotFoundError) -> DeliveryError:
        codes = error_codes(answer.body)
        if ADMIN_NOT_FOUND in codes:
            return self.failed(answer.step, f"{answer.message} (check {ADMIN_VARIABLE})", status=answer.status)
        wrong = self.probes.get("configuration", self.probe)
        if wrong is not None or NOT_FOUND not in codes:
            hint = wrong or f"not Intercom's not_found: check {self.url_setting}"
            return self.failed(answer.step, f"{answer.message} ({hint})", status=answer.status)
        conversation = self._path(write, answer.step)
        if (answer.method, answer.path) != ("GET", conversation):
            try:  # is it the conversation, or the admin or team the write named?
                self.peer.request(answer.step, "GET", conversation)
            except UnexplainedNotFoundError as missing:
                if NOT_FOUND not in error_codes(missing.body):
                    raise
            else:
                return self.failed(answer.step, f"{answer.message} ({self._misaddressed(write, answer.step)})",
                                   status=answer.status)
        return GoneDeliveryError(self.platform, answer.step, answer.message, status=answer.status)

    def _misaddressed(self, write: Write, step: str) -> str:
        """Why a write to a conversation that exists answered 404: the admin, the route's team, or unknown."""
        admin = self._admin
        if self.probes.get(f"admin:{admin}", lambda: self._missing(f"/admins/{admin}", ADMIN_NOT_FOUND)):
            return f"the conversation exists, admin {admin} does not: check {ADMIN_VARIABLE}"
        mapping = self.section.routes.get(write.route) if step == "team" else None
        team = mapping.team_id if mapping is not None else None
        if team is not None and SAFE_ID.fullmatch(team) and self.probes.get(
                f"team:{team}", lambda: self._missing(f"/teams/{team}", TEAM_NOT_FOUND)):
            return (f"the conversation exists, team {team} does not: check "
                    f"writeback.intercom.routes.{write.route}.team_id")
        return "the conversation exists: Intercom did not say what it could not find"

    def _missing(self, path: str, code: str) -> str | None:
        """``code`` when ``GET path`` answers 404 with it, else None."""
        try:
            self.peer.request("probe", "GET", path)
        except UnexplainedNotFoundError as missing:
            return code if code in error_codes(missing.body) else None
        return None

    def _team(self, write: Write, resumed: bool) -> None:
        mapping = self.section.routes[write.route]
        self.peer.request("team", "POST", self._path(write, "team", "/parts"), json={
            "message_type": "assignment", "type": "team", "admin_id": self._admin, "assignee_id": mapping.team_id})

    def _priority(self, write: Write, resumed: bool) -> None:
        value = self.target_priority(write)
        body: dict[str, Any] = ({"custom_attributes": {self.section.priority_attribute: value}}
                                if self.section.priority_via == "custom_attribute"
                                else {"priority": value, "admin_id": self._admin})
        self.peer.request("priority", "PUT", self._path(write, "priority"), json=body)

    def _conversation(self, write: Write, step: str) -> dict[str, Any]:
        data = self.peer.json(step, self.peer.request(step, "GET", self._path(write, step)))
        return data if isinstance(data, dict) else {}

    def _tags(self, write: Write, resumed: bool) -> None:
        change = self.tag_change(write)
        attached = _attached_tags(self._conversation(write, "tags"))
        self._tag_ids.update((name.casefold(), tag_id) for name, tag_id in attached.items())
        missing, stale = change.present(list(attached))
        for name in stale:  # a 404 tag_not_found: someone detached it first, which is what we wanted
            self.peer.request("tags", "DELETE", self._path(write, "tags", f"/tags/{attached[name]}"),
                              json={"admin_id": self._admin}, tolerate=_tag_not_found)
        for name in missing:
            self._attach(write, name)

    def _attach(self, write: Write, name: str) -> None:
        path = self._path(write, "tags", "/tags")
        for _ in range(ATTACH_TRIES):
            body = {"id": self._tag_id(name), "admin_id": self._admin}
            if self.peer.request("tags", "POST", path, json=body, tolerate=_tag_not_found).is_success:
                return
            self._tag_ids.pop(name.casefold(), None)  # deleted in the workspace since we looked it up
        raise self.peer.retry("tags", f"tag {name!r} keeps disappearing from the workspace")

    def _tag_id(self, name: str) -> str:
        """The workspace's id of tag ``name`` (``POST /tags`` creates it or returns the existing one)."""
        known = self._tag_ids.get(name.casefold())
        if known is not None:
            return known
        data = self.peer.json("tags", self.peer.request("tags", "POST", "/tags", json={"name": name}))
        tag_id = str(data.get("id", "")) if isinstance(data, dict) else ""
        if not SAFE_ID.fullmatch(tag_id):
            raise self.peer.retry("tags", f"POST /tags answered no usable id for {name!r}")
        self._tag_ids[name.casefold()] = tag_id
        return tag_id

    def existing_notes(self, write: Write) -> Iterable[str | None]:
        parts = self._conversation(write, "note").get("conversation_parts")
        listed = parts.get("conversation_parts") if isinstance(parts, dict) else parts
        return [part.get("body") for part in listed or [] if isinstance(part, dict) and part.get("part_type") == "note"]

    def post_note(self, write: Write, lines: list[str]) -> None:
        self.peer.request("note", "POST", self._path(write, "note", "/reply"), json={
            "message_type": "note", "type": "admin", "admin_id": self._admin, "body": html(lines)})


def _attached_tags(conversation: dict[str, Any]) -> dict[str, str]:
    """Tag name -> id of the tags on the conversation (ids checked before they go into a path)."""
    tags = conversation.get("tags")
    listed = tags.get("tags") if isinstance(tags, dict) else tags
    return {str(tag["name"]): str(tag["id"]) for tag in listed or []
            if isinstance(tag, dict) and tag.get("name") and SAFE_ID.fullmatch(str(tag.get("id", "")))}


def _tag_not_found(response: httpx.Response) -> bool:
    """Whether the answer is a 404 ``tag_not_found`` (not the conversation's ``not_found``)."""
    if response.status_code != 404:
        return False
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return False
    return any(isinstance(error, dict) and error.get("code") == TAG_NOT_FOUND for error in errors)
