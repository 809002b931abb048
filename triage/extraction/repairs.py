"""One JSON object as a chat model wrote it -> a parsed object and the name of every repair.

:func:`repair_object` reads one balanced ``{...}`` span. Strict ``json.loads`` first; when that
fails, a lenient re-reader rewrites the span as strict JSON and names each fix it made; what it
cannot fix, `json-repair <https://pypi.org/project/json-repair/>`_ tries last, recorded as
``json_repair``. Every result goes through the same guarded loader (:func:`load_json`), so a
value that comes out is plain, finite, bounded JSON with every string storable (see
:mod:`triage.text`).

>>> repair_object("{'problem_type': 'consult', 'device_model': None,}")  # doctest: +NORMALIZE_WHITESPACE
RepairedObject(value={'problem_type': 'consult', 'device_model': None},
               repairs=('python_literals', 'single_quotes', 'trailing_comma'))
>>> repair_object('{"a": 1 "b": 2}').repairs
('missing_comma',)
>>> repair_object("{not json}")
BrokenObject(error='not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)')

The repairs named here (the answer-level ones are in :mod:`triage.extraction.parse`):

``comments``         ``//``, ``#`` and ``/* */`` comments dropped
``control_chars``    a literal newline, tab or other control character inside a string escaped
``duplicate_key``    a key given twice in one object: the later value kept, as ``json.loads`` does
``invalid_escape``   a backslash that starts no JSON escape (``\\A``, ``\\'``) kept as text
``json_repair``      the json-repair library's heuristics (unescaped quotes, unquoted values, ...)
``missing_comma``    a comma inserted between two members or items
``python_literals``  ``None``, ``True``, ``False`` read as ``null``, ``true``, ``false``
``sanitised``        NUL removed or a lone surrogate replaced in a key or string (``\\u0000``, ``\\ud800``)
``single_quotes``    ``'...'`` strings (Python ``repr``) read as JSON strings
``smart_quotes``     typographic double or single quotes (U+201C/U+201D, U+2018/U+2019) used as
                     string delimiters
``trailing_comma``   a comma before ``}`` or ``]`` dropped
``unquoted_keys``    ``{key: ...}`` read as ``{"key": ...}``
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from json_repair import repair_json

from triage.text import repair_strings

COMMENTS = "comments"
CONTROL_CHARS = "control_chars"
DUPLICATE_KEY = "duplicate_key"
INVALID_ESCAPE = "invalid_escape"
JSON_REPAIR = "json_repair"
MISSING_COMMA = "missing_comma"
PYTHON_LITERALS = "python_literals"
SANITISED = "sanitised"
SINGLE_QUOTES = "single_quotes"
SMART_QUOTES = "smart_quotes"
TRAILING_COMMA = "trailing_comma"
UNQUOTED_KEYS = "unquoted_keys"
#: Every repair name this module records.
OBJECT_REPAIRS = frozenset((COMMENTS, CONTROL_CHARS, DUPLICATE_KEY, INVALID_ESCAPE, JSON_REPAIR, MISSING_COMMA,
                            PYTHON_LITERALS, SANITISED, SINGLE_QUOTES, SMART_QUOTES, TRAILING_COMMA, UNQUOTED_KEYS))

#: Deeper nesting is refused before anything recursive reads it (a ticket needs 2 levels).
MAX_NESTING_DEPTH = 64
#: Longer integers are refused (Python refuses above 4,300 digits, with an exception of its own).
MAX_INTEGER_DIGITS = 100
#: json-repair's heuristics are not linear in the worst case: longer spans are not offered to it.
MAX_HEURISTIC_REPAIR_CHARS = 65_536
#: How far after a ``{`` its first key is looked for (comments may come first); a bound keeps
#: text with thousands of ``{/*`` linear.
_KEY_LOOKAHEAD_CHARS = 1024

_STRUCTURE = re.compile(r'["\\{}\[\]]')
_BLANK = re.compile(r"[ \t\r\n]*")
_WORD = re.compile(r"[^\W\d][\w$-]*")
#: A number, from its first character only (the lookbehind): scanning a long run of digits then costs its length.
_NUMBER = re.compile(r"(?<![\w.])-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])")
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
#: What may follow a string's closing quote; blanks from their first one only (the lookbehind), as for _NUMBER.
_ENDS_STRING = re.compile(r"(?<![ \t\r\n])[ \t\r\n]*(?:[,:}\]]|\Z)")
_JSON_ESCAPES = frozenset('"\\/bfnrt')
_CONTROL_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}
#: Opening quote -> the characters that may close it. Only ``"`` closes at its first occurrence;
#: the others close only where a string can end (before ``,``, ``:``, ``}``, ``]`` or the end),
#: so an apostrophe inside ``'can't'`` stays text.
_LEFT_DOUBLE, _RIGHT_DOUBLE, _LEFT_SINGLE, _RIGHT_SINGLE = "\u201c", "\u201d", "\u2018", "\u2019"
_QUOTES = {'"': '"', "'": "'",
           _LEFT_DOUBLE: _RIGHT_DOUBLE + _LEFT_DOUBLE + '"', _RIGHT_DOUBLE: _RIGHT_DOUBLE + '"',
           _LEFT_SINGLE: _RIGHT_SINGLE + _LEFT_SINGLE + "'", _RIGHT_SINGLE: _RIGHT_SINGLE + "'"}
_PYTHON_LITERALS = {"None": "null", "True": "true", "False": "false"}
_JSON_LITERALS = frozenset(("null", "true", "false"))


class LimitError(ValueError):
    """JSON past what is kept: NaN, 1e999, a 5,000-digit integer, nesting deeper than the limit."""


@dataclass(frozen=True)
class RepairedObject:
    """A JSON object read from a span, and the repairs it needed, sorted."""

    value: dict[str, Any]
    repairs: tuple[str, ...]


@dataclass(frozen=True)
class BrokenObject:
    """A span no repair could read; ``error`` can be shown to the model."""

    error: str


def repair_object(span: str) -> RepairedObject | BrokenObject:
    """Read one ``{...}`` span: strictly, else through the named repairs, else json-repair.

    >>> repair_object('{"a": "line one\\nline two"}')
    RepairedObject(value={'a': 'line one\\nline two'}, repairs=('control_chars',))
    >>> repair_object('{"a": "\\\\u0000x", "a": 2}')
    RepairedObject(value={'a': 2}, repairs=('duplicate_key',))
    """
    if too_deep(span):
        return BrokenObject(f"the JSON object is nested deeper than {MAX_NESTING_DEPTH} levels")
    try:
        loaded = read_leniently(span)
    except LimitError as exc:
        return BrokenObject(str(exc))
    except json.JSONDecodeError as exc:
        guessed = _heuristic_repair(span)
        if guessed is None:
            return BrokenObject(f"not valid JSON: {exc}")
        loaded = guessed
    if not isinstance(loaded.value, dict):  # a span is one object, but only a check shows it to mypy
        return BrokenObject("not a JSON object")
    return RepairedObject(loaded.value, loaded.repairs)


def read_leniently(text: str) -> Loaded:
    """``text`` (one JSON value, not too deep) strictly, else through the named repairs.

    Raises the strict :class:`json.JSONDecodeError` when the repairs cannot read it either, and
    :class:`LimitError`.

    >>> read_leniently("[True, 'x',]")
    Loaded(value=[True, 'x'], repairs=('python_literals', 'single_quotes', 'trailing_comma'))
    """
    try:
        return load_json(text)
    except json.JSONDecodeError as strict_error:
        rewritten = normalise(text)
        if rewritten is None:
            raise
        try:
            loaded = load_json(rewritten.text)
        except json.JSONDecodeError:
            raise strict_error from None
    return Loaded(loaded.value, tuple(sorted({*rewritten.repairs, *loaded.repairs})))


def _heuristic_repair(span: str) -> Loaded | None:
    """json-repair's reading of ``span`` as an object, through the guarded loader; None when
    ``span`` is not offered to it (prose in braces, too long), when it fails, when it reads
    something else than an object, or when all it finds is ``{}`` (it never turns text without
    members into an empty object)."""
    if len(span) > MAX_HEURISTIC_REPAIR_CHARS or not looks_like_object(span):
        return None
    try:
        repaired = repair_json(span, skip_json_loads=True, ensure_ascii=False)
        loaded = load_json(repaired)
    except Exception:  # a third-party heuristic on hostile text: any failure just means "not repaired"
        return None
    if not isinstance(loaded.value, dict) or not loaded.value:
        return None
    return Loaded(loaded.value, tuple(sorted({JSON_REPAIR, *loaded.repairs})))


# --- the guarded loader ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Loaded:
    """A parsed JSON value and the repairs loading it needed (``duplicate_key``, ``sanitised``)."""

    value: Any
    repairs: tuple[str, ...]


def load_json(text: str) -> Loaded:
    """``json.loads`` with every value safe to keep: finite numbers of sane length, storable strings,
    duplicate keys noticed. Raises :class:`json.JSONDecodeError` or :class:`LimitError`.

    >>> load_json('{"n": 1.5, "s": "\\\\ud800"}')
    Loaded(value={'n': 1.5, 's': '\ufffd'}, repairs=('sanitised',))
    >>> load_json('[NaN]')
    Traceback (most recent call last):
    ...
    triage.extraction.repairs.LimitError: the answer holds NaN, which is not a JSON number
    """
    duplicates = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicates
        value = dict(items)
        duplicates = duplicates or len(value) != len(items)
        return value

    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_int=_integer, parse_float=_float,
                           parse_constant=_constant)
    except RecursionError as exc:  # a backstop: callers check too_deep() first
        raise LimitError(f"the JSON is nested deeper than {MAX_NESTING_DEPTH} levels") from exc
    stored = repair_strings(value)
    repairs = [DUPLICATE_KEY] * duplicates + [SANITISED] * stored.repaired
    return Loaded(stored.value, tuple(repairs))


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise LimitError(f"the answer holds an integer longer than {MAX_INTEGER_DIGITS} digits")
    return int(digits)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise LimitError(f"the answer holds {text[:20]}, which is out of range")
    return value


def _constant(name: str) -> float:
    raise LimitError(f"the answer holds {name}, which is not a JSON number")


# --- string-aware scanning ------------------------------------------------------------------------

def structure(text: str, start: int = 0) -> Iterator[tuple[int, str]]:
    r"""``(index, char)`` of every brace and bracket from ``start`` that is not inside a ``"`` string.

    >>> [char for _, char in structure('{"a": "}[\\\\", "b": [1, "\\"]"]}')]
    ['{', '[', ']', '}']
    """
    in_string = False
    escaped_index = -1
    for match in _STRUCTURE.finditer(text, start):
        index, char = match.start(), match.group()
        if index == escaped_index:
            continue
        if in_string:
            if char == "\\":
                escaped_index = index + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char != "\\":
            yield index, char


def matching_close(text: str, start: int) -> int | None:
    """Index of the ``}`` or ``]`` that closes the ``{`` or ``[`` at ``start`` (strings skipped), or None.

    >>> matching_close('x {"a": "}", "b": {}} y', 2), matching_close('[1, ["]"]]', 0)
    (20, 9)
    >>> matching_close('{"a": [', 0) is None
    True
    """
    opener = text[start]
    closer = _CLOSER[opener]
    depth = 0
    for index, char in structure(text, start):
        if char == opener:
            depth += 1
        elif char == closer:
            depth -= 1
            if depth == 0:
                return index
    return None


def too_deep(text: str) -> bool:
    """True when braces and brackets outside strings nest deeper than :data:`MAX_NESTING_DEPTH`
    (found without recursion, and as soon as it is so).

    >>> too_deep('{"a": [{"b": "[[["}]}'), too_deep("[" * 100_000)
    (False, True)
    """
    depth = 0
    for _, char in structure(text):
        if char in "{[":
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                return True
        else:
            depth = max(depth - 1, 0)
    return False


def looks_like_object(text: str, start: int = 0) -> bool:
    """True when the ``{`` at ``start`` is followed by a key (comments allowed before it, within
    :data:`_KEY_LOOKAHEAD_CHARS`): an object, not prose in braces. Only such spans are read as
    objects, so ``{like this}`` never becomes one.

    >>> looks_like_object('{"a": 1'), looks_like_object("{ // note\\n key: 1"), looks_like_object("{like this}")
    (True, True, False)
    """
    scan = Scanner(text[start:start + _KEY_LOOKAHEAD_CHARS], 1)
    scan.skip_blank()
    if scan.at_string():
        return True
    if scan.read_word() is None and scan.read_number() is None:
        return False
    scan.skip_blank()
    return scan.peek() == ":"


# --- the lenient re-reader ------------------------------------------------------------------------

@dataclass(frozen=True)
class Rewritten:
    """Strict JSON text equivalent to what was read, and the repairs that made it so."""

    text: str
    repairs: tuple[str, ...]


class UnreadableError(ValueError):
    """The text cannot be read as JSON, even leniently (:func:`normalise` returns None for it)."""


class Scanner:
    """Reads JSON-like tokens from ``text`` at ``pos``, noting in ``repairs`` what was not JSON."""

    def __init__(self, text: str, pos: int = 0) -> None:
        self.text = text
        self.pos = pos
        self.repairs: set[str] = set()

    def peek(self) -> str:
        """The character at ``pos`` ('' at the end)."""
        return self.text[self.pos:self.pos + 1]

    def skip_blank(self) -> None:
        """Skip whitespace and comments."""
        text = self.text
        while True:
            self.pos = _skip(_BLANK, text, self.pos)
            if text.startswith(("//", "#"), self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end == -1 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                self.pos = len(text) if end == -1 else end + 2
            else:
                return
            self.repairs.add(COMMENTS)

    def at_string(self) -> bool:
        return self.peek() in _QUOTES

    def read_string(self) -> str:
        """The string at ``pos`` (any quote kind) as a strict JSON string literal."""
        text, opener = self.text, self.text[self.pos]
        closers, standard = _QUOTES[opener], opener == '"'
        body: list[str] = []
        index = self.pos + 1
        while index < len(text):
            char = text[index]
            if char == "\\":
                index += self._escape(index, body)
                continue
            if char in closers and (standard or _ENDS_STRING.match(text, index + 1)):
                self.pos = index + 1
                if not standard:
                    self.repairs.add(SINGLE_QUOTES if opener == "'" else SMART_QUOTES)
                return '"' + "".join(body) + '"'
            if char < " ":
                body.append(_CONTROL_ESCAPES.get(char) or f"\\u{ord(char):04x}")
                self.repairs.add(CONTROL_CHARS)
            else:
                body.append('\\"' if char == '"' else char)
            index += 1
        raise UnreadableError("the string never ends")

    def _escape(self, index: int, body: list[str]) -> int:
        """Copy the escape at ``index`` into ``body``; how many characters it used."""
        following = self.text[index + 1:index + 2]
        if following in _JSON_ESCAPES:
            body.append("\\" + following)
            return 2
        if following == "u" and _HEX4.fullmatch(self.text, index + 2, index + 6):
            body.append(self.text[index:index + 6])
            return 6
        if not following:
            raise UnreadableError("the string never ends")
        self.repairs.add(INVALID_ESCAPE)
        if following == "'":
            body.append("'")
            return 2
        body.append("\\\\")
        return 1

    def read_word(self) -> str | None:
        """The bare word at ``pos`` (``None``, ``key``, ``问题``), or None when there is none."""
        match = _WORD.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def read_number(self) -> str | None:
        match = _NUMBER.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    match = pattern.match(text, pos)
    return match.end() if match else pos


def normalise(text: str) -> Rewritten | None:
    """``text`` (one JSON-like value) rewritten as strict JSON with the repairs named, or None when
    it is not readable (including when it does not end: nothing is ever completed).

    >>> rewritten = normalise("{a: 'x', // why\\n b: [1 2,],}")
    >>> rewritten.text
    '{"a":"x","b":[1,2]}'
    >>> rewritten.repairs
    ('comments', 'missing_comma', 'single_quotes', 'trailing_comma', 'unquoted_keys')
    >>> normalise('{"a": [1, 2') is None
    True
    """
    reader = _Rewriter(Scanner(text))
    try:
        return reader.run()
    except UnreadableError:
        return None


# Where the rewriter is: what it may read next.
_VALUE, _KEY, _KEY_OR_CLOSE, _VALUE_OR_CLOSE, _COLON, _AFTER, _END = range(7)
_CLOSER = {"{": "}", "[": "]"}


class _Rewriter:
    """A state machine over :class:`Scanner` tokens that writes strict JSON."""

    def __init__(self, scanner: Scanner) -> None:
        self.scan = scanner
        self.out: list[str] = []
        self.stack: list[str] = []
        self.expect = _VALUE
        self.pending_comma = False

    def run(self) -> Rewritten:
        scan = self.scan
        while True:
            scan.skip_blank()
            char = scan.peek()
            if not char:
                break
            if self.expect == _END:
                raise UnreadableError("more after the value")
            if char == ",":
                self._comma()
            elif char in "}]":
                self._close(char)
            elif char == ":":
                self._colon()
            else:
                self._token(char)
        if self.stack or self.expect != _END:
            raise UnreadableError("the value does not end")
        return Rewritten("".join(self.out), tuple(sorted(scan.repairs)))

    def _comma(self) -> None:
        if self.expect != _AFTER:
            raise UnreadableError("a comma out of place")
        self.scan.pos += 1
        self.pending_comma = True
        self.expect = _KEY if self.stack[-1] == "{" else _VALUE

    def _close(self, char: str) -> None:
        if not self.stack or _CLOSER[self.stack[-1]] != char:
            raise UnreadableError("a closer that closes nothing")
        if self.pending_comma:
            self.scan.repairs.add(TRAILING_COMMA)
            self.pending_comma = False
        elif self.expect not in (_KEY_OR_CLOSE, _VALUE_OR_CLOSE, _AFTER):
            raise UnreadableError("a member without a value")
        self.scan.pos += 1
        self.stack.pop()
        self.out.append(char)
        self._after_value()

    def _colon(self) -> None:
        if self.expect != _COLON:
            raise UnreadableError("a colon out of place")
        self.scan.pos += 1
        self.out.append(":")
        self.expect = _VALUE

    def _token(self, char: str) -> None:
        if self.expect == _AFTER:
            self.scan.repairs.add(MISSING_COMMA)
            self.pending_comma = True
            self.expect = _KEY if self.stack[-1] == "{" else _VALUE
        if self.expect in (_KEY, _KEY_OR_CLOSE):
            self._emit(self._key())
            self.expect = _COLON
        elif self.expect in (_VALUE, _VALUE_OR_CLOSE):
            self._value(char)
        else:
            raise UnreadableError("a value where a colon belongs")

    def _emit(self, token: str) -> None:
        if self.pending_comma:
            self.out.append(",")
            self.pending_comma = False
        self.out.append(token)

    def _key(self) -> str:
        scan = self.scan
        if scan.at_string():
            return scan.read_string()
        bare = scan.read_word() or scan.read_number()
        if bare is None:
            raise UnreadableError("no key")
        scan.repairs.add(UNQUOTED_KEYS)
        return json.dumps(bare, ensure_ascii=False)

    def _value(self, char: str) -> None:
        scan = self.scan
        if char in _CLOSER:
            if len(self.stack) >= MAX_NESTING_DEPTH:
                raise UnreadableError("nested too deep")
            scan.pos += 1
            self._emit(char)
            self.stack.append(char)
            self.expect = _KEY_OR_CLOSE if char == "{" else _VALUE_OR_CLOSE
            return
        if scan.at_string():
            self._emit(scan.read_string())
        elif (number := scan.read_number()) is not None:
            self._emit(number)
        else:
            self._emit(self._literal(scan.read_word()))
        self._after_value()

    def _literal(self, word: str | None) -> str:
        if word is not None and word in _JSON_LITERALS:
            return word
        if word is not None and word in _PYTHON_LITERALS:
            self.scan.repairs.add(PYTHON_LITERALS)
            return _PYTHON_LITERALS[word]
        raise UnreadableError("a bare word is not a value")

    def _after_value(self) -> None:
        self.expect = _AFTER if self.stack else _END
