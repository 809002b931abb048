"""Labels from the helpdesk: an agent's group or priority change on a ticket triage wrote back is a review.

Zendesk sends ``zen:event-type:ticket.group_assignment_changed`` and ``...ticket.priority_changed`` (the
adapter makes them a :class:`~triage.intake.platforms.base.HelpdeskChange`). :func:`take_change` records
one as a review label when all of these hold, and otherwise answers why not (the webhook answers 200 and
stores nothing):

- the actor is not triage's own Zendesk user (``writeback.zendesk.user_id``). With no user id set no change
  is taken at all, since triage's own write-backs would come back as labels agreeing with themselves; a
  warning says so once per process;
- the ticket is one triage wrote back: its conversation came from Zendesk with that ticket id and has a
  ``delivered`` write-back delivery;
- the write-back mapping read backwards gives a label (:class:`HelpdeskMapping`): for a group, the one
  route whose ``[writeback.zendesk.routes.<route>] group_id`` is the new group (a group no route maps to,
  or several routes map to, gives no label and nothing is recorded: a review without a route would count
  for nothing); for a priority, the one triage priority mapped to the new Zendesk priority (through
  ``[writeback.zendesk.priorities]`` and the routes' own ``priority``).

A label may also tell field values (:func:`implied_fields`): those every routing rule leading to the
label's route (or priority) agrees on, e.g. ``hardware-escalation`` <- ``device_fault`` + ``high``. The
fallback target's route and priority tell none (tickets no rule matched land there too). What is recorded
is the audit event ``helpdesk_review`` by ``zendesk:<user id>``
(:func:`triage.tickets.lifecycle.helpdesk_review`): the ticket is left as it was, nothing is written back
and the desk's assignment rule does not apply. The event id is an intake key (``delivery:<id>``), so
Zendesk's redelivery of it is recorded once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, sessionmaker

from triage.intake.normalise import ID_MAX_CHARS, bounded_key, check_id
from triage.intake.platforms.base import HelpdeskChange
from triage.settings import RouteRule, RoutingSettings, RuleValue, Settings, ZendeskWriteback
from triage.states.deliveries import DeliveryKind, DeliveryStatus
from triage.store.db import insert_ignoring_conflicts
from triage.store.models import INTAKE_KEYS, Delivery, Ticket
from triage.store.models import Conversation as ConversationRow
from triage.tickets import lifecycle

log = logging.getLogger(__name__)

#: The platforms whose changes can be labels (their write-back mapping can be read backwards).
LABEL_PLATFORMS = ("zendesk",)
#: The longest platform user id taken: the actor ``<platform>:<id>`` must fit ``events.actor`` (64).
ACTOR_ID_MAX_CHARS = 48


@dataclass(frozen=True)
class Label:
    """What a helpdesk change says the ticket should have been: a route or a priority, and field values."""

    route: str | None = None
    priority: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Taken:
    """What became of a change: recorded (``event_id``), a redelivery of one recorded before
    (``duplicate``), or ignored (``event_id`` None), ``reason`` saying which and why."""

    reason: str
    ticket_id: int | None = None
    event_id: int | None = None
    duplicate: bool = False
    label: Label | None = None
    #: The ticket's status (it is left as it was).
    status: str | None = None

    @property
    def recorded(self) -> bool:
        return self.event_id is not None or self.duplicate


def _single(value: RuleValue | list[RuleValue]) -> list[RuleValue]:
    return value if isinstance(value, list) else [value]


def implied_fields(rules: Sequence[RouteRule]) -> dict[str, Any]:
    """The field values every one of ``rules`` requires alike (one value, the same in each rule).

    >>> rule = lambda when: RouteRule(when=when, route="r", priority="P2", sla_hours=1)
    >>> implied_fields([rule({"p": "fault", "u": "normal"}), rule({"p": "fault", "u": ["low"]})])
    {'p': 'fault'}
    >>> implied_fields([rule({"p": ["a", "b"]})]), implied_fields([])
    ({}, {})
    """
    if not rules:
        return {}
    implied: dict[str, Any] = {}
    for name in sorted(set.intersection(*(set(rule.when) for rule in rules))):
        values = [_single(rule.when[name]) for rule in rules]
        if all(len(allowed) == 1 for allowed in values) and len({repr(allowed[0]) for allowed in values}) == 1:
            implied[name] = values[0][0]
    return implied


class HelpdeskMapping:
    """Zendesk's write-back mapping (``writeback.zendesk``) read backwards, with the routing rules.

    >>> from triage.settings import RouteTarget, ZendeskRoute
    >>> routing = RoutingSettings(rules=[
    ...     RouteRule(when={"p": "fault", "u": "high"}, route="hw", priority="P1", sla_hours=1),
    ...     RouteRule(when={"p": "fault", "u": "low"}, route="hw-slow", priority="P3", sla_hours=8)],
    ...     fallback=RouteTarget(route="review", priority="P2", sla_hours=4))
    >>> mapping = HelpdeskMapping(ZendeskWriteback(routes={"hw": ZendeskRoute(group_id=7, priority="urgent"),
    ...                                                    "hw-slow": ZendeskRoute(group_id=8)},
    ...                                            priorities={"P3": "low"}), routing)
    >>> mapping.label("group", "7")
    Label(route='hw', priority=None, fields={'p': 'fault', 'u': 'high'})
    >>> mapping.label("priority", "urgent"), mapping.label("priority", "high")
    (Label(route=None, priority='P1', fields={'p': 'fault', 'u': 'high'}), 'no triage priority maps to priority high')
    """

    def __init__(self, section: ZendeskWriteback, routing: RoutingSettings) -> None:
        self.section = section
        self.routing = routing

    def label(self, change: str, value: str | None) -> Label | str:
        """The label a change to ``value`` gives, or why it gives none."""
        if value is None:
            return f"the {change} was cleared"
        return self._group(value) if change == "group" else self._priority(value)

    def _group(self, group: str) -> Label | str:
        routes = sorted(route for route, mapped in self.section.routes.items() if str(mapped.group_id) == group)
        if not routes:
            return f"group {group} is no route's write-back group"
        if len(routes) > 1:
            return f"group {group} is the write-back group of several routes ({', '.join(routes)}): no route label"
        route = routes[0]
        rules = [] if route == self.routing.fallback.route else [r for r in self.routing.rules if r.route == route]
        return Label(route=route, fields=implied_fields(rules))

    def _priority(self, priority: str) -> Label | str:
        targets = [*self.routing.rules, self.routing.fallback]
        levels = {level for level, mapped in self.section.priorities.items() if mapped == priority}
        levels |= {target.priority for target in targets
                   if (mapped := self.section.routes.get(target.route)) is not None and mapped.priority == priority}
        if not levels:
            return f"no triage priority maps to priority {priority}"
        if len(levels) > 1:
            return f"priority {priority} is the write-back priority of several ({', '.join(sorted(levels))})"
        level = levels.pop()
        rules = ([] if level == self.routing.fallback.priority
                 else [rule for rule in self.routing.rules if rule.priority == level])
        return Label(priority=level, fields=implied_fields(rules))


class WarnOnce:
    """Log a warning once per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False

    def warn(self, message: str) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        log.warning(message)


