"""Text every store can keep: NUL removed, lone surrogates replaced, and whether anything changed.

PostgreSQL refuses NUL (``\\x00``) in ``text`` and ``\\u0000`` in ``jsonb``, and a lone UTF-16
surrogate (``\\ud800`` decoded from a JSON escape, say) cannot be encoded to UTF-8 at all, so
neither may reach the database. :func:`repair_text` is the one place that makes a string safe;
intake uses it for conversations, extraction for raw model output, and :func:`repair_strings`
applies it to every key and string value inside a parsed JSON value.

>>> repair_text("Wi-Fi\\x00 down")
RepairedText(text='Wi-Fi down', repaired=True)
>>> repair_text("fine as it is")
RepairedText(text='fine as it is', repaired=False)
>>> repair_strings({"a\\x00": ["\\ud800", 1, None]})
RepairedValue(value={'a': ['\ufffd', 1, None]}, repaired=True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")
#: UTF-16 is the one codec that pairs surrogates back up: a high one followed by a low one is a
#: real character; anything left over is decoded as the replacement character.
_PAIRING_CODEC = "utf-16-le"

JSONValue: TypeAlias = "dict[str, JSONValue] | list[JSONValue] | str | int | float | bool | None"


@dataclass(frozen=True)
class RepairedText:
    """A string safe for a PostgreSQL ``text`` or JSON column, and whether it had to change."""

    text: str
    repaired: bool


@dataclass(frozen=True)
class RepairedValue:
    """A JSON value whose every key and string is safe to store, and whether any had to change."""

    value: JSONValue
    repaired: bool


def repair_text(text: str) -> RepairedText:
    """``text`` without NUL characters and with lone surrogates replaced by U+FFFD.

    A surrogate pair that arrived as two code points (``"\\ud83d\\ude00"``) is joined into the
    character it encodes rather than replaced:

    >>> repair_text("\\ud83d\\ude00 ok \\udc00")
    RepairedText(text='😀 ok \ufffd', repaired=True)
    >>> repair_text("\\x00\\x00").text
    ''
    """
    has_surrogate = not text.isascii() and _SURROGATE.search(text) is not None
    if NUL not in text and not has_surrogate:
        return RepairedText(text, False)
    fixed = text.replace(NUL, "")
    if has_surrogate:
        fixed = fixed.encode(_PAIRING_CODEC, "surrogatepass").decode(_PAIRING_CODEC, "replace")
    return RepairedText(fixed, True)


def repair_strings(value: JSONValue) -> RepairedValue:
    """A copy of ``value`` with :func:`repair_text` applied to every object key and string.

    Two keys that become equal keep the later value, as JSON objects do. The walk uses no
    recursion, so any depth :func:`json.loads` returns is fine.

    >>> repair_strings(["plain", {"k": "v"}])
    RepairedValue(value=['plain', {'k': 'v'}], repaired=False)
    >>> repair_strings({"a\\x00": 1, "a": 2}).value
    {'a': 2}
    """
    repaired = False

    def fix(text: str) -> str:
        nonlocal repaired
        result = repair_text(text)
        repaired = repaired or result.repaired
        return result.text

    root: list[JSONValue] = []
    # (value to copy, container its copy goes into, key there when it is an object). Children are
    # pushed in reverse so that each container receives its items in their original order.
    pending: list[tuple[JSONValue, list[JSONValue] | dict[str, JSONValue], str]] = [(value, root, "")]
    while pending:
        source, target, key = pending.pop()
        copy: JSONValue = source
        children: list[tuple[JSONValue, list[JSONValue] | dict[str, JSONValue], str]] = []
        if isinstance(source, str):
            copy = fix(source)
        elif isinstance(source, dict):
            copy = {}
            children = [(item, copy, fix(item_key)) for item_key, item in source.items()]
        elif isinstance(source, list):
            copy = []
            children = [(item, copy, "") for item in source]
        if isinstance(target, list):
            target.append(copy)
        else:
            target[key] = copy
        pending.extend(reversed(children))
    return RepairedValue(root[0], repaired)
