"""Text -> one JSON object: strict ``json.loads`` first, then a tolerant pass.

The tolerant pass forgives what chat models commonly wrap around a good answer: a UTF-8 BOM,
Markdown code fences, prose before or after the object, and trailing commas. Anything else is
a :class:`ParseError` whose message can be shown to the model in a re-ask.

>>> parse_json_object('{"a": 1}')
Parsed(value={'a': 1}, path='strict')
>>> parse_json_object('Sure! ```json\\n{"a": [1, 2,],}\\n``` Hope it helps.')
Parsed(value={'a': [1, 2]}, path='tolerant')
>>> parse_json_object('[1, 2]')
Traceback (most recent call last):
...
triage.extraction.parse.ParseError: the answer must be one JSON object, but its top level is an array
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

BOM = "\ufeff"
TRUNCATED_FINISH_REASON = "length"

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\r?\n?(.*?)(?:```|\Z)", re.DOTALL)
_CLOSER_AHEAD = re.compile(r"\s*[}\]]")
_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number",
                    bool: "a boolean", type(None): "null"}


class ParseError(ValueError):
    """The answer holds no usable JSON object; the message says what is wrong.

    >>> str(ParseError("no JSON object found in the answer"))
    'no JSON object found in the answer'
    """


@dataclass(frozen=True)
class Parsed:
    """A parsed answer and the path that succeeded: ``strict`` or ``tolerant``.

    >>> Parsed({"a": 1}, "strict").value
    {'a': 1}
    """

    value: dict[str, Any]
    path: Literal["strict", "tolerant"]


def is_truncated(finish_reason: str | None) -> bool:
    """True when the API stopped because the token budget ran out.

    >>> is_truncated("length"), is_truncated("stop")
    (True, False)
    """
    return finish_reason == TRUNCATED_FINISH_REASON


def parse_json_object(text: str | None) -> Parsed:
    """Parse ``text`` into a JSON object, strictly if possible, else tolerantly.

    >>> parse_json_object('\\ufeff{"a": 1}').path
    'tolerant'
    """
    if text is None or not text.strip():
        raise ParseError("the answer is empty")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return Parsed(_tolerant(text), "tolerant")
    return Parsed(_require_object(value), "strict")


def _require_object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        kind = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
        raise ParseError(f"the answer must be one JSON object, but its top level is {kind}")
    return value


def _tolerant(text: str) -> dict[str, Any]:
    cleaned = _unfence(text.lstrip(BOM).strip())
    try:
        return _require_object(json.loads(cleaned))
    except json.JSONDecodeError:
        pass
    first_error: str | None = None
    for candidate in _object_candidates(cleaned):
        try:
            return _require_object(_loads_forgiving_commas(candidate))
        except json.JSONDecodeError as exc:
            first_error = first_error or f"not valid JSON: {exc}"
    raise ParseError(first_error or _no_object_message(cleaned))


def _unfence(text: str) -> str:
    """The body of the first Markdown code fence, or ``text`` unchanged when there is none."""
    match = _FENCE.search(text)
    return match.group(1).strip() if match else text


def _loads_forgiving_commas(candidate: str) -> object:
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        return json.loads(_drop_trailing_commas(candidate))


def _no_object_message(text: str) -> str:
    if "{" in text:
        return "the JSON object is never closed (the answer looks cut off)"
    return "no JSON object found in the answer"


def _object_candidates(text: str) -> Iterator[str]:
    """Every balanced ``{...}`` span, tried from each ``{`` in order (string-aware)."""
    start = text.find("{")
    while start != -1:
        end = _matching_brace(text, start)
        if end is not None:
            yield text[start:end + 1]
        start = text.find("{", start + 1)


def _matching_brace(text: str, start: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``start``, skipping braces inside strings."""
    depth = 0
    for index, char in _outside_strings(text, start):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    return None


def _drop_trailing_commas(text: str) -> str:
    """Remove commas (outside strings) that are followed only by whitespace and ``}``/``]``."""
    dropped = {index for index, char in _outside_strings(text)
               if char == "," and _CLOSER_AHEAD.match(text, index + 1)}
    return "".join(char for index, char in enumerate(text) if index not in dropped)


def _outside_strings(text: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """``(index, char)`` for every character from ``start`` that is not inside a JSON string."""
    in_string = escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if not in_string:
            in_string = char == '"'
            if not in_string:
                yield index, char
        elif escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            in_string = char != '"'
