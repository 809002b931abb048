"""How sure the model was of each routing value it wrote, from the answer's token log probabilities.

With ``extraction.logprobs = true`` the chat-completions request asks for ``logprobs`` and the answer
carries, for every token of the message content, the token and its natural-log probability
(``choices[0].logprobs.content[]``: ``token``, ``logprob``, ``bytes``, ``top_logprobs``; streamed answers
carry the same list chunk by chunk). For a routing field the probability of its value is

    P(field) = exp(sum of the logprobs of the tokens that overlap the value's text in the answer)

where the value's text is the JSON literal after ``"field":`` (for a string, its characters between the
quotes: a token that merges a quote with the first letters counts whole). This is the probability the
model gave to writing that value, token after token, given everything before it. The value located is the
one the result holds: in a single answer the last ``"field": value`` equal to the chosen value (the chooser
keeps the last valid object), in a batch answer the one inside the conversation's own item
(``"cN": {...}``). Tokens are lined up with the text by their UTF-8 bytes; when they do not add up to the
answer (a provider that reports something else), or a field's value cannot be found as written (a tolerant
repair such as single quotes), that field has no logprob confidence.

>>> tokens = [TokenLogprob(t, lp) for t, lp in [('{"', 0.0), ('p', 0.0), ('":', 0.0), (' "', 0.0),
...           ('consult', -0.1053605), ('"}', 0.0)]]
>>> value_confidence('{"p": "consult"}', tokens, {"p": "consult"}, ["p"])
{'p': 0.9}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from triage.extraction.repairs import matching_close

#: Decimal places a probability is rounded to (more says nothing).
PLACES = 6
_DECODER = json.JSONDecoder()
#: A JSON object member's key and the colon after it (the value starts at the match's end).
MEMBER_KEY = re.compile(r'"((?:[^"\\\n]|\\.)*)"\s*:\s*')


@dataclass(frozen=True)
class TokenLogprob:
    """One content token of an answer and its log probability; ``bytes`` its UTF-8 bytes when the API sent them."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None

    @property
    def size(self) -> int:
        """The token's length in UTF-8 bytes."""
        return len(self.bytes) if self.bytes is not None else len(self.token.encode("utf-8", "surrogatepass"))


def _byte_offsets(text: str, tokens: Sequence[TokenLogprob]) -> list[tuple[int, int]] | None:
    """Each token's ``[start, end)`` in the UTF-8 bytes of ``text``; None when the tokens are not ``text``."""
    spans, position = [], 0
    for token in tokens:
        spans.append((position, position + token.size))
        position += token.size
    return spans if position == len(text.encode("utf-8", "surrogatepass")) else None


def item_span(text: str, key: str) -> tuple[int, int] | None:
    """Where the batch item ``"key": {...}`` is in ``text`` (characters, the object's braces included).

    >>> item_span('{"c1": {"a": 1}, "c2": {"a": 2}}', "c2")
    (23, 31)
    """
    start = next((at for at in _keyed(text, key, 0, len(text)) if text.startswith("{", at)), None)
    if start is None:
        return None
    close = matching_close(text, start)
    return None if close is None else (start, close + 1)


def _keyed(text: str, name: str, lo: int, hi: int) -> Iterator[int]:
    """Where the value of each ``"name":`` member in ``text[lo:hi]`` starts."""
    for match in MEMBER_KEY.finditer(text, lo, hi):
        try:
            key = json.loads(f'"{match.group(1)}"')
        except json.JSONDecodeError:
            continue
        if key == name:
            yield match.end()


def value_span(text: str, name: str, value: object, within: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The characters of the last ``"name": value`` in ``text`` (inside ``within``) whose value equals
    ``value``: a string's characters between its quotes, any other literal whole.

    >>> value_span('{"a": "x", "a": "yz"}', "a", "yz"), value_span('{"a": 3}', "a", 3), value_span("{}", "a", 1)
    ((17, 19), (6, 7), None)
    """
    lo, hi = within or (0, len(text))
    found = None
    for start in _keyed(text, name, lo, hi):
        try:
            decoded, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if end <= hi and decoded == value and isinstance(decoded, bool) == isinstance(value, bool):
            found = (start + 1, end - 1) if isinstance(decoded, str) else (start, end)
    return found


def value_confidence(text: str, tokens: Sequence[TokenLogprob] | None, ticket: Mapping[str, Any],
                     fields: Collection[str], within: tuple[int, int] | None = None) -> dict[str, float] | None:
    """P(value) of each of ``fields`` the ``ticket`` holds, read from the answer ``text`` and its ``tokens``
    (inside ``within``, a batch item's span); None when there are no tokens or no field could be located."""
    if not tokens:
        return None
    offsets = _byte_offsets(text, tokens)
    if offsets is None:
        return None
    found: dict[str, float] = {}
    for name in sorted(fields):
        if name not in ticket:
            continue
        span = value_span(text, name, ticket[name], within)
        if span is None:
            continue
        first, last = (len(text[:at].encode("utf-8", "surrogatepass")) for at in span)
        last = max(last, first + 1)  # an empty string's value: the token holding its quotes
        total = sum(token.logprob for token, (start, end) in zip(tokens, offsets, strict=True)
                    if start < last and end > first)
        found[name] = round(math.exp(total), PLACES)
    return found or None
