"""An LLM answer -> the JSON objects in it, each with the name of every repair it needed.

Strict ``json.loads`` first (the ``strict`` path). Otherwise the tolerant pass (``tolerant``)
removes what chat models wrap around an answer, then reads every top-level object left, each
through :func:`triage.extraction.repairs.repair_object`. Which object is the answer is not
decided here: :func:`triage.extraction.choose.choose` picks it with the schema. Nothing is ever
completed: an object that does not close is a :class:`TruncatedError`, and text without an
object is a :class:`ParseError`, never an empty object.

>>> parse_answer('{"a": 1}')
ParsedAnswer(candidates=(Candidate(value={'a': 1}, repairs=()),), path='strict', repairs=())
>>> answer = parse_answer('<think>maybe {"a": 0}</think> Sure! ```json\\n{"a": [1, 2,],}\\n``` Hope it helps.')
>>> answer.candidates
(Candidate(value={'a': [1, 2]}, repairs=('fence', 'prose', 'think_block', 'trailing_comma')),)
>>> parse_answer('[1, 2]')
Traceback (most recent call last):
...
triage.extraction.parse.ParseError: the answer must be one JSON object, but its top level is an array

The repairs named here, for the answer as a whole (those inside one object are listed in
:mod:`triage.extraction.repairs`; ``last_of_N`` is added by the chooser):

``bom``              a byte-order mark before the answer
``think_block``      ``<think>``, ``<thinking>`` or ``<reasoning>`` blocks removed; an unclosed one
                     up to the last object; everything before a lone closing tag
``fence``            Markdown code fences removed (any language tag: ``json``, ``jsonc``, none)
``prose``            text outside the objects ignored
``unwrapped_array``  ``[{...}]``: the one object taken out of its array
``sanitised``        NUL removed or a lone surrogate replaced in the answer text
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from triage.extraction.repairs import (
    MAX_NESTING_DEPTH,
    SANITISED,
    BrokenObject,
    LimitError,
    Loaded,
    load_json,
    looks_like_object,
    read_leniently,
    repair_object,
    structure,
    too_deep,
)
from triage.text import repair_text

BOM = "\ufeff"
TRUNCATED_FINISH_REASON = "length"

BOM_REPAIR = "bom"
THINK_BLOCK = "think_block"
FENCE = "fence"
PROSE = "prose"
UNWRAPPED_ARRAY = "unwrapped_array"
#: Every repair name this module records for an answer as a whole.
ANSWER_REPAIRS = frozenset((BOM_REPAIR, THINK_BLOCK, FENCE, PROSE, UNWRAPPED_ARRAY, SANITISED))

ParsePath = Literal["strict", "tolerant"]

_REASONING_TAG = re.compile(r"</?(?:think|thinking|reasoning)\s*>", re.IGNORECASE)
_FENCE_MARK = re.compile(r"```[ \t]*[\w+.-]*")
_OPEN_BRACE = re.compile(r"\{")
_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number",
                    bool: "a boolean", type(None): "null"}
NO_OBJECT = "no JSON object found in the answer"
CUT_OFF = "the JSON object is never closed (the answer looks cut off)"


class ParseError(ValueError):
    """The answer holds no usable JSON object; the message says what is wrong.

    >>> str(ParseError("no JSON object found in the answer"))
    'no JSON object found in the answer'
    """


class TruncatedError(ParseError):
    """The answer stops inside its JSON object: the token budget ran out, ask again with more."""


@dataclass(frozen=True)
class Candidate:
    """One top-level JSON object of an answer and every repair it needed (answer-level ones
    included), sorted."""

    value: dict[str, Any]
    repairs: tuple[str, ...]


@dataclass(frozen=True)
class ParsedAnswer:
    """Every object an answer holds, in order (at least one), the path that read them, and the
    answer-level repairs (already part of each candidate's ``repairs``)."""

    candidates: tuple[Candidate, ...]
    path: ParsePath
    repairs: tuple[str, ...]


@dataclass(frozen=True)
class Parsed:
    """An answer's last object and the path that read it (see :func:`parse_json_object`).

    >>> Parsed({"a": 1}, "strict").value
    {'a': 1}
    """

    value: dict[str, Any]
    path: ParsePath


@dataclass(frozen=True)
class Span:
    """Where a top-level ``{...}`` is in a text: ``end`` is exclusive, None when it never closes."""

    start: int
    end: int | None


@dataclass(frozen=True)
class Cleaned:
    """An answer's text with what surrounds the JSON removed, and the repairs that took.

    ``strict`` is the value when the text was strict JSON as it came (then nothing was removed).
    """

    text: str
    repairs: tuple[str, ...]
    strict: Loaded | None


def is_truncated(finish_reason: str | None) -> bool:
    """True when the API stopped because the token budget ran out.

    >>> is_truncated("length"), is_truncated("stop")
    (True, False)
    """
    return finish_reason == TRUNCATED_FINISH_REASON


def parse_answer(text: str | None) -> ParsedAnswer:
    """Every top-level JSON object in ``text`` as a :class:`Candidate`.

    Raises :class:`TruncatedError` when the last object never closes, and :class:`ParseError`
    when there is no readable object (no other exception, whatever the text).

    >>> [c.value for c in parse_answer('{"a": 1}\\nCorrection: {"a": 2}').candidates]
    [{'a': 1}, {'a': 2}]
    >>> parse_answer('{"problem_type": "device_fa')
    Traceback (most recent call last):
    ...
    triage.extraction.parse.TruncatedError: the JSON object is never closed (the answer looks cut off)
    """
    cleaned = clean_answer(text)
    if cleaned.strict is not None:
        return _whole(cleaned.strict, cleaned.repairs, "strict")
    whole = _read_whole(cleaned.text)
    if whole is not None:
        return _whole(whole, cleaned.repairs, "tolerant")
    spans = object_spans(cleaned.text)
    if not spans:
        raise ParseError(_no_object_message(cleaned.text))
    if spans[-1].end is None:
        raise TruncatedError(CUT_OFF)
    answer_repairs = [*cleaned.repairs, *[PROSE] * has_prose(cleaned.text, spans)]
    read = [repair_object(cleaned.text[span.start:span.end]) for span in spans]
    candidates = tuple(Candidate(result.value, _sorted(answer_repairs, result.repairs))
                       for result in read if not isinstance(result, BrokenObject))
    if not candidates:
        broken = [result for result in read if isinstance(result, BrokenObject)]
        raise ParseError(broken[-1].error)
    return ParsedAnswer(candidates, "tolerant", _sorted(answer_repairs))


def parse_json_object(text: str | None) -> Parsed:
    """The last object of ``text`` (see :func:`parse_answer`), without its repairs.

    >>> parse_json_object('\\ufeff{"a": 1}')
    Parsed(value={'a': 1}, path='tolerant')
    """
    answer = parse_answer(text)
    return Parsed(answer.candidates[-1].value, answer.path)


def clean_answer(text: str | None) -> Cleaned:
    """``text`` made storable (:func:`triage.text.repair_text`), then, unless it is strict JSON,
    without its byte-order mark, reasoning blocks and code fences. Raises :class:`ParseError` for
    an empty answer and :class:`TruncatedError` for one that stops inside a reasoning block.

    >>> clean_answer("```jsonc\\n{}\\n```")
    Cleaned(text='\\n{}\\n', repairs=('fence',), strict=None)
    """
    if text is None or not text.strip():
        raise ParseError("the answer is empty")
    stored = repair_text(text)
    repairs = [SANITISED] if stored.repaired else []
    strict = _load_strict(stored.text)
    if strict is not None:
        return Cleaned(stored.text, tuple(repairs), strict)
    body = stored.text.lstrip()
    if body.startswith(BOM):
        body = body.lstrip(BOM)
        repairs.append(BOM_REPAIR)
    without_reasoning = _drop_reasoning(body)
    if without_reasoning != body:
        repairs.append(THINK_BLOCK)
    without_fences = _FENCE_MARK.sub("", without_reasoning)
    if without_fences != without_reasoning:
        repairs.append(FENCE)
    return Cleaned(without_fences, tuple(sorted(repairs)), None)


def object_spans(text: str) -> list[Span]:
    """The top-level ``{...}`` spans of ``text`` in order, in one linear pass.

    Braces in prose (``{like this}``, or a ``{`` that never closes and is followed by no key) are
    not objects, but objects inside them are (``{{"a": 1}}``); an object that never closes is the
    last span, with ``end=None``; a region nested too deep is one span (it will not parse).
    Quotes count only inside braces, so an apostrophe in the prose around an answer changes nothing.

    >>> object_spans('a {b} "c" {"d": "}"} {"e": 1, "f": [')
    [Span(start=10, end=20), Span(start=21, end=None)]
    """
    closes, deep_regions = _brace_pairs(text)
    last_visible = len(text.rstrip()) - 1
    spans: list[Span] = []
    position = 0
    for start in _opening_braces(text):
        if start < position:
            continue
        end = closes.get(start)
        if end is not None:
            if start in deep_regions or looks_like_object(text, start) or not text[start + 1:end].strip():
                spans.append(Span(start, end + 1))
                position = end + 1
        elif looks_like_object(text, start) or start == last_visible:
            spans.append(Span(start, None))
            break
    return spans


def has_prose(text: str, spans: list[Span]) -> bool:
    """True when ``text`` holds anything but whitespace outside ``spans``.

    >>> has_prose(' {"a": 1} ', [Span(1, 9)]), has_prose('ok {"a": 1}', [Span(3, 11)])
    (False, True)
    """
    position = 0
    for span in spans:
        if text[position:span.start].strip():
            return True
        position = len(text) if span.end is None else span.end
    return bool(text[position:].strip())


def _whole(loaded: Loaded, repairs: tuple[str, ...], path: ParsePath) -> ParsedAnswer:
    """The answer when it is one JSON value as a whole: an object, or one object in an array."""
    value, answer_repairs = loaded.value, list(repairs)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]
        answer_repairs.append(UNWRAPPED_ARRAY)
    if not isinstance(value, dict):
        kind = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
        raise ParseError(f"the answer must be one JSON object, but its top level is {kind}")
    candidate = Candidate(value, _sorted(answer_repairs, loaded.repairs))
    return ParsedAnswer((candidate,), path, _sorted(answer_repairs))


