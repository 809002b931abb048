"""Every regular expression triage ships scans in time linear in its text: a new quadratic pattern fails here.

The patterns are found, not listed: every compiled pattern (``re`` or ``regex``) that a module of the
``triage`` package holds at import, in a module constant, a table of them (a dict, list or tuple), a
class or a module-level object of ours. So that none hides in a function, the package's source may not
call ``re.search``/``re.sub``/... with a pattern string, nor compile one inside a function, but for the
few functions :data:`COMPILED_IN_FUNCTIONS` names with the reason.

Each pattern is timed on the largest text it can receive (:data:`LARGEST`: a webhook body at its
256 KiB cap, unless the pattern's module cuts its text shorter first), built to hurt it: runs of its
own literal characters and words, blanks and line breaks, digits, invisible characters and combining
marks, and the look-alike marker brackets (:func:`hostile_units`). The texts: each of the three units
that cost it most on a short text, repeated to the full length, and all the units in one text. For
each, the time to scan it (``finditer`` to the end, thread CPU time) at a quarter of the length and at
the full length, best of 3: the full-length time is under :data:`FULL_SIZE_SECONDS` and at most
:data:`MAX_RATIO` times the quarter's (times below :data:`TIMER_FLOOR_SECONDS` count as that floor: a
scan that short says nothing about its growth). Shorter lengths are tried first, so a quadratic
pattern is caught long before its full-length scan would take minutes.
"""

from __future__ import annotations

import ast
import gc
import importlib
import pkgutil
import re
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import regex

import triage
from triage.extraction.rules_keywords import MAX_TEXT_CHARS
from triage.extraction.untrusted import CLOSING, OPENING
from triage.settings import WebhookSettings

PATTERN_TYPES = (re.Pattern, type(regex.compile("")))
#: The largest text any shipped pattern receives: a webhook body at its cap (one character a byte at best).
WEBHOOK_CAP = WebhookSettings().max_body_bytes
#: Modules whose patterns only ever read a text cut shorter first, and that length.
LARGEST = {"triage.extraction.rules": MAX_TEXT_CHARS}  # rules.normalize cuts every text to MAX_TEXT_CHARS
FULL_SIZE_SECONDS = 0.5
MAX_RATIO = 8.0
TIMER_FLOOR_SECONDS = 0.005
BEST_OF = 3
#: How many of the units that cost a pattern most are each also tried alone at full length.
WORST_UNITS = 3
#: The lengths tried, as fractions of the full length: each is 4 times the one before.
LADDER = (64, 16, 4, 1)
#: Functions that may compile a pattern, and why what they compile is covered or needs no budget.
COMPILED_IN_FUNCTIONS = {
    ("triage/settings.py", "_patterns_compile"): "checks that an operator's configured patterns compile",
    ("triage/extraction/injection.py", "compile_patterns"): "the shipped set is its module constant SHIPPED",
    ("triage/extraction/rules.py", "_compile_cues"): "called at import: its patterns are the module's cue tables",
    ("triage/delivery/note.py", "already_posted"): "an escaped literal and a one-character lookahead",
}
#: The functions of ``re`` and ``regex`` that take a pattern string (each compiles it where it is called).
STRING_PATTERN_CALLS = frozenset({"search", "match", "fullmatch", "sub", "subn", "split", "findall", "finditer",
                                  "compile"})
#: What every pattern meets besides its own characters: blanks, line breaks, letters, digits with separators,
#: a zero-width space, a combining mark, an ideographic space and full stop, JSON's own punctuation.
UNIVERSAL_UNITS = (" ", "\n", "\t", " \n", "a", "a ", "a\n", "0", "0 ", "0-", "0.", "\u200b", "\u0301", "\u3000",
                   "\u3002", '"', "{", "[", ":", ",", "\\")
MAX_OWN_CHARACTERS = 24
MAX_OWN_WORDS = 12


# ---- finding every shipped pattern ------------------------------------------------------------------------

def _modules() -> Iterator[types.ModuleType]:
    for info in pkgutil.walk_packages(triage.__path__, "triage."):
        if not info.name.endswith("__main__"):  # running it would start the command line
            yield importlib.import_module(info.name)


def _ours(value: object) -> bool:
    module = value.__module__ if isinstance(value, type) else type(value).__module__
    return module == "triage" or module.startswith("triage.")


