"""Chatwoot: team assignment, priority, labels (read-merge-write), a private note.

All under ``/api/v1/accounts/{account_id}/conversations/{display id}/``:

- ``team``: ``POST assignments`` with ``{"team_id"}``. Chatwoot clears the team when the id is
  not one of the account's teams and answers ``null``: the delivery then fails, naming the id;
- ``priority``: ``POST toggle_priority`` with ``{"priority": "urgent"|"high"|"medium"|"low"}``;
- ``labels``: ``GET labels``, then ``POST labels`` with the merged list, because ``POST``
  replaces the whole list (this races with an agent editing labels at the same moment). Chatwoot
  keeps only labels defined in the account, so labels missing from its answer fail the delivery
  with their names: create them once under Settings > Labels;
- ``note``: ``POST messages`` with ``{"content", "message_type": "outgoing", "private": true}``;
  a retry first reads ``GET messages`` (the latest page).

Auth: the ``api_access_token`` header, a **user's** access token. An agent-bot token reaches only the
bot endpoints (``BOT_ACCESSIBLE_ENDPOINTS``: no labels before Chatwoot 4.x, never the message list),
so before its first step the adapter checks the token once with ``GET /api/v1/profile``, which a bot
token cannot read (401 "Access to this endpoint is not authorized for bots"): the delivery then fails
before anything is written. The account is ``TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID``; a conversation
stored from another account is refused, never written to. Chatwoot answers every missing record
alike (404 "Resource could not be found"), a missing account as a missing conversation, so a probe
decides: ``GET /api/v1/accounts/{account_id}/teams``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import httpx

from triage.settings import ChatwootWriteback

from .adapter import BaseAdapter, StepAction
from .failures import FailedDeliveryError, UnexplainedNotFoundError
from .http import build_client
from .note import plain
from .write import Write

UNAUTHORIZED, NOT_FOUND = 401, 404
#: Chatwoot's words when a bot token calls a user endpoint (access_token_auth_helper.rb), and ours.
BOT_REFUSAL = "not authorized for bots"
BOT_TOKEN = "write-back needs a user access token, not an agent-bot token"
ACCOUNT_VARIABLE = "TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID"


class ChatwootAdapter(BaseAdapter[ChatwootWriteback]):
    platform: ClassVar[str] = "chatwoot"

    def client(self) -> httpx.Client:
        token = self.section.token.get_secret_value() if self.section.token else ""
        return build_client(self.section.url or "", self.settings.timeout_seconds, headers={"api_access_token": token})

    def actions(self, write: Write) -> dict[str, StepAction]:
        actions: dict[str, StepAction] = {}
        mapping = self.destination(write)
        if mapping is not None and mapping.team_id is not None:
            actions["team"] = self._team
        if self.target_priority(write) is not None:
            actions["priority"] = self._priority
        return self.with_note(write, {**actions, "labels": self._labels})

    # ---- the token and the account ---------------------------------------------------------------

    def preflight(self, step: str) -> None:
        wrong = self.probes.get("token", self._token_check)
        if wrong is not None:
            status, message = wrong
            raise self.failed(step, message, status=status)

    def _token_check(self) -> tuple[int, str] | None:
        """None when the token is a user's; else the status and message the delivery fails with."""
        try:
            self.peer.request("token", "GET", "/api/v1/profile")
        except UnexplainedNotFoundError as missing:
            return missing.status or NOT_FOUND, (f"GET /api/v1/profile answers 404: check {self.url_setting} "
                                                 "(the Chatwoot host, without /api/v1)")
        except FailedDeliveryError as refused:
            if refused.status == UNAUTHORIZED and BOT_REFUSAL in refused.message.lower():
                return UNAUTHORIZED, (f"{BOT_TOKEN} (Chatwoot: {refused.message}); use the access token on a "
                                      "user's Profile settings page")
            raise
        return None

    def probe(self) -> str | None:
        account = self.section.account_id
        return self.probe_path(f"/api/v1/accounts/{account}/teams",
                               f"{ACCOUNT_VARIABLE} (account {account} does not answer) or {self.url_setting}")

    def refuse(self, write: Write, step: str) -> None:
        super().refuse(write, step)
        account = str(self.section.account_id)
        if write.ref.account_id is not None and write.ref.account_id != account:
            raise self.failed(step, f"the conversation is in account {write.ref.account_id[:20]!r}, "
                                    f"write-back is configured for account {account}")

    def _path(self, write: Write, step: str, tail: str) -> str:
        return f"/api/v1/accounts/{self.section.account_id}/conversations/{self.ticket_id(write, step)}/{tail}"

    def _team(self, write: Write, resumed: bool) -> None:
        team_id = self.section.routes[write.route].team_id
        path = self._path(write, "team", "assignments")
        if self.peer.json("team", self.peer.request("team", "POST", path, json={"team_id": team_id})) is None:
            raise self.failed("team", f"team {team_id} is not a team of account {self.section.account_id} "
                                      "(Chatwoot cleared the conversation's team)")

    def _priority(self, write: Write, resumed: bool) -> None:
        self.peer.request("priority", "POST", self._path(write, "priority", "toggle_priority"),
                          json={"priority": self.target_priority(write)})

    def _labels(self, write: Write, resumed: bool) -> None:
        path, change = self._path(write, "labels", "labels"), self.tag_change(write)
        current = self._labels_of(self.peer.request("labels", "GET", path))
        wanted = change.merged(current)
        if wanted == current:
            return
        kept = self._labels_of(self.peer.request("labels", "POST", path, json={"labels": wanted}))
        undefined = [label for label in change.add if label not in kept]
        if undefined:
            raise self.failed("labels", f"labels not defined in account {self.section.account_id}: "
                                        f"{', '.join(undefined)} (create them under Settings > Labels)")

    def _labels_of(self, response: httpx.Response) -> list[str]:
        """The ``payload`` label list; without one, nothing is written (a guess would drop the agents' labels)."""
        data = self.peer.json("labels", response)
        listed = data.get("payload") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            raise self.peer.retry("labels", "answered without the conversation's label list")
        return [str(label) for label in listed]

    def existing_notes(self, write: Write) -> Iterable[str | None]:
        data = self.peer.json("note", self.peer.request("note", "GET", self._path(write, "note", "messages")))
        messages = data.get("payload") if isinstance(data, dict) else None
        return [message.get("content") for message in messages or []
                if isinstance(message, dict) and message.get("private")]

    def post_note(self, write: Write, lines: list[str]) -> None:
        self.peer.request("note", "POST", self._path(write, "note", "messages"),
                          json={"content": plain(lines), "message_type": "outgoing", "private": True})