def _load_strict(text: str) -> Loaded | None:
    """``text`` as strict JSON, or None when it is not (too deep to try counts as not)."""
    if too_deep(text):
        return None
    try:
        return load_json(text)
    except json.JSONDecodeError:
        return None
    except LimitError as exc:
        raise ParseError(str(exc)) from exc


def _read_whole(text: str) -> Loaded | None:
    """The whole cleaned text as one JSON value, strictly or with the named repairs, else None."""
    body = text.strip()
    if not body or too_deep(body):
        return None
    try:
        return read_leniently(body)
    except json.JSONDecodeError:
        return None
    except LimitError as exc:
        raise ParseError(str(exc)) from exc


def _drop_reasoning(text: str) -> str:
    """``text`` without reasoning blocks (see the module's ``think_block``), in one pass over the tags.

    A block ends at the first closing tag after its opening one; a closing tag outside any block
    means everything before it was reasoning; an unclosed block runs up to the last object.
    """
    kept: list[str] = []
    position = 0
    block: re.Match[str] | None = None
    for tag in _REASONING_TAG.finditer(text):
        closing = tag.group().startswith("</")
        if block is None and closing:
            kept, position = [], tag.end()
        elif block is None:
            kept.append(text[position:tag.start()])
            block = tag
        elif closing:
            block, position = None, tag.end()
    if block is None:
        return "".join([*kept, text[position:]])
    rest = text[block.end():]
    spans = object_spans(rest)
    if not spans:
        raise TruncatedError("the answer ends inside an unclosed reasoning block (it looks cut off)")
    return "".join([*kept, rest[spans[-1].start:]])


def _brace_pairs(text: str) -> tuple[dict[int, int], set[int]]:
    """Each ``{`` index -> the index of its ``}``, and the outermost ``{`` of every region nested
    deeper than :data:`MAX_NESTING_DEPTH`. Strings are skipped inside braces only."""
    pairs: dict[int, int] = {}
    deep_regions: set[int] = set()
    open_at: list[int] = []
    position = text.find("{")
    while position != -1:
        for index, char in structure(text, position):
            if char == "{":
                open_at.append(index)
                if len(open_at) > MAX_NESTING_DEPTH:
                    deep_regions.add(open_at[0])
            elif char == "}" and open_at:
                pairs[open_at.pop()] = index
                if not open_at:
                    position = index + 1
                    break
        else:
            return pairs, deep_regions
        position = text.find("{", position)
    return pairs, deep_regions


def _opening_braces(text: str) -> list[int]:
    return [match.start() for match in _OPEN_BRACE.finditer(text)]


def _no_object_message(text: str) -> str:
    if too_deep(text):
        return f"the answer is nested deeper than {MAX_NESTING_DEPTH} levels"
    return NO_OBJECT


def _sorted(*groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(sorted({name for group in groups for name in group}))
