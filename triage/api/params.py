"""Request parameters every dispatch route reads the same way.

A ticket id is any integer in the path; one no ticket can have (zero, negative, or beyond what
the ``tickets.id`` column holds, :data:`~triage.store.models.MAX_ID`) is simply no ticket: 404, as for an id
not taken yet, never a database error. Query values may not hold NUL or other control
characters (PostgreSQL refuses NUL in text): such a value is a 400 naming the parameter.

>>> ticket_in_range(7)
7
>>> ticket_in_range(2**31)
Traceback (most recent call last):
...
triage.store.queries.TicketNotFoundError: no ticket 2147483648
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from fastapi import Depends, Path, Request

from triage.errors import InputError
from triage.store.models import MAX_ID
from triage.store.queries import TicketNotFoundError

CONTROL = "Cc"


class QueryValueError(InputError):
    """A query parameter's value holds a character no filter can match (a control character)."""


def ticket_in_range(ticket_id: Annotated[int, Path(description="the ticket's id")]) -> int:
    """The path's ticket id; an id no ticket can have is :class:`TicketNotFoundError` (404)."""
    if not 1 <= ticket_id <= MAX_ID:
        raise TicketNotFoundError(ticket_id)
    return ticket_id


#: A ``{ticket_id}`` path parameter, checked by :func:`ticket_in_range`.
TicketId = Annotated[int, Depends(ticket_in_range)]


def plain_query(request: Request) -> None:
    """Refuse (400) a query value holding a control character, naming the parameter."""
    for name, value in request.query_params.multi_items():
        if any(unicodedata.category(char) == CONTROL for char in value):
            raise QueryValueError(f"query parameter {name!r} holds a control character")
