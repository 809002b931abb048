"""Offline rules extractor: keywords and patterns (English and Chinese) instead of an LLM.

It is the fallback when no LLM is configured or the LLM fails, so it never raises on odd input
and always returns a ticket that the schema accepts. For the default schema it reads the four
fields from the customer's text; for any other schema it fills the fields it knows and gives
every other property a neutral, schema-valid value (see :func:`generic_value`).

The keyword tables are data in :mod:`triage.extraction.rules_keywords`: extend them rather than
the reader code here.

>>> reading = RulesReading.of(
...     "Want to ask how to set timing function, device model is Watch S1, no urgent demand.")
>>> reading.problem_type, reading.device_model, reading.urgent_level, reading.user_requirements
('consult', 'Watch S1', 'low', ['Want to ask how to set timing function'])
"""


from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from triage.conversation import Conversation
from triage.extraction.rules_keywords import (
    DEVICE_MODEL_FIELD,
    MAX_REQUIREMENT_CHARS,
    MAX_REQUIREMENTS,
    MAX_TEXT_CHARS,
    MODEL_BRANDS_EN,
    MODEL_BRANDS_ZH,
    MODEL_CUES_EN,
    MODEL_CUES_ZH,
    MODEL_LINES_EN,
    MODEL_NUMBER,
    MODEL_STOP_WORDS,
    MODEL_SUFFIXES,
    MODEL_UNKNOWN_VALUES,
    MODEL_VALUE_EN,
    MODEL_VALUE_ZH,
    NEGATABLE_PROBLEM_TYPES,
    NEGATION_EN,
    NEGATION_ZH,
    NEGATION_ZH_EXCEPTIONS,
    NEUTRAL_ENUM_MEMBERS,
    PROBLEM_TYPE_CUES,
    PROBLEM_TYPE_FIELD,
    PROBLEM_TYPE_MAX_SCORE,
    PROBLEM_TYPE_PRIORITY,
    PROBLEM_TYPE_WEIGHTS,
    QUESTION_MARK_WEIGHT,
    REQUIREMENT_CUES_EN,
    REQUIREMENT_CUES_ZH,
    REQUIREMENT_LEADING_FILLERS,
    REQUIREMENTS_FIELD,
    URGENCY_CUES,
    URGENT_LEVEL_FIELD,
)
from triage.extraction.types import Attempt, ExtractionResult
from triage.schema import RefWalker, TicketSchema
from triage.states.tickets import ExtractionFailure

# --------------------------------------------------------------------------------------------
# Compiled patterns
# --------------------------------------------------------------------------------------------

_CLAUSE_BREAK = r"[,.;:!?\n，。；：！？、…]"


def _en(fragment: str) -> str:
    """Word-bounded by ASCII letters and digits only, so "有Bug" still matches ``bugs?``."""
    return rf"(?<![A-Za-z0-9'])(?:{fragment})(?![A-Za-z0-9'])"


def _compile_cues(cues: Mapping[str, tuple[str, ...]]) -> list[re.Pattern[str]]:
    patterns = [re.compile(_en(fragment), re.IGNORECASE) for fragment in cues.get("en", ())]
    patterns += [re.compile(fragment) for fragment in cues.get("zh", ())]
    return patterns


