"""The interface every write-back adapter implements, the shared parts, and the step runner.

A delivery is a sequence of named steps (``ticket``, ``tags``, ``note``...: each adapter names
its own). The outbox persists the names of the steps already done and, on a retry, runs only
the others, so a note posted before a later failure is never posted again::

    adapter = build_adapter("zendesk", settings.writeback)
    deliver(adapter, write, done=row.steps_done, record=save_step, resumed=row.attempts > 0)

Group, priority and tag steps are repeatable as they are (setting the same group twice, adding
a tag that is there). The note step is not, and no platform has an idempotency key, so the note
carries a marker line with the delivery id and, when ``resumed`` (an earlier attempt of this
delivery may have posted it without the outbox hearing back), the note step first reads the
ticket's latest notes and skips posting when the marker is there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import httpx

from triage.settings import PlatformWriteback, RouteMapping, WritebackSettings

from .errors import FailedDeliveryError
from .http import Peer
from .note import already_posted, note_lines
from .tags import TagChange, priority_tag, resolved_tag, route_tag, triage_tags
from .write import Write, ticket_link

#: A platform id that may go into a URL path: letters, digits, ``_``, ``-``.
SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
NUMERIC_ID = re.compile(r"[0-9]{1,20}")

StepAction = Callable[[Write, bool], None]


class WritebackAdapter(Protocol):
    """One helpdesk's REST dialect for write-back."""

    platform: ClassVar[str]

    def steps(self, write: Write) -> tuple[str, ...]:
        """The names of the steps this write needs, in the order they must run."""
        ...

    def apply(self, step: str, write: Write, *, resumed: bool) -> None:
        """Run one step; raise :class:`~triage.delivery.errors.DeliveryError` when it did not happen."""
        ...

    def close(self) -> None: ...


def deliver(adapter: WritebackAdapter, write: Write, *, done: Collection[str] = (),
            record: Callable[[str], None] = lambda step: None, resumed: bool = False) -> tuple[str, ...]:
    """Run the steps of ``write`` not in ``done``, in order; ``record(step)`` after each success.

    ``record`` must persist the step before returning (the outbox commits it). ``resumed``: an
    earlier attempt of this delivery ran (or may have run) some of it. Returns the steps run;
    raises the first step's error, leaving the later steps for the retry.
    """
    ran = []
    for step in adapter.steps(write):
        if step in done:
            continue
        adapter.apply(step, write, resumed=resumed)
        record(step)
        ran.append(step)
    return tuple(ran)


SectionT = TypeVar("SectionT", bound=PlatformWriteback[Any, Any])


class BaseAdapter(Generic[SectionT]):
    """What every adapter shares: its section of the settings, one HTTP peer, route lookups,
    the tag change, the note and the path-safe platform id."""

    platform: ClassVar[str] = ""
    #: A header with the unix time a rate limit resets, read when a 429 has no Retry-After.
    reset_header: ClassVar[str | None] = None

    def __init__(self, settings: WritebackSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.section: SectionT = settings.platform(self.platform)  # type: ignore[assignment]
        token = self.section.token.get_secret_value() if self.section.token else ""
        self.peer = Peer(self.platform, self.client(), retry_after_max=settings.retry_after_max_seconds,
                         secrets=[token], reset_header=self.reset_header,
                         rate_limited_wait=self.section.rate_limited_wait_seconds, clock=clock)

    # ---- what each adapter provides -------------------------------------------------------------

    def client(self) -> httpx.Client:
        """The httpx client: base URL, credentials, headers."""
        raise NotImplementedError

    def actions(self, write: Write) -> dict[str, StepAction]:
        """The steps ``write`` needs, by name, in order (the note step last)."""
        raise NotImplementedError

    def existing_notes(self, write: Write) -> Iterable[str | None]:
        """The bodies of the ticket's latest notes (to find this delivery's marker)."""
        raise NotImplementedError

    def post_note(self, write: Write, lines: list[str]) -> None:
        raise NotImplementedError

    # ---- the interface --------------------------------------------------------------------------

    def steps(self, write: Write) -> tuple[str, ...]:
        return tuple(self.actions(write))

    def apply(self, step: str, write: Write, *, resumed: bool) -> None:
        if write.ref.platform != self.platform:
            raise self.failed(step, f"the conversation came from {write.ref.platform}, not {self.platform}")
        action = self.actions(write).get(step)
        if action is None:
            raise self.failed(step, "is not a step of this delivery")
        action(write, resumed)

    def close(self) -> None:
        self.peer.close()

    # ---- shared parts ---------------------------------------------------------------------------

    def failed(self, step: str, message: str) -> FailedDeliveryError:
        """The error for a write the platform cannot take as it is (``raise self.failed(...)``)."""
        return FailedDeliveryError(self.platform, step, message)

    def mapping(self, route: str | None) -> RouteMapping | None:
        return self.section.routes.get(route) if route else None

    def destination(self, write: Write) -> Any:
        """The route's mapping when ``write`` moves the ticket (not for a resolve), else None."""
        return self.section.routes.get(write.route) if write.moves else None

    def target_priority(self, write: Write) -> Any:
        """The platform priority: the route's own, else the one mapped from triage's priority, else None
        (always None for a resolve, which moves nothing)."""
        if not write.moves:
            return None
        own = getattr(self.mapping(write.route), "priority", None)
        return own if own is not None else self.section.priorities.get(write.priority)

    def tag_change(self, write: Write) -> TagChange:
        prefix = self.settings.tag_prefix
        current = [*triage_tags(prefix, write.route, write.priority), *self._mapped_tags(write.route)]
        previous: list[str] = []
        if write.previous_route:
            previous += [route_tag(prefix, write.previous_route), *self._mapped_tags(write.previous_route)]
        if write.previous_priority:
            previous.append(priority_tag(prefix, write.previous_priority))
        if write.resolved:
            current.append(resolved_tag(prefix))
        elif write.previous_resolved:
            previous.append(resolved_tag(prefix))
        return TagChange.between(current, previous)

    def _mapped_tags(self, route: str) -> list[str]:
        mapping = self.mapping(route)
        return list(mapping.tags) if mapping else []

    def with_note(self, write: Write, actions: dict[str, StepAction]) -> dict[str, StepAction]:
        """``actions`` plus the ``note`` step when notes are on."""
        return {**actions, "note": self._note} if self.settings.note else actions

    def _note(self, write: Write, resumed: bool) -> None:
        if resumed and already_posted(self.existing_notes(write), write.delivery_id):
            return
        link = ticket_link(self.settings.triage_url, write.ticket_id)
        self.post_note(write, note_lines(write.delivery_id, write.route, write.priority, write.fields, link,
                                         resolved=write.resolved))

    def ticket_id(self, write: Write, step: str, *, numeric: bool = True) -> str:
        """The platform id, checked before it goes into a URL path (it came from a webhook payload)."""
        pattern = NUMERIC_ID if numeric else SAFE_ID
        if not pattern.fullmatch(write.ref.ticket_id):
            raise self.failed(step, f"{write.ref.ticket_id[:40]!r} is not a {self.platform} ticket id")
        return write.ref.ticket_id
