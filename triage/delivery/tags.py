"""The tags triage writes, and how a re-route changes them without touching the agents' own.

>>> triage_tags("triage_", "Hardware Escalation", "P1")
('triage_hardware-escalation', 'triage_p1')
>>> change = TagChange.between(["triage_hardware-escalation", "triage_p1", "triage-hw"],
...                            ["triage_hardware-support", "triage_p1"])
>>> change.add, change.remove
(('triage_hardware-escalation', 'triage_p1', 'triage-hw'), ('triage_hardware-support',))
>>> change.merged(["vip", "Triage_Hardware-Support", "triage_p1"])
['vip', 'triage_p1', 'triage_hardware-escalation', 'triage-hw']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_NOT_TAG_CHARACTERS = re.compile(r"[^a-z0-9_-]+")


def slug(value: str) -> str:
    """``value`` in the characters every platform takes in a tag: lower case, ``-`` for the rest."""
    return _NOT_TAG_CHARACTERS.sub("-", value.lower()).strip("-")


def route_tag(prefix: str, route: str) -> str:
    return prefix + slug(route)


def priority_tag(prefix: str, priority: str) -> str:
    return prefix + slug(priority)


#: The tag a resolve adds (after the prefix): ``triage_resolved``.
RESOLVED_TAG = "resolved"


def resolved_tag(prefix: str) -> str:
    return prefix + RESOLVED_TAG


def triage_tags(prefix: str, route: str, priority: str) -> tuple[str, str]:
    """The route and priority tags: ``triage_<route>``, ``triage_<priority>``."""
    return route_tag(prefix, route), priority_tag(prefix, priority)


def _unique(tags: Sequence[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for tag in tags:
        seen.setdefault(tag.casefold(), tag)
    return tuple(seen.values())


@dataclass(frozen=True)
class TagChange:
    """Tags to add (all of triage's current tags) and to remove (triage's old tags that no longer apply)."""

    add: tuple[str, ...]
    remove: tuple[str, ...]

    @classmethod
    def between(cls, current: Sequence[str], previous: Sequence[str]) -> TagChange:
        add = _unique(current)
        wanted = {tag.casefold() for tag in add}
        return cls(add=add, remove=tuple(tag for tag in _unique(previous) if tag.casefold() not in wanted))

    def merged(self, existing: Sequence[str]) -> list[str]:
        """The full list for platforms that only take the whole list: ``existing`` minus the
        removed tags, plus the added ones, in order and compared case-insensitively."""
        removed = {tag.casefold() for tag in self.remove}
        kept = [tag for tag in _unique(existing) if tag.casefold() not in removed]
        present = {tag.casefold() for tag in kept}
        return kept + [tag for tag in self.add if tag.casefold() not in present]

    def present(self, existing: Sequence[str]) -> tuple[list[str], list[str]]:
        """For per-tag platforms: which of ``add`` are missing, and which of ``remove`` are there."""
        have = {tag.casefold() for tag in existing}
        return ([tag for tag in self.add if tag.casefold() not in have],
                [tag for tag in existing if tag.casefold() in {r.casefold() for r in self.remove}])
