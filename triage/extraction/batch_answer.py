"""A batched answer -> for every conversation key asked, its ticket object or why it is unusable.

One call can answer several conversations: the prompt asks for one JSON object whose keys are
the conversation keys (``c1`` .. ``cK``) and whose values are tickets. Each member is read on
its own, from its own span of the answer, so one item's repairs, errors or fields never touch
another's, and an item that holds another asked key inside it is refused rather than guessed
at. A key asked twice, missing, not an object or unreadable is reported, for that item alone
to be asked again; a key nobody asked for is listed and ignored. When the answer is cut off,
every member that closed before the cut is kept.

>>> answer = parse_batch_answer('{"c1": {"a": 1}, "c9": {}, "c2": {"a": 2,}, "c3": {"a": ', ["c1", "c2", "c3", "c4"])
>>> answer.items["c1"], answer.items["c2"]
(BatchItem(key='c1', value={'a': 1}, repairs=()), BatchItem(key='c2', value={'a': 2}, repairs=('trailing_comma',)))
>>> answer.items["c3"].reason, answer.items["c4"].reason, answer.unknown_keys, answer.truncated
('truncated', 'missing', ('c9',), True)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from triage.extraction.parse import (
    NO_OBJECT,
    PROSE,
    ParseError,
    ParsePath,
    TruncatedError,
    clean_answer,
    has_prose,
    object_spans,
)
from triage.extraction.repairs import BrokenObject, Scanner, UnreadableError, matching_close, repair_object
from triage.text import repair_text

#: Why an asked item cannot be used; every such item is asked again on its own.
Reason = Literal["missing", "duplicate_key", "not_an_object", "unparseable", "truncated"]

_SCALAR = re.compile(r"[^,}\n]*")


@dataclass(frozen=True)
class BatchItem:
    """An asked key's object (not yet validated) and the repairs its own span needed."""

    key: str
    value: dict[str, Any]
    repairs: tuple[str, ...]


@dataclass(frozen=True)
class UnusableItem:
    """An asked key that has no usable object, why (``reason``) and what to tell the model."""

    key: str
    reason: Reason
    detail: str


@dataclass(frozen=True)
class BatchAnswer:
    """Every asked key (in the order asked) -> its item; keys not asked for; the answer-level
    repairs (``fence``, ``prose``...; each item's own are on the item); the path; and whether the
    answer stopped inside its object."""

    items: Mapping[str, BatchItem | UnusableItem]
    unknown_keys: tuple[str, ...]
    repairs: tuple[str, ...]
    path: ParsePath
    truncated: bool

    @property
    def usable(self) -> dict[str, BatchItem]:
        return {key: item for key, item in self.items.items() if isinstance(item, BatchItem)}

    @property
    def unusable(self) -> dict[str, UnusableItem]:
        return {key: item for key, item in self.items.items() if isinstance(item, UnusableItem)}


@dataclass(frozen=True)
class _Member:
    """One ``key: value`` of a batch object; ``text`` is None when the answer stops inside it."""

    key: str
    text: str | None


def parse_batch_answer(text: str | None, keys: Sequence[str]) -> BatchAnswer:
    """Read a batched answer for the conversation ``keys`` (no exception for any ``text``).

    >>> answer = parse_batch_answer('{"c1": {"a": 1}, "c1": {"a": 2}, "c2": "n/a"}', ["c1", "c2"])
    >>> [(item.key, item.reason) for item in answer.unusable.values()]
    [('c1', 'duplicate_key'), ('c2', 'not_an_object')]
    """
    asked = tuple(dict.fromkeys(keys))
    try:
        cleaned = clean_answer(text)
    except TruncatedError as exc:
        return _unusable_answer(asked, "truncated", str(exc), truncated=True)
    except ParseError as exc:
        return _unusable_answer(asked, "unparseable", str(exc), truncated=False)
    spans = object_spans(cleaned.text)
    if not spans:
        return _unusable_answer(asked, "unparseable", NO_OBJECT, truncated=False)
    members: dict[str, list[_Member]] = {}
    truncated = False
    for span in spans:
        found, cut = _members(cleaned.text, span.start)
        truncated = truncated or cut
        for member in found:
            members.setdefault(member.key, []).append(member)
    repairs = tuple(sorted({*cleaned.repairs, *[PROSE] * has_prose(cleaned.text, spans)}))
    return BatchAnswer(items={key: _item(key, members.get(key, []), asked) for key in asked},
                       unknown_keys=tuple(key for key in members if key not in asked), repairs=repairs,
                       path="strict" if cleaned.strict is not None else "tolerant", truncated=truncated)


def _unusable_answer(asked: tuple[str, ...], reason: Reason, detail: str, *, truncated: bool) -> BatchAnswer:
    return BatchAnswer(items={key: UnusableItem(key, reason, detail) for key in asked}, unknown_keys=(),
                       repairs=(), path="tolerant", truncated=truncated)


def _item(key: str, members: list[_Member], asked: tuple[str, ...]) -> BatchItem | UnusableItem:
    if not members:
        return UnusableItem(key, "missing", f"the answer has no item {key!r}")
    if len(members) > 1:
        return UnusableItem(key, "duplicate_key", f"the answer gives the item {key!r} {len(members)} times")
    text = members[0].text
    if text is None:
        return UnusableItem(key, "truncated", f"the answer was cut off inside the item {key!r}")
    if not text.startswith("{"):
        return UnusableItem(key, "not_an_object", f"the item {key!r} is not a JSON object")
    result = repair_object(text)
    if isinstance(result, BrokenObject):
        return UnusableItem(key, "unparseable", result.error)
    entangled = sorted(set(result.value) & set(asked) - {key})
    if entangled:
        return UnusableItem(key, "unparseable", f"the item {key!r} holds the item {entangled[0]!r} inside it")
    return BatchItem(key, result.value, result.repairs)


def _members(text: str, start: int) -> tuple[list[_Member], bool]:
    """The members of the object whose ``{`` is at ``start``, and whether the text ends inside it.

    Reading stops at the first thing that is not ``key: value`` (the members after it count as
    missing); commas may be missing or doubled.
    """
    scan = Scanner(text, start + 1)
    found: list[_Member] = []
    while True:
        scan.skip_blank()
        char = scan.peek()
        if char in ("", "}"):
            return found, char == ""
        if char == ",":
            scan.pos += 1
            continue
        try:
            key = _key(scan)
        except (UnreadableError, json.JSONDecodeError):
            return found, True
        scan.skip_blank()
        if key is None or scan.peek() != ":":
            return found, scan.peek() == ""
        scan.pos += 1
        scan.skip_blank()
        value_end = _value_end(scan)
        found.append(_Member(key, None if value_end is None else text[scan.pos:value_end]))
        if value_end is None:
            return found, True
        scan.pos = value_end


def _key(scan: Scanner) -> str | None:
    if scan.at_string():
        return repair_text(json.loads(scan.read_string())).text
    return scan.read_word() or scan.read_number()


def _value_end(scan: Scanner) -> int | None:
    """Where the value at ``scan.pos`` ends (exclusive), or None when the text ends inside it."""
    char, start = scan.peek(), scan.pos
    if not char:
        return None
    if char in "{[":
        close = matching_close(scan.text, start)
        return None if close is None else close + 1
    if scan.at_string():
        probe = Scanner(scan.text, start)
        try:
            probe.read_string()
        except UnreadableError:
            return None
        return probe.pos
    scalar = _SCALAR.match(scan.text, start)
    return scalar.end() if scalar else start