_PROBLEM_PATTERNS = {name: _compile_cues(cues) for name, cues in PROBLEM_TYPE_CUES.items()}
_URGENCY_PATTERNS = {name: _compile_cues(cues) for name, cues in URGENCY_CUES.items()}
_NEGATION_EN = re.compile(_en(NEGATION_EN), re.IGNORECASE)
_MODEL_CUE_EN = re.compile(
    "|".join(rf"(?<![\w])(?:{cue})(?P<v{i}>{MODEL_VALUE_EN})" for i, cue in enumerate(MODEL_CUES_EN)),
    re.IGNORECASE,
)
_MODEL_CUE_ZH = re.compile(
    rf"(?:{'|'.join(map(re.escape, MODEL_CUES_ZH))})\s*"
    rf"(?P<value>{MODEL_VALUE_ZH.replace('BRAND', '|'.join(MODEL_BRANDS_ZH))})"
)
_MODEL_BRAND = re.compile(
    r"(?<![A-Za-z])(?P<name>(?:(?i:" + "|".join(MODEL_BRANDS_EN) + r")|" + "|".join(MODEL_LINES_EN)
    + r"|" + "|".join(MODEL_BRANDS_ZH) + r")(?:\s*(?:" + "|".join(MODEL_LINES_EN) + r"|(?i:"
    + "|".join(MODEL_BRANDS_EN) + r")))?\s*" + MODEL_NUMBER + MODEL_SUFFIXES + r")(?![A-Za-z0-9])"
)
_MODEL_MY_CODE = re.compile(r"(?:(?<![\w])my\s+|我的)(?P<name>[A-Z]{1,3}\d{1,4}[A-Za-z]{0,2})(?![A-Za-z0-9])")
_MODEL_UNKNOWN_INLINE = re.compile(
    r"(?:don'?t|do not|doesn'?t|not sure|no idea|forgot|can'?t remember)[^,.;!?\n]{0,25}model"
    r"|不知道[^，。！？]{0,6}型号|型号[^，。！？]{0,4}(?:不知道|不清楚|忘了)",
    re.IGNORECASE,
)
_REQUIREMENT_EN = re.compile("|".join(_en(cue) for cue in REQUIREMENT_CUES_EN), re.IGNORECASE)
_REQUIREMENT_ZH = re.compile("|".join(map(re.escape, REQUIREMENT_CUES_ZH)))
_QUESTION_START = re.compile(
    r"^(?:how|what|where|when|why|which|who|can|could|may|is|are|do|does|will|would)\b|^(?:请问|怎么|如何)",
    re.IGNORECASE,
)
_FILLERS = re.compile(REQUIREMENT_LEADING_FILLERS, re.IGNORECASE)
#: Runs of blanks and control characters (but the line break), made one space by :func:`normalize`.
_BLANKS = re.compile(r"[ \t\r\f\v\x00-\x08\x0b-\x1f\u00a0\u3000]+")
_WHITESPACE = re.compile(r"\s+")
_CLAUSE_BREAKS = re.compile(_CLAUSE_BREAK)
#: Where a captured model value stops.
_MODEL_VALUE_END = re.compile(r"[,.;!?，。；！？、()（）\n]")
#: Sentence ends (kept with their sentence) and commas: where :func:`_clauses` splits.
_CLAUSE_SPLIT = re.compile(r"(?<=[.!?。！？；;\n])|[,，、]")
#: Weibo mentions and hashtags.
_MENTION = re.compile(r"[@#]\S+")
_NON_WORD = re.compile(r"\W")
#: A schema issue's path naming a top-level property: ``$.name`` or ``$['name']``.
_TOP_LEVEL_PATH = re.compile(r"^\$(?:\.([^.\[]+)|\['((?:[^'\\]|\\.)*)'\])")


