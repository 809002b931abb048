"""Autonomy levels, confidence bands and the precedence that picks a ticket's level.

A route's level (``[autonomy] default``, or ``[autonomy.routes."<route>"] level``) and two
thresholds on the ticket's confidence decide what happens to a valid answer, first match wins:

1. ``shadow`` route: decided and recorded, nothing written to the helpdesk;
2. a suspected injection on a held priority: ``needs_review`` (reason ``injection_suspected``), as before;
3. confidence below ``review_below``: ``needs_review``, reason ``low_confidence``;
4. ``review`` route: ``needs_review``, reason ``review_route``;
5. ``suggest`` route, or confidence below ``auto_above``: routed, the helpdesk gets a note only;
6. ``auto``: routed and written back in full.

A ticket without a confidence (``None``) is held by no threshold: its route's level applies.

>>> applied(Level.AUTO, 0.4, Thresholds(auto_above=0.8, review_below=0.5))
Verdict(level=<Level.REVIEW: 'review'>, hold='low_confidence')
>>> applied(Level.AUTO, 0.6, Thresholds(auto_above=0.8, review_below=0.5))
Verdict(level=<Level.SUGGEST: 'suggest'>, hold=None)
>>> applied(Level.SHADOW, 0.1, Thresholds(auto_above=0.8, review_below=0.5), injection_hold=True)
Verdict(level=<Level.SHADOW: 'shadow'>, hold=None)
>>> band(0.9, 0.8, 0.5), band(0.6, 0.8, 0.5), band(0.2, 0.8, 0.5), band(None, 0.8, 0.5)
('high', 'medium', 'low', None)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Level(StrEnum):
    """What triage may do by itself on a route (stored in ``tickets.autonomy``)."""

    AUTO = "auto"        # routed and written back in full
    SUGGEST = "suggest"  # routed; the helpdesk gets an internal note with the suggestion until a person confirms
    REVIEW = "review"    # needs_review on the review route
    SHADOW = "shadow"    # decided and recorded; nothing at all written to the helpdesk


#: Why a verdict holds a ticket for a person (values of :class:`triage.states.tickets.FallbackReason`).
Hold = Literal["injection_suspected", "low_confidence", "review_route"]
Band = Literal["high", "medium", "low"]


@dataclass(frozen=True)
class Thresholds:
    """A route's thresholds on the ticket confidence: at or above ``auto_above`` its level applies; below
    ``review_below`` the ticket needs review; between them it is a suggestion."""

    auto_above: float = 0.0
    review_below: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """The level applied to a valid answer and, for ``review``, why it is held (``hold``)."""

    level: Level
    hold: Hold | None = None


def applied(route_level: Level, confidence: float | None, thresholds: Thresholds, *,
            injection_hold: bool = False) -> Verdict:
    """The level a ticket on a route of ``route_level`` gets with ``confidence`` (module docstring's order)."""
    if route_level == Level.SHADOW:
        return Verdict(Level.SHADOW)
    if injection_hold:
        return Verdict(Level.REVIEW, "injection_suspected")
    if confidence is not None and confidence < thresholds.review_below:
        return Verdict(Level.REVIEW, "low_confidence")
    if route_level == Level.REVIEW:
        return Verdict(Level.REVIEW, "review_route")
    if route_level == Level.SUGGEST or (confidence is not None and confidence < thresholds.auto_above):
        return Verdict(Level.SUGGEST)
    return Verdict(Level.AUTO)


def band(confidence: float | None, auto_above: float, review_below: float) -> Band | None:
    """High (at or above ``auto_above``), Low (below ``review_below``) or Medium (between): the bands are the
    route's thresholds. With the shipped thresholds (0) every ticket is High; None without a confidence."""
    if confidence is None:
        return None
    if confidence < review_below:
        return "low"
    return "high" if confidence >= auto_above else "medium"