def _patterns_in(value: object, home: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Compiled patterns in ``value``: itself, in its items (dict, list, tuple, set), or the attributes of a
    class or an object of ours, a few levels down."""
    if isinstance(value, PATTERN_TYPES):
        yield home, value
        return
    if depth > 3 or isinstance(value, types.ModuleType | types.FunctionType | types.BuiltinFunctionType):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _patterns_in(item, f"{home}[{key!r}]", depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield from _patterns_in(item, f"{home}[{index}]", depth + 1)
    elif _ours(value) and hasattr(value, "__dict__"):
        for name, item in vars(value).items():
            yield from _patterns_in(item, f"{home}.{name}", depth + 1)


@dataclass(frozen=True)
class Shipped:
    home: str
    module: str
    pattern: Any

    @property
    def largest(self) -> int:
        return LARGEST.get(self.module, WEBHOOK_CAP)


def shipped_patterns() -> list[Shipped]:
    """Every compiled pattern the package holds, each once, under the first name it was found by."""
    found: dict[int, Shipped] = {}
    for module in _modules():
        for name, value in vars(module).items():
            for home, pattern in _patterns_in(value, f"{module.__name__}.{name}"):
                found.setdefault(id(pattern), Shipped(home, module.__name__, pattern))
    return list(found.values())


SHIPPED = shipped_patterns()


def test_the_patterns_are_found_where_they_live() -> None:
    homes = {shipped.home for shipped in SHIPPED}
    assert "triage.extraction.injection.SHIPPED['marker']" in homes
    assert "triage.extraction.redact._PHONE" in homes and "triage.extraction.untrusted._STRIPPED" in homes
    assert "triage.extraction.rules._PROBLEM_PATTERNS['complaint'][0]" in homes
    assert "triage.extraction.repairs._NUMBER" in homes and "triage.intake.platforms.htmltext._SPACES" in homes
    assert len(SHIPPED) > 400


def _calls(tree: ast.AST) -> Iterator[tuple[ast.Call, list[str]]]:
    """Every ``re.X(...)`` / ``regex.X(...)`` call, with the names of the functions it sits in."""

    def visit(node: ast.AST, inside: list[str]) -> Iterator[tuple[ast.Call, list[str]]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(child, [*inside, getattr(child, "name", "<lambda>")])
                continue
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                    and isinstance(child.func.value, ast.Name) and child.func.value.id in ("re", "regex")
                    and child.func.attr in STRING_PATTERN_CALLS):
                yield child, inside
            yield from visit(child, inside)

    yield from visit(tree, [])


def test_no_pattern_is_made_where_this_test_cannot_find_it() -> None:
    """A pattern string passed to ``re.sub`` and the like, or compiled inside a function, is invisible to the
    budget below: the package keeps its patterns compiled in module constants."""
    root = Path(triage.__file__).parent
    problems = []
    for path in sorted(root.rglob("*.py")):
        relative = f"triage/{path.relative_to(root).as_posix()}"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("re", "regex"):
                imported = {alias.name for alias in node.names} & STRING_PATTERN_CALLS
                if imported:
                    problems.append(f"{relative}:{node.lineno}: imports {sorted(imported)} from {node.module}")
        for call, inside in _calls(tree):
            name = f"{call.func.value.id}.{call.func.attr}"  # type: ignore[attr-defined]
            if call.func.attr != "compile":  # type: ignore[attr-defined]
                problems.append(f"{relative}:{call.lineno}: {name}() with a pattern string: compile it in a "
                                "module constant and call its method")
            elif inside and (relative, inside[-1]) not in COMPILED_IN_FUNCTIONS:
                problems.append(f"{relative}:{call.lineno}: {name}() inside {'.'.join(inside)}(): compile it in a "
                                "module constant (or name the function in COMPILED_IN_FUNCTIONS, saying why)")
    assert problems == []


# ---- texts built to hurt a pattern ------------------------------------------------------------------------

_ESCAPED = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "s": " ", "d": "1", "w": "a"}
_META = frozenset("^$.|?*+()[]{}")
#: A group's opening that is syntax, not text: ``(?:``, ``(?<!``, ``(?P<name>``, ``(?i:``, ...
_GROUP_OPENING = re.compile(r"\(\?(?:P<\w+>|P=\w+\)|<[=!]|[:=!>]|[a-zA-Z-]+[:)])")


def literal_runs(source: str) -> list[str]:
    """The runs of literal characters in a pattern's source, each class by its first member.

    >>> literal_runs(r"(?<!<)<<+\\s*(?:end\\s+)?conversation\\b")
    ['<', '<<', ' ', 'end ', 'conversation']
    """
    runs, current, index = [], "", 0
    while index < len(source):
        char = source[index]
        if char == "\\" and index + 1 < len(source):
            following = source[index + 1]
            if following in _ESCAPED:
                current += _ESCAPED[following]
            elif not following.isalnum():
                current += following
            elif current:
                runs.append(current)
                current = ""
            index += 2
            continue
        if char == "[":
            end = source.find("]", index + 2)
            member = source[index + 1:index + 2]
            if current:
                runs.append(current)
                current = ""
            if member and member not in "^\\":
                runs.append(member)
            index = end + 1 if end > 0 else index + 1
            continue
        opening = _GROUP_OPENING.match(source, index)
        if opening or char in _META:
            if current:
                runs.append(current)
                current = ""
            index = opening.end() if opening else index + 1
            continue
        current += char
        index += 1
    if current:
        runs.append(current)
    return [run for run in runs if run]


def hostile_units(pattern: Any) -> list[str]:
    """What a pattern's hostile texts repeat: :data:`UNIVERSAL_UNITS`, the look-alike marker brackets, and the
    pattern's own literal characters and words (alone and followed by a blank)."""
    characters: list[str] = []
    words: list[str] = []
    for run in literal_runs(pattern.pattern):
        characters += [char for char in run if char not in characters]
        if len(run) > 1 and run.strip() and run not in words:
            words.append(run)
    own_words = words[:MAX_OWN_WORDS]
    units = [*UNIVERSAL_UNITS, *OPENING, *CLOSING, *characters[:MAX_OWN_CHARACTERS], *own_words,
             *(word + " " for word in own_words)]
    return list(dict.fromkeys(units))


def repeated(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def mixed(units: list[str], length: int) -> str:
    """Every unit repeated to an equal share of ``length``, one after the other."""
    share = max(length // len(units), 1)
    return "".join(repeated(unit, share) for unit in units)


# ---- the budget -------------------------------------------------------------------------------------------

def scan_seconds(pattern: Any, text: str) -> float:
    """Thread CPU time to run ``pattern`` over all of ``text`` (every match, as ``sub`` or ``finditer`` would)."""
    started = time.thread_time()
    for _ in pattern.finditer(text):
        pass
    return time.thread_time() - started


def best(pattern: Any, text: str) -> float:
    return min(scan_seconds(pattern, text) for _ in range(BEST_OF))


def _growth(shorter: float, longer: float) -> float:
    return max(longer, TIMER_FLOOR_SECONDS) / max(shorter, TIMER_FLOOR_SECONDS)


def over_budget(pattern: Any, build: Callable[[int], str], largest: int) -> str | None:
    """Why ``pattern`` fails the budget on the texts ``build(length)`` makes, or None. Each length of
    :data:`LADDER` is scanned once; the last two best of :data:`BEST_OF` when the single scans say it matters."""
    lengths = [largest // fraction for fraction in LADDER]
    times: list[float] = []
    for length in lengths:
        seconds = scan_seconds(pattern, build(length))
        if times and (seconds > FULL_SIZE_SECONDS or _growth(times[-1], seconds) > MAX_RATIO):
            seconds = best(pattern, build(length))
            times[-1] = best(pattern, build(lengths[len(times) - 1]))
        if seconds > FULL_SIZE_SECONDS:
            return f"{seconds:.3f} s on {length} characters (budget {FULL_SIZE_SECONDS} s)"
        if times and _growth(times[-1], seconds) > MAX_RATIO:
            return (f"{times[-1] * 1000:.1f} ms on {lengths[len(times) - 1]} characters, {seconds * 1000:.1f} ms on "
                    f"{length}: {_growth(times[-1], seconds):.1f} times as long for 4 times the text")
        times.append(seconds)
    return None


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda shipped: shipped.home)
def test_every_pattern_scans_its_largest_hostile_text_in_linear_time(shipped: Shipped) -> None:
    pattern, largest = shipped.pattern, shipped.largest
    units = hostile_units(pattern)
    collecting = gc.isenabled()
    gc.disable()  # a collection inside a timed scan is noise, not the pattern's cost
    try:
        screen = largest // LADDER[0]
        worst = sorted(units, key=lambda unit: scan_seconds(pattern, repeated(unit, screen)), reverse=True)
        texts = {f"{unit!r} repeated": (lambda length, unit=unit: repeated(unit, length))
                 for unit in worst[:WORST_UNITS]}
        texts[f"all {len(units)} units in turn"] = lambda length: mixed(units, length)
        problems = {name: why for name, build in texts.items() if (why := over_budget(pattern, build, largest))}
    finally:
        if collecting:
            gc.enable()
    assert problems == {}, f"{shipped.home} = {pattern.pattern[:120]!r}"


def test_the_budget_catches_a_quadratic_pattern() -> None:
    """The issue's own example: the marker pattern before it started its runs with a lookbehind."""
    before = re.compile(r"<<+\s*(?:end\s+)?conversation\b", re.IGNORECASE)
    why = over_budget(before, lambda length: repeated("<", length), WEBHOOK_CAP)
    assert why is not None and ("times as long" in why or "budget" in why)
    assert over_budget(re.compile(r"(?<!<)<<+\s*(?:end\s+)?conversation\b"),
                       lambda length: repeated("<", length), WEBHOOK_CAP) is None