NO_USER_ID = WarnOnce()
NO_USER_ID_WARNING = ("writeback.zendesk.user_id (TRIAGE_WRITEBACK_ZENDESK_USER_ID) is not set: Zendesk group and "
                      "priority changes are not taken as review labels, since triage cannot tell its own write-backs "
                      "from an agent's; set it to the id of the Zendesk user triage writes back as")


def written_back(session: Session, source: str, platform_ticket_id: str) -> tuple[int, int] | None:
    """The ticket (and its conversation) of ``source``'s ticket ``platform_ticket_id`` that triage wrote back to
    it (a ``delivered`` write-back exists), or None."""
    delivered = exists().where(Delivery.ticket_id == Ticket.id, Delivery.kind == DeliveryKind.WRITEBACK,
                               Delivery.target == source, Delivery.status == DeliveryStatus.DELIVERED)
    row = session.execute(select(Ticket.id, ConversationRow.id).join(ConversationRow,
                                                                      ConversationRow.id == Ticket.conversation_id)
                          .where(ConversationRow.source == source,
                                 ConversationRow.platform_ticket_id == platform_ticket_id, delivered)
                          .order_by(Ticket.id.desc()).limit(1)).first()
    return None if row is None else (int(row[0]), int(row[1]))


def check_change(change: HelpdeskChange) -> HelpdeskChange:
    """``change`` when its ids can be stored (:func:`~triage.intake.normalise.check_id`), else
    :class:`~triage.intake.normalise.IntakeFieldError` (a 400) naming the field."""
    check_id(change.platform_ticket_id, '"detail.id"')
    check_id(change.actor_id, '"detail.actor_id"', ACTOR_ID_MAX_CHARS)
    for name in ("previous", "current"):
        value = getattr(change, name)
        if value is not None:
            check_id(value, f'"event.{name}"', ID_MAX_CHARS)
    if change.delivery_id is not None:
        check_id(change.delivery_id, '"id"')
    return change


