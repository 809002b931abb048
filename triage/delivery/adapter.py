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
ticket's notes and skips posting when the marker is there.

A step may return remarks: lines for the note about what it had to do (Zendesk: the agent it
unassigned so that a group change could land). ``record(step, remarks)`` persists both, so a note
posted by a later attempt still says it.

What a platform's 404 means is the adapter's to say (:meth:`BaseAdapter.explain_not_found`): the
record is gone only when the platform says so; a 404 that comes from a wrong base URL, account,
admin or team fails the delivery naming the setting. Where the body cannot tell the two apart, a
probe of the configuration decides, its answer kept for ``writeback.probe_cache_seconds``
(:class:`ProbeCache`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import replace
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import httpx

from triage.settings import PlatformWriteback, RouteMapping, WritebackSettings

from .failures import DeliveryError, FailedDeliveryError, GoneDeliveryError, UnexplainedNotFoundError
from .http import Peer
from .note import already_posted, note_lines
from .tags import TagChange, priority_tag, resolved_tag, route_tag, triage_tags
from .write import Write, ticket_link

#: A platform id that may go into a URL path: letters, digits, ``_``, ``-``.
SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
NUMERIC_ID = re.compile(r"[0-9]{1,20}")

#: Items per page when a note check reads a ticket's conversation, and the most pages it reads before it
#: gives up rather than risk posting the note twice.
PAGE_SIZE = 100
MAX_PAGES = 100

Remarks = tuple[str, ...]
#: One step: ``(write, resumed)`` -> remarks for the note (None: nothing to say).
StepAction = Callable[[Write, bool], Remarks | None]
#: The outbox's record of a step done, with the step's remarks (committed before the next step runs).
RecordStep = Callable[[str, Remarks], None]


class WritebackAdapter(Protocol):
    """One helpdesk's REST dialect for write-back."""

    platform: ClassVar[str]

    def steps(self, write: Write) -> tuple[str, ...]:
        """The names of the steps this write needs, in the order they must run."""
        ...

    def apply(self, step: str, write: Write, *, resumed: bool) -> Remarks:
        """Run one step; its remarks for the note. Raise :class:`~triage.delivery.failures.DeliveryError`
        when it did not happen."""
        ...

    def close(self) -> None: ...


def deliver(adapter: WritebackAdapter, write: Write, *, done: Collection[str] = (),
            record: RecordStep = lambda step, remarks: None, resumed: bool = False) -> tuple[str, ...]:
    """Run the steps of ``write`` not in ``done``, in order; ``record(step, remarks)`` after each success.

    ``record`` must persist the step and its remarks before returning (the outbox commits them); later
    steps of this run see the remarks in ``write.remarks``. ``resumed``: an earlier attempt of this
    delivery ran (or may have run) some of it. Returns the steps run; raises the first step's error,
    leaving the later steps for the retry.
    """
    ran = []
    for step in adapter.steps(write):
        if step in done:
            continue
        remarks = adapter.apply(step, write, resumed=resumed)
        record(step, remarks)
        if remarks:
            write = replace(write, remarks=(*write.remarks, *remarks))
        ran.append(step)
    return tuple(ran)


AnswerT = TypeVar("AnswerT")


class ProbeCache:
    """Answers about an adapter's configuration (a probe's, a token check's), each kept for ``seconds`` of
    ``clock``. An answer is None (the configuration checks out) or what is wrong; a probe that raises (a
    transient error) caches nothing."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds, self.clock = seconds, clock
        self._answers: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, probe: Callable[[], AnswerT]) -> AnswerT:
        now = self.clock()
        with self._lock:
            kept = self._answers.get(key)
        if kept is not None and now - kept[0] < self.seconds:
            answer: AnswerT = kept[1]
            return answer
        fresh = probe()
        with self._lock:
            self._answers[key] = (now, fresh)
        return fresh


SectionT = TypeVar("SectionT", bound=PlatformWriteback[Any, Any])


class BaseAdapter(Generic[SectionT]):
    """What every adapter shares: its section of the settings, one HTTP peer, route lookups,
    the tag change, the note and the path-safe platform id."""

    platform: ClassVar[str] = ""
    #: A header with the unix time a rate limit resets, read when a 429 has no Retry-After.
    reset_header: ClassVar[str | None] = None
    #: Whether the platform's ticket ids are digits only (Intercom's are not).
    numeric_ids: ClassVar[bool] = True

    def __init__(self, settings: WritebackSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.section: SectionT = settings.platform(self.platform)  # type: ignore[assignment]
        token = self.section.token.get_secret_value() if self.section.token else ""
        self.peer = Peer(self.platform, self.client(), retry_after_max=settings.retry_after_max_seconds,
                         secrets=[token], reset_header=self.reset_header,
                         rate_limited_wait=self.section.rate_limited_wait_seconds, read_answer=self.read_answer,
                         clock=clock)
        self.probes = ProbeCache(settings.probe_cache_seconds, clock)

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

    def explain_not_found(self, write: Write, answer: UnexplainedNotFoundError) -> DeliveryError:
        """What a 404 means: :class:`GoneDeliveryError` when the platform says the record does not exist,
        else a :class:`FailedDeliveryError` naming the setting to check. The default asks :meth:`probe`."""
        wrong = self.probes.get("configuration", self.probe)
        if wrong is not None:
            return self.failed(answer.step, f"{answer.message} ({wrong})", status=answer.status)
        return GoneDeliveryError(self.platform, answer.step, answer.message, status=answer.status)

    def probe(self) -> str | None:
        """A request that works whenever the configuration is right: None when it does, else what is wrong."""
        raise NotImplementedError

    def read_answer(self, step: str, response: httpx.Response) -> DeliveryError | None:
        """The platform's own reading of an error answer before its status decides (None: the status's)."""
        return None

    def preflight(self, step: str) -> None:
        """Checks that must pass before anything is written (Chatwoot: the kind of token)."""
        return None

    def refuse(self, write: Write, step: str) -> None:
        """Refuse, before any request, a write this adapter must not make: from another platform, or with a
        platform id unfit for a URL path."""
        if write.ref.platform != self.platform:
            raise self.failed(step, f"the conversation came from {write.ref.platform}, not {self.platform}")
        self.ticket_id(write, step)

    # ---- the interface --------------------------------------------------------------------------

    def steps(self, write: Write) -> tuple[str, ...]:
        return tuple(self._actions(write))

    def _actions(self, write: Write) -> dict[str, StepAction]:
        """A suggestion's one step, the note (whether or not notes are on: it is all a suggestion writes), else
        the adapter's :meth:`actions`."""
        return {"note": self._note} if write.suggestion else self.actions(write)

    def apply(self, step: str, write: Write, *, resumed: bool) -> Remarks:
        self.refuse(write, step)
        action = self._actions(write).get(step)
        if action is None:
            raise self.failed(step, "is not a step of this delivery")
        try:
            self.preflight(step)
            return action(write, resumed) or ()
        except UnexplainedNotFoundError as answer:
            raise self.explain_not_found(write, answer) from None

    def close(self) -> None:
        self.peer.close()

    # ---- shared parts ---------------------------------------------------------------------------

    def failed(self, step: str, message: str, *, status: int | None = None) -> FailedDeliveryError:
        """The error for a write the platform cannot take as it is (``raise self.failed(...)``)."""
        return FailedDeliveryError(self.platform, step, message, status=status)

    @property
    def url_setting(self) -> str:
        """The environment variable of the base URL, named when the configuration looks wrong."""
        return f"TRIAGE_WRITEBACK_{self.platform.upper()}_URL"

    def probe_path(self, path: str, setting: str) -> str | None:
        """A probe: ``GET path`` answers 2xx when the configuration is right; a 404 means ``setting`` is
        wrong (the answer says so). Other refusals (401, 403) raise as they are; transient ones too."""
        try:
            self.peer.request("probe", "GET", path)
        except UnexplainedNotFoundError:
            return f"GET {path} answers 404 too: check {setting}"
        return None

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
                                         resolved=write.resolved, remarks=write.remarks, suggestion=write.suggestion))

    def all_pages(self, step: str, fetch: Callable[[int], tuple[list[Any], bool]]) -> list[Any]:
        """Every item of a paged listing: ``fetch(page)`` (from 1) gives a page's items and whether more follow."""
        items: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            found, more = fetch(page)
            items += found
            if not more:
                return items
        raise self.failed(step, f"the ticket has more than {MAX_PAGES} pages of {PAGE_SIZE}: the note check cannot "
                                "read them all, so no note is posted (a second one could be)")

    def ticket_id(self, write: Write, step: str) -> str:
        """The platform id, checked before it goes into a URL path (it came from a webhook payload)."""
        pattern = NUMERIC_ID if self.numeric_ids else SAFE_ID
        if not pattern.fullmatch(write.ref.ticket_id):
            raise self.failed(step, f"{write.ref.ticket_id[:40]!r} is not a {self.platform} ticket id")
        return write.ref.ticket_id
