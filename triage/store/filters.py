"""The values a ticket filter can take, and the rule for every filter: a value that cannot exist is an
error listing the allowed values, never an empty answer.

The allowed values come from the data the filters read, not from code: statuses from
:class:`~triage.states.tickets.Status`, routes and priorities from the routing settings (every rule
and the fallback target), and extracted fields from their enum in the ticket schema (a field without
an enum takes any value). ``GET /tickets``, the desk and ``triage tickets`` all check through
:meth:`FilterValues.check`::

    FilterValues.of(settings, schema).check(TicketFilter(status="bogus"))
    # UnknownFilterValueError: status='bogus' matches no ticket; allowed: queued, processing, ...
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from triage.errors import InputError
from triage.schema import RefWalker, TicketSchema
from triage.settings import Settings
from triage.states.tickets import Status
from triage.store.queries import TicketFilter


class UnknownFilterValueError(InputError):
    """A filter asks for a value no ticket can have (400 in the API, exit status 1 in the CLI)."""

    def __init__(self, name: str, value: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"{name}={value!r} matches no ticket; allowed: {', '.join(allowed)}")
        self.name, self.value, self.allowed = name, value, allowed


def _text(value: object) -> str:
    """How a stored field value compares in a filter: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def enum_values(schema: TicketSchema, name: str) -> tuple[str, ...] | None:
    """The values field ``name`` can hold, as filters compare them; None when it is not an enum."""
    walker = RefWalker(schema.document)
    enum = walker.follow(schema.properties[name], lambda node: node.get("enum"), lambda ref: None)
    if not isinstance(enum, list):
        return None
    return _unique([_text(value) for value in enum if value is not None])


@dataclass(frozen=True)
class FilterValues:
    statuses: tuple[str, ...]
    routes: tuple[str, ...]
    priorities: tuple[str, ...]
    #: Enum fields among the filterable ones -> their values.
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings, schema: TicketSchema) -> FilterValues:
        targets = [*settings.routing.rules, settings.routing.fallback]
        enums = {name: enum_values(schema, name) for name in settings.api.filter_fields}
        return cls(statuses=tuple(Status), routes=_unique([t.route for t in targets]),
                   priorities=_unique(sorted(t.priority for t in targets)),
                   fields={name: values for name, values in enums.items() if values is not None})

    def check(self, filters: TicketFilter) -> None:
        """Raise :class:`UnknownFilterValueError` for the first value no ticket can have."""
        wanted = [("status", filters.status, self.statuses), ("route", filters.route, self.routes),
                  ("priority", filters.priority, self.priorities),
                  *((name, value, self.fields.get(name)) for name, value in filters.fields.items())]
        for name, value, allowed in wanted:
            if value is not None and allowed is not None and value not in allowed:
                raise UnknownFilterValueError(name, value, allowed)


def as_utc(moment: datetime | None) -> datetime | None:
    """A filter's time as an aware UTC datetime (a time given without a zone is taken as UTC).

    >>> as_utc(datetime(2026, 12, 1)).isoformat()
    '2026-12-01T00:00:00+00:00'
    """
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. year 1 with a positive offset: no UTC time exists for it
        raise InputError(f"since={moment.isoformat()} is out of range") from None