def take_change(sessions: sessionmaker[Session], settings: Settings, change: HelpdeskChange, now: datetime) -> Taken:
    """Record ``change`` as a review label when it is one (see the module's text), else say why not."""
    if change.source not in LABEL_PLATFORMS:
        return Taken(f"changes on {change.source} are not taken as labels")
    section = settings.writeback.zendesk
    if section.user_id is None:
        NO_USER_ID.warn(NO_USER_ID_WARNING)
        return Taken("writeback.zendesk.user_id is not set: helpdesk changes are not taken as labels")
    if change.actor_id == section.user_id:
        return Taken("the change was made by triage's own Zendesk user")
    label = HelpdeskMapping(section, settings.routing).label(change.change, change.current)
    if isinstance(label, str):
        return Taken(label)
    with sessions.begin() as session:
        found = written_back(session, change.source, change.platform_ticket_id)
        if found is None:
            log.info("helpdesk change ignored: %s ticket %s was never written back by triage", change.source,
                     change.platform_ticket_id, extra={"source": change.source})
            return Taken(f"{change.source} ticket {change.platform_ticket_id} was never written back by triage")
        ticket_id, conversation_id = found
        if change.delivery_id is not None and not _first_delivery(session, change, conversation_id, now):
            return Taken("this event was taken before", ticket_id, duplicate=True, label=label,
                         status=session.get_one(Ticket, ticket_id).status)
        actor = f"{change.source}:{change.actor_id}"
        recorded = {"source": change.source, "change": change.change, "previous": change.previous,
                    "current": change.current, "route": label.route, "priority": label.priority,
                    "fields": label.fields, "delivery_id": change.delivery_id,
                    "at": change.at.isoformat() if change.at else None}
        event_id = lifecycle.helpdesk_review(session, ticket_id, actor, recorded, now)
        status = session.get_one(Ticket, ticket_id).status
    log.info("helpdesk review of ticket %s by %s: %s", ticket_id, actor, label,
             extra={"ticket_id": ticket_id, "source": change.source})
    return Taken(f"recorded as a review by {actor}", ticket_id, event_id, label=label, status=status)


def _first_delivery(session: Session, change: HelpdeskChange, conversation_id: int, now: datetime) -> bool:
    """Store the event's intake key; False when it was stored before (a redelivery)."""
    dialect = session.get_bind().dialect.name
    key = bounded_key("delivery", change.delivery_id or "")
    statement = (insert_ignoring_conflicts(dialect, INTAKE_KEYS, ("source", "key"))
                 .values(source=change.source, key=key, conversation_id=conversation_id, created_at=now)
                 .returning(INTAKE_KEYS.c.id))
    return session.execute(statement).first() is not None
