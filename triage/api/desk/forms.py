"""The correction form, generated from the ticket schema: one labelled control per field.

Each control is named and labelled with its field's name: an enum is a select (a nullable one has a
"none" choice), a string a text input (a nullable one a "none" checkbox beside it), a number a
number input, a boolean a select, an array of strings an editable list (one item per line), an
array of enum values a set of checkboxes, anything else JSON text. :func:`read_form` turns the
submitted form back into fields, and every problem (unparseable input, or a schema violation)
is reported against the field it belongs to.

>>> from triage.schema import TicketSchema
>>> schema = TicketSchema.from_dict({"type": "object", "properties": {
...     "urgent_level": {"enum": ["low", "high"]}, "device_model": {"type": ["string", "null"]},
...     "user_requirements": {"type": "array", "items": {"type": "string"}}}})
>>> [(c.name, c.kind, c.nullable) for c in controls(schema, {})]
[('urgent_level', 'select', False), ('device_model', 'text', True), ('user_requirements', 'list', False)]
>>> read_form(schema, {"field:urgent_level": ['"high"'], "field:device_model": ["Watch S1"],
...                    "field:user_requirements": ["reset it\\n\\n  pair it "]})
({'urgent_level': 'high', 'device_model': 'Watch S1', 'user_requirements': ['reset it', 'pair it']}, {})
>>> read_form(schema, {"field:urgent_level": ['"soon"'], "none:device_model": ["on"]})[1]
{'urgent_level': 'choose one of the listed values'}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from triage.schema import Node, RefWalker, TicketSchema, ValidationIssue

#: Form input names: ``field:<name>`` holds a value, ``none:<name>`` a nullable field's "none" box.
FIELD_PREFIX, NONE_PREFIX = "field:", "none:"
#: Where an error about the whole ticket (not one field) is reported.
WHOLE_TICKET = ""

Kind = Literal["select", "text", "number", "integer", "list", "checks", "json"]
Form = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Option:
    value: str  # the JSON text of the value, so any enum value round-trips with its type
    label: str
    selected: bool


@dataclass(frozen=True)
class Control:
    name: str
    kind: Kind
    required: bool
    nullable: bool
    #: The current value as the control shows it (text, number, list lines or JSON).
    text: str = ""
    #: Whether a nullable text/number field is currently none.
    is_none: bool = False
    options: tuple[Option, ...] = ()


def _types(node: Node) -> set[str]:
    declared = node.get("type")
    return set(declared) if isinstance(declared, list) else {declared} if isinstance(declared, str) else set()


def _resolved(walker: RefWalker, node: Node) -> Node:
    return walker.follow(node, lambda found: found, lambda ref: {})


def _label(value: object) -> str:
    return "none" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _kind(walker: RefWalker, node: Node) -> Kind:
    types = _types(node) - {"null"}
    if isinstance(node.get("enum"), list) or types == {"boolean"}:
        return "select"
    if types == {"string"}:
        return "text"
    if types in ({"number"}, {"integer"}):
        return "integer" if types == {"integer"} else "number"
    if types == {"array"}:
        items = _resolved(walker, node.get("items") or {})
        if isinstance(items.get("enum"), list):
            return "checks"
        if _types(items) == {"string"}:
            return "list"
    return "json"


def _choices(node: Node, nullable: bool) -> list[object]:
    """A select's values: the enum's (a boolean's true and false), with none for a nullable field."""
    choices: list[object] = list(node["enum"]) if isinstance(node.get("enum"), list) else [True, False]
    if nullable and None not in choices:
        choices.append(None)
    return choices


def _control(walker: RefWalker, name: str, node: Node, required: bool, value: object, present: bool) -> Control:
    node = _resolved(walker, node)
    kind = _kind(walker, node)
    enum = node.get("enum")
    nullable = "null" in _types(node) or (isinstance(enum, list) and None in enum)
    if kind == "select":
        options = tuple(Option(json.dumps(v, ensure_ascii=False), _label(v), present and v == value)
                        for v in _choices(node, nullable))
        return Control(name, kind, required, nullable, options=options)
    if kind == "checks":
        chosen = value if isinstance(value, list) else []
        options = tuple(Option(json.dumps(v, ensure_ascii=False), _label(v), v in chosen)
                        for v in _choices(_resolved(walker, node.get("items") or {}), nullable=False))
        return Control(name, kind, required, nullable, options=options)
    if kind == "list":
        items = value if isinstance(value, list) else []
        return Control(name, kind, required, nullable, text="\n".join(str(item) for item in items))
    if kind == "json":
        return Control(name, kind, required, nullable, text=json.dumps(value, ensure_ascii=False) if present else "")
    shown = "" if value is None else str(value)
    return Control(name, kind, required, nullable, text=shown, is_none=present and value is None)


def controls(schema: TicketSchema, fields: Mapping[str, Any]) -> list[Control]:
    """The form's controls, showing ``fields`` (the ticket's current values)."""
    walker = RefWalker(schema.document)
    required = set(schema.required)
    return [_control(walker, name, node, name in required, fields.get(name), name in fields)
            for name, node in schema.properties.items()]


def _first(form: Form, key: str) -> str | None:
    values = form.get(key) or []
    return values[0] if values else None


def _read(control: Control, form: Form) -> tuple[bool, Any, str | None]:
    """(present, value, problem) for one control."""
    raw = _first(form, FIELD_PREFIX + control.name)
    if control.nullable and control.kind in ("text", "number", "integer") and _first(form, NONE_PREFIX + control.name):
        return True, None, None
    if control.kind in ("select", "checks"):
        chosen = form.get(FIELD_PREFIX + control.name) or []
        allowed = {option.value: json.loads(option.value) for option in control.options}
        if any(value not in allowed for value in chosen if value):
            return False, None, "choose one of the listed values"
        if control.kind == "checks":
            return True, [allowed[option.value] for option in control.options if option.value in chosen], None
        return (True, allowed[raw], None) if raw else (False, None, None)
    if control.kind == "text":
        return (raw is not None), (raw or "").strip(), None
    if control.kind == "list":
        return True, [line.strip() for line in (raw or "").splitlines() if line.strip()], None
    text = (raw or "").strip()
    if not text:
        return False, None, None
    try:
        return True, (int(text) if control.kind == "integer" else float(text) if control.kind == "number"
                      else json.loads(text)), None
    except ValueError:
        return False, None, {"integer": "a whole number", "number": "a number"}.get(control.kind, "valid JSON") \
            + " is needed here"


def read_form(schema: TicketSchema, form: Form) -> tuple[dict[str, Any], dict[str, str]]:
    """The fields a submitted correction form holds, and the problems found reading it, by field."""
    fields: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for control in controls(schema, {}):
        present, value, problem = _read(control, form)
        if problem:
            problems[control.name] = problem
        elif present:
            fields[control.name] = value
    return fields, problems


def issues_by_field(issues: Sequence[ValidationIssue], names: Sequence[str]) -> dict[str, str]:
    """Schema violations keyed by the field they concern (:data:`WHOLE_TICKET` for the rest).

    >>> issues_by_field([ValidationIssue("$.urgent_level", "'soon' is not one of ['low']"),
    ...                  ValidationIssue("$", "'device_model' is a required property")],
    ...                 ["urgent_level", "device_model"])
    {'urgent_level': "'soon' is not one of ['low']", 'device_model': 'a value is required'}
    """
    found: dict[str, str] = {}
    for issue in issues:
        name = next((n for n in names if issue.path in (f"$.{n}", f"$['{n}']")
                     or issue.path.startswith((f"$.{n}.", f"$.{n}[", f"$['{n}']"))), None)
        if name is None and issue.path == "$":
            name = next((n for n in names if issue.message == f"{n!r} is a required property"), None)
            if name is not None:
                found.setdefault(name, "a value is required")
                continue
        found.setdefault(name if name is not None else WHOLE_TICKET, issue.message)
    return found
