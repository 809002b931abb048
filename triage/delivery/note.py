"""The optional internal note: the extracted fields, what the write-back had to do on the way
(its steps' remarks, e.g. an agent unassigned), a link to the ticket in triage, and a marker line
naming the delivery, so a retry can see that the note is already there.

>>> lines = note_lines("d-17", "hardware-escalation", "P1",
...                    {"problem_type": "device_fault", "user_requirements": ["refund", "<b>now</b>"]},
...                    "https://triage.example.com/tickets/42")
>>> print(plain(lines))
triage routed this ticket to hardware-escalation (P1).
problem_type: device_fault
user_requirements: refund; <b>now</b>
In triage: https://triage.example.com/tickets/42
triage delivery d-17
>>> html(lines).count("<p>"), "&lt;b&gt;now&lt;/b&gt;" in html(lines)
(5, True)
>>> note_lines("d-18", "billing", "P3", {}, None, remarks=("triage unassigned Ada (agent 7).",))
['triage routed this ticket to billing (P3).', 'triage unassigned Ada (agent 7).', 'triage delivery d-18']
>>> already_posted(["<p>triage delivery d-17</p>"], "d-17"), already_posted(["triage delivery d-170"], "d-17")
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

NOT_STATED = "-"


def marker(delivery_id: str) -> str:
    """The note's last line: unique to the delivery, unchanged by HTML escaping."""
    return f"triage delivery {delivery_id}"


def note_lines(delivery_id: str, route: str, priority: str, fields: Mapping[str, Any], link: str | None, *,
               resolved: bool = False, remarks: Sequence[str] = (), suggestion: bool = False) -> list[str]:
    """The note's lines (a suggestion's head says nothing was changed).

    >>> note_lines("d-19", "billing", "P3", {}, None, suggestion=True)[0]
    'triage suggests routing this ticket to billing (P3); nothing was changed: confirm or correct it in triage.'
    """
    if suggestion:
        head = (f"triage suggests routing this ticket to {route} ({priority}); nothing was changed: confirm or "
                "correct it in triage.")
    elif resolved:
        head = f"triage: this ticket was resolved ({route}, {priority})."
    else:
        head = f"triage routed this ticket to {route} ({priority})."
    lines = [head]
    lines += [f"{name}: {_shown(value)}" for name, value in fields.items()]
    lines += list(remarks)
    if link:
        lines.append(f"In triage: {link}")
    return [*lines, marker(delivery_id)]


def _shown(value: Any) -> str:
    if value is None or value == []:
        return NOT_STATED
    if isinstance(value, list):
        return "; ".join(str(item) for item in value)
    return str(value)


def plain(lines: list[str]) -> str:
    return "\n".join(lines)


def html(lines: list[str]) -> str:
    """For platforms whose notes are HTML (Intercom, Freshdesk): every line escaped, one paragraph each."""
    return "".join(f"<p>{escape(line)}</p>" for line in lines)


def already_posted(bodies: Iterable[str | None], delivery_id: str) -> bool:
    """Whether one of the notes ``bodies`` (plain or HTML) is this delivery's note."""
    pattern = re.compile(re.escape(marker(delivery_id)) + r"(?![A-Za-z0-9_-])")
    return any(body and pattern.search(body) for body in bodies)
