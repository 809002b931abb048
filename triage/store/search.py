"""The desk's text search: what a ticket's ``search_text`` holds, and the condition that searches it.

Case-insensitivity is done here, not by the database: the stored text and the query are both
case-folded by Python (:meth:`str.casefold`), and the database only looks for a plain substring
(``LIKE '%...%'`` with ``%`` and ``_`` escaped). So SQLite and PostgreSQL find exactly the same
tickets whatever their collations, Chinese and other scripts included; on PostgreSQL a trigram
index (``pg_trgm``, migration ``desk``) keeps the substring search fast.

>>> text = search_text("T-1", [{"role": "customer", "text": "Mein WLAN ist kaputt"}],
...                    {"problem_type": "device_fault", "user_requirements": ["Straße"]})
>>> text.splitlines()
['t-1', 'mein wlan ist kaputt', 'device_fault', 'strasse']
>>> fold("  STRASSE ")
'strasse'
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement

from triage.store.models import Ticket
from triage.text import repair_text


def _values(value: object) -> Iterator[str]:
    """The searchable text of a field value: strings and numbers, inside lists and objects too."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _values(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield str(value)


def fold(text: str) -> str:
    """The form both the stored text and a query take: case-folded, outer spaces removed (and, for a query
    typed into a URL, no NUL or lone surrogate, which no stored text holds)."""
    return repair_text(text).text.strip().casefold()


def search_text(external_id: str, messages: Sequence[Mapping[str, Any]], fields: Mapping[str, Any] | None) -> str:
    """One line for the external id, one per message, one per field value, all case-folded."""
    parts = [external_id, *(str(m.get("text", "")) for m in messages), *_values(dict(fields or {}))]
    return "\n".join(fold(part) for part in parts if part)


def refresh(ticket: Ticket) -> None:
    """Recompute ``ticket.search_text`` from its conversation and fields (after either changed)."""
    conversation = ticket.conversation
    ticket.search_text = search_text(conversation.external_id, conversation.messages or [], ticket.fields)


def matches(query: str) -> ColumnElement[bool]:
    """Tickets whose conversation or fields contain ``query``, ignoring case."""
    return Ticket.search_text.contains(fold(query), autoescape=True)
