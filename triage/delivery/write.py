"""The value a write-back delivery is driven by: where to write and what triage decided.

The outbox stores it as the delivery's payload (:meth:`Write.to_json`) in the same transaction
as the decision, and rebuilds it on every attempt (:meth:`Write.from_json`):

>>> write = Write("d-17", PlatformRef("zendesk", "35436", "22129848"), ticket_id=42,
...               route="hardware-escalation", priority="P1", previous_route="hardware-support",
...               previous_priority="P2", fields={"problem_type": "device_fault"})
>>> Write.from_json(write.to_json()) == write
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PlatformRef:
    """Where the conversation lives: the platform, its own ticket or conversation id (the id its
    REST API takes; Chatwoot: the display id) and its account where it has several."""

    platform: str
    ticket_id: str
    account_id: str | None = None


@dataclass(frozen=True)
class Write:
    """One write-back: triage ticket ``ticket_id`` is now on ``route`` with ``priority``.

    ``previous_route`` / ``previous_priority`` are what the last write-back of this ticket set
    (a re-route or a correction): only their triage tags are removed. ``fields`` are the
    extracted ticket fields, shown in the optional note. ``delivery_id`` is the outbox's id of
    this delivery, stable across its retries: the note carries it, so a retry can tell whether
    the note was already posted. ``remarks`` are lines for the note from steps already done (the
    outbox keeps them with the steps), e.g. the agent a Zendesk group change unassigned.
    """

    delivery_id: str
    ref: PlatformRef
    ticket_id: int
    route: str
    priority: str
    previous_route: str | None = None
    previous_priority: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    resolved: bool = False
    previous_resolved: bool = False
    remarks: tuple[str, ...] = ()
    #: A suggestion (autonomy ``suggest``): only an internal note saying where triage would route the ticket;
    #: no group, priority or tags change until a person confirms or corrects it in triage.
    suggestion: bool = False

    @property
    def moves(self) -> bool:
        """Whether this write sets the group/team and priority (every write but a resolve or a suggestion)."""
        return not self.resolved and not self.suggestion

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "fields": dict(self.fields), "remarks": list(self.remarks)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Write:
        return cls(**{**data, "ref": PlatformRef(**data["ref"]), "fields": dict(data.get("fields") or {}),
                      "remarks": tuple(str(line) for line in data.get("remarks") or ())})


def ticket_link(triage_url: str | None, ticket_id: int) -> str | None:
    """The ticket in triage's API, ``{triage_url}/tickets/{id}``; None without ``writeback.triage_url``.

    >>> ticket_link("https://triage.example.com", 42), ticket_link(None, 42)
    ('https://triage.example.com/tickets/42', None)
    """
    return f"{triage_url}/tickets/{ticket_id}" if triage_url else None