# --------------------------------------------------------------------------------------------
# Field readers
# --------------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Typographic quotes to ASCII, runs of blanks to one space, length capped.

    >>> normalize("can\\u2019t\\tconnect")
    "can't connect"
    """
    text = text[:MAX_TEXT_CHARS].replace("\u2019", "'").replace("\u2018", "'")
    return _BLANKS.sub(" ", text)


def is_negated(text: str, start: int) -> bool:
    """Whether the cue starting at ``start`` is negated by the words just before it.

    >>> is_negated("no urgent demand", 3), is_negated("very urgent", 5), is_negated("不着急", 1)
    (True, False, True)
    """
    before = _CLAUSE_BREAKS.split(text[max(0, start - 40):start])[-1]
    if before and "\u4e00" <= before[-1] <= "\u9fff":
        around = text[max(0, start - 2):start + 1]
        return any(
            char in NEGATION_ZH and around[i:i + 2] not in NEGATION_ZH_EXCEPTIONS
            for i, char in enumerate(around[:-1])
        )
    return bool(_NEGATION_EN.search(" ".join(before.split()[-3:])))


def _cue_hits(text: str, patterns: Iterable[re.Pattern[str]], *, negatable: bool = True) -> tuple[int, int]:
    """(plain hits, negated hits): each pattern counts once, at its first un-negated match."""
    plain = negated = 0
    for pattern in patterns:
        matches = list(pattern.finditer(text))
        if not matches:
            continue
        if not negatable or any(not is_negated(text, m.start()) for m in matches):
            plain += 1
        else:
            negated += 1
    return plain, negated


def problem_type_scores(text: str) -> dict[str, int]:
    """Weighted cue score per problem type (negated cues do not count).

    >>> problem_type_scores("It is broken, how do I fix it?")
    {'complaint': 0, 'device_fault': 3, 'consult': 2, 'other': 0}
    """
    text = normalize(text)
    scores = {}
    for name, patterns in _PROBLEM_PATTERNS.items():
        plain, _ = _cue_hits(text, patterns, negatable=name in NEGATABLE_PROBLEM_TYPES)
        scores[name] = plain * PROBLEM_TYPE_WEIGHTS.get(name, 1)
    if "?" in text or "？" in text:
        scores["consult"] = scores.get("consult", 0) + QUESTION_MARK_WEIGHT
    return {name: min(score, PROBLEM_TYPE_MAX_SCORE.get(name, score)) for name, score in scores.items()}


def classify_problem_type(text: str) -> str:
    """``device_fault``, ``complaint``, ``consult`` or ``other``.

    >>> classify_problem_type("My speaker can't connect Wi-Fi"), classify_problem_type("我要投诉")
    ('device_fault', 'complaint')
    >>> classify_problem_type("请问怎么设置闹钟"), classify_problem_type("hello")
    ('consult', 'other')
    """
    scores = problem_type_scores(text)
    best = max(scores.values(), default=0)
    if best <= 0:
        return "other"
    return next(name for name in PROBLEM_TYPE_PRIORITY if scores.get(name) == best)


def classify_urgency(text: str) -> str:
    """``high``, ``normal`` or ``low``; a negated high cue ("no urgent demand") means low.

    >>> classify_urgency("hope to solve quickly"), classify_urgency("no urgent demand")
    ('high', 'low')
    >>> classify_urgency("请尽快处理"), classify_urgency("不着急"), classify_urgency("hello")
    ('high', 'low', 'normal')
    """
    text = normalize(text)
    low_plain, _ = _cue_hits(text, _URGENCY_PATTERNS["low"])
    if low_plain:
        for pattern in _URGENCY_PATTERNS["low"]:
            text = pattern.sub(lambda m: " " * len(m.group()), text)
    high_plain, high_negated = _cue_hits(text, _URGENCY_PATTERNS["high"])
    if high_plain:
        return "high"
    if low_plain or high_negated:
        return "low"
    return "normal"


def _clean_model(value: str) -> str | None:
    """Trim a captured model value at the first stop word; ``None`` when it means unknown."""
    value = _MODEL_VALUE_END.split(value.strip())[0].strip()
    words: list[str] = []
    for word in value.split():
        if word.lower() in MODEL_STOP_WORDS or len(words) == 4:
            break
        words.append(word)
    cleaned = " ".join(words).strip(" -_/.")
    if not cleaned or len(cleaned) > 40:
        return None
    lowered = cleaned.lower()
    if any(lowered == unknown or lowered.startswith(unknown) for unknown in MODEL_UNKNOWN_VALUES):
        return None
    return cleaned


def find_device_model(text: str) -> str | None:
    """The device model named in ``text``, or ``None`` (also when the customer does not know it).

    Tried in order: an explicit "model is X" / "型号是X", a brand or product line with a number
    ("Redmi Note 12"), then a bare code after "my" / "我的" ("my P9") unless the customer says
    they do not know the model.

    >>> find_device_model("device model is Watch S1, no urgent demand")
    'Watch S1'
    >>> find_device_model("my Redmi Note 12 keeps rebooting"), find_device_model("型号是小米14 Pro，坏了")
    ('Redmi Note 12', '小米14 Pro')
    >>> print(find_device_model("don't know the model"))
    None
    """
    text = normalize(text)
    for match in _MODEL_CUE_EN.finditer(text):
        value = next(v for v in match.groupdict().values() if v is not None)
        if (model := _clean_model(value)) is not None:
            return model
    for match in _MODEL_CUE_ZH.finditer(text):
        if (model := _clean_model(match.group("value"))) is not None:
            return model
    if brand := _MODEL_BRAND.search(text):
        return _WHITESPACE.sub(" ", brand.group("name")).strip()
    if not _MODEL_UNKNOWN_INLINE.search(text) and (code := _MODEL_MY_CODE.search(text)):
        return code.group("name")
    return None


def _clauses(text: str) -> list[str]:
    """Sentences split further at commas: the units requirements are picked from."""
    parts = _CLAUSE_SPLIT.split(text)
    return [part.strip() for part in parts if part and part.strip()]


def _clean_requirement(clause: str) -> str:
    clause = _MENTION.sub(" ", clause)
    clause = _WHITESPACE.sub(" ", clause).strip(" \t-—~*\"'“”\u2018\u2019.。!！;；")
    while (stripped := _FILLERS.sub("", clause)) != clause:
        clause = stripped
    if len(clause) > MAX_REQUIREMENT_CHARS:
        cut = clause[:MAX_REQUIREMENT_CHARS]
        clause = (cut.rsplit(" ", 1)[0] if " " in cut[40:] else cut).rstrip() + "…"
    return clause


def find_requirements(text: str, *, questions: bool = False) -> list[str]:
    """Short phrases saying what the customer wants, deduplicated, at most :data:`MAX_REQUIREMENTS`.

    With ``questions=True``, questions count too when no phrase has a requirement cue.

    >>> find_requirements("can't connect Wi-Fi, hope to solve quickly, don't know the model.")
    ['hope to solve quickly']
    >>> find_requirements("音箱连不上网，希望尽快处理。")
    ['希望尽快处理']
    """
    clauses = _clauses(normalize(text))
    picked = [c for c in clauses if _REQUIREMENT_EN.search(c) or _REQUIREMENT_ZH.search(c)]
    if not picked and questions:
        picked = [c for c in clauses if c.endswith(("?", "？")) or _QUESTION_START.search(c)]
    found: list[str] = []
    seen: set[str] = set()
    for clause in picked:
        cleaned = _clean_requirement(clause)
        key = cleaned.casefold()
        rest = _REQUIREMENT_ZH.sub("", _REQUIREMENT_EN.sub("", cleaned))
        if len(_NON_WORD.sub("", cleaned)) < 3 or len(_NON_WORD.sub("", rest)) < 2 or key in seen:
            continue  # too short, or nothing but "please" / "求"
        seen.add(key)
        found.append(cleaned)
        if len(found) == MAX_REQUIREMENTS:
            break
    return found


@dataclass(frozen=True)
class RulesReading:
    """What the rules read from a text, before fitting it to a schema."""

    problem_type: str
    device_model: str | None
    urgent_level: str
    user_requirements: list[str]

    @classmethod
    def of(cls, text: str) -> RulesReading:
        """Read all four default fields.

        >>> RulesReading.of("手机黑屏了，开不了机，请马上处理").urgent_level
        'high'
        """
        problem_type = classify_problem_type(text)
        return cls(
            problem_type=problem_type,
            device_model=find_device_model(text),
            urgent_level=classify_urgency(text),
            user_requirements=find_requirements(text, questions=problem_type == "consult"),
        )

    def fields(self) -> dict[str, Any]:
        return {
            PROBLEM_TYPE_FIELD: self.problem_type,
            DEVICE_MODEL_FIELD: self.device_model,
            URGENT_LEVEL_FIELD: self.urgent_level,
            REQUIREMENTS_FIELD: list(self.user_requirements),
        }


# --------------------------------------------------------------------------------------------
# Fitting to any schema
# --------------------------------------------------------------------------------------------


def _neutral_enum_member(members: list[Any]) -> Any:
    if None in members:
        return None
    for preferred in NEUTRAL_ENUM_MEMBERS:
        for member in members:
            if isinstance(member, str) and member.lower() == preferred:
                return member
    return members[0] if members else None


def _generic_number(schema: Mapping[str, Any], integer: bool) -> int | float:
    value: float = 0
    if "minimum" in schema:
        value = schema["minimum"]
    elif "exclusiveMinimum" in schema:
        value = schema["exclusiveMinimum"] + (1 if integer else 0.5)
    if "maximum" in schema and value > schema["maximum"]:
        value = schema["maximum"]
    elif "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        value = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    return int(value) if integer else value


def generic_value(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """A neutral value the (sub)schema accepts, chosen without looking at the conversation.

    >>> generic_value({"type": "string", "enum": ["billing", "other"]})
    'other'
    >>> generic_value({"type": ["string", "null"]}), generic_value({"type": "integer", "minimum": 1})
    (None, 1)
    >>> generic_value({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]})
    {'ok': False}
    """
    return _generic(schema, RefWalker(schema if root is None else root))


def _generic(schema: Mapping[str, Any], walker: RefWalker) -> Any:
    """:func:`generic_value` within one walk, so a recursive ``$ref`` ends as ``None``."""
    return walker.follow(schema, lambda node: _generic_resolved(node, walker), lambda ref: None)


def _generic_resolved(schema: Mapping[str, Any], walker: RefWalker) -> Any:
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("enum"), list):
        return _neutral_enum_member(schema["enum"])
    for keyword in ("anyOf", "oneOf", "allOf"):
        options = schema.get(keyword)
        if isinstance(options, list) and options:
            nullable = [o for o in options if isinstance(o, Mapping) and o.get("type") == "null"]
            return _generic(nullable[0] if nullable else options[0], walker)
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if not types:
        types = ["object"] if "properties" in schema else ["null"]
    if "null" in types:
        return None
    return _generic_of_type(types[0], schema, walker)


def _generic_of_type(kind: str, schema: Mapping[str, Any], walker: RefWalker) -> Any:
    if kind == "string":
        length = int(schema.get("minLength", 0))
        return "" if length == 0 else ("unknown" if length <= 7 else "x" * length)
    if kind in ("number", "integer"):
        return _generic_number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    if kind == "array":
        count = int(schema.get("minItems", 0))
        item = schema.get("items", {})
        return [_generic(item, walker) for _ in range(count)] if isinstance(item, Mapping) else []
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: _generic(properties.get(name, {}), walker) for name in schema.get("required", [])}
    return None


def _fields_in(issues: Iterable[Any]) -> set[str] | None:
    """Top-level property names the issues point at; ``None`` if one points at the ticket itself."""
    names: set[str] = set()
    for issue in issues:
        match = _TOP_LEVEL_PATH.match(issue.path)
        if not match:
            return None
        names.add(match.group(1) or match.group(2))
    return names


def fit_to_schema(fields: Mapping[str, Any], schema: TicketSchema) -> dict[str, Any]:
    """Every schema property, from ``fields`` where the schema accepts the value, else generic.

    >>> custom = TicketSchema.from_dict({"type": "object", "required": ["problem_type", "team"],
    ...     "properties": {"problem_type": {"enum": ["hardware", "other"]}, "team": {"type": "string"}}})
    >>> fit_to_schema({"problem_type": "device_fault"}, custom)
    {'problem_type': 'other', 'team': ''}
    """
    root = schema.document
    ticket = {
        name: fields[name] if name in fields else generic_value(sub, root)
        for name, sub in schema.properties.items()
    }
    for _ in range(3):
        issues = schema.validate(ticket)
        if not issues:
            break
        bad = _fields_in(issues)
        for name in (bad if bad is not None else set(ticket)) & set(ticket):
            ticket[name] = generic_value(schema.properties[name], root)
        if bad is None:
            break
    return schema.project(ticket)


# --------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------


class RulesExtractor:
    """Keyword-and-pattern extraction; same ``extract`` shape as the LLM extractor.

    >>> schema = TicketSchema.from_dict({"type": "object", "required": ["problem_type"],
    ...     "properties": {"problem_type": {"enum": ["device_fault", "consult", "complaint", "other"]}}})
    >>> result = RulesExtractor(schema).extract(Conversation.from_text("我的手机坏了，开不了机"))
    >>> result.extractor, result.ticket, result.ok
    ('rules', {'problem_type': 'device_fault'}, True)
    """

    def __init__(self, schema: TicketSchema) -> None:
        self.schema = schema

    def extract(self, conversation: Conversation, prior: Sequence[Attempt] = ()) -> ExtractionResult:
        """Read the customer's messages; ``prior`` (earlier LLM attempts) is accepted and ignored.

        The ticket is schema-valid; only a schema no value can satisfy (e.g. a ``pattern``
        the generic filler cannot meet) gives ``ticket=None`` with ``failure_reason``.
        """
        del prior
        reading = RulesReading.of(conversation.customer_text())
        ticket = fit_to_schema(reading.fields(), self.schema)
        issues = self.schema.validate(ticket)
        if issues:
            return ExtractionResult(
                extractor="rules", ticket=None, attempts=[], model=None,
                schema_version=self.schema.version, failure_reason=ExtractionFailure.RULES_INVALID,
                failure_detail="; ".join(map(str, issues))[:2000],
            )
        return ExtractionResult(
            extractor="rules", ticket=ticket, attempts=[], model=None, schema_version=self.schema.version,
        )
