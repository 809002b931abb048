"""The settings reference page, generated from the settings model so that it cannot drift from the code.

``python -m triage.settings_reference`` (from the checkout) writes ``docs/reference/settings.md``: every
key of :class:`triage.settings.Settings` with the environment variable that sets it, its type, its default
and its description. A description is the field's ``description`` or, as Sphinx reads them, the ``#:``
comment lines right above the field in ``triage/settings.py``; a field without either stops the
generator, naming it. ``--check`` writes nothing and exits 1 when the page differs from what the model
gives (``tests/test_settings_reference.py`` runs the same comparison in ``make test``).

>>> row = next(row for row in rows() if row.key == "worker.lease_seconds")
>>> row.env, row.type, row.default
('TRIAGE__WORKER__LEASE_SECONDS', 'number, > 0', '`60`')
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import sys
import textwrap
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from triage.errors import TriageError
from triage.settings import ENV_KEYS, NESTED_PREFIX, WEBHOOK_SECRET_PREFIX, Settings

#: Where the page lives in the checkout, and the command that writes it (named in every staleness message).
PAGE = Path("docs/reference/settings.md")
COMMAND = "python -m triage.settings_reference"
#: Keys set by a variable that is not ``ENV_KEYS``' nor the ``TRIAGE__`` form.
SPECIAL_ENV = {"config_path": "TRIAGE_CONFIG", "webhooks.secrets": f"{WEBHOOK_SECRET_PREFIX}<SOURCE>"}
SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path", SecretStr: "secret"}
BOUNDS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "<="),
          (annotated_types.Lt, "lt", "<"))


class MissingDescriptionError(TriageError):
    """A setting has neither a ``description`` nor a ``#:`` comment in the model."""


@dataclass(frozen=True)
class Row:
    """One line of the reference: a settings key as the config file spells it."""

    section: str
    #: The model the key belongs to (its docstring introduces the section).
    model: type[BaseModel]
    key: str
    env: str
    type: str
    default: str
    description: str


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _bounds(metadata: Sequence[Any]) -> str:
    found = [f"{sign} {getattr(item, name)}" for item in metadata for kind, name, sign in BOUNDS
             if isinstance(item, kind)]
    return ", ".join(found)


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type.

    >>> type_name(list[str]), type_name(Literal["auto", "never"]), type_name(int | None)
    ('list of string', 'one of "auto", "never"', 'integer or unset')
    >>> type_name(dict[str, str | int | list[str | int]])
    'table of (string or integer or list of (string or integer))'
    """
    annotation = _unwrap(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        named = [type_name(arg) for arg in args if arg is not type(None)]
        return " or ".join(named) + (" or unset" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(arg) for arg in args)
    if origin is list:
        return f"list of {_grouped(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(arg) for arg in args) + "]"
    if origin is dict:
        return f"table of {_grouped(args[1])}"
    if _model_of(annotation) is not None:
        return "table"
    if isinstance(annotation, type) and annotation in SCALARS:
        return SCALARS[annotation]
    return str(getattr(annotation, "__name__", annotation))


def _grouped(annotation: Any) -> str:
    """An item type inside ``list of`` / ``table of``: parenthesised when it is a choice."""
    if _model_of(_unwrap(annotation)) is not None:
        return "tables (their keys below)"
    name = type_name(annotation)
    return f"({name})" if " or " in name else name


def _field_type(field: FieldInfo) -> str:
    bounds = _bounds(field.metadata)
    return type_name(field.annotation) + (f", {bounds}" if bounds else "")


def _value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def default_text(field: FieldInfo) -> str:
    """The default as the config file would write it (JSON spelling), or ``required`` / ``unset``."""
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    return _shown(field.get_default(call_default_factory=True))


def _shown(value: Any) -> str:
    return "unset" if value is None else f"`{json.dumps(_value(value), ensure_ascii=False)}`"


@cache
def _doc_comments(cls: type) -> dict[str, str]:
    """``#:`` comment blocks right above each annotated field of ``cls``'s own body."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    [node] = ast.parse(source).body
    assert isinstance(node, ast.ClassDef)
    found = {}
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            comment: list[str] = []
            index = statement.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#:"):
                comment.insert(0, lines[index].strip()[2:].strip())
                index -= 1
            if comment:
                found[statement.target.id] = " ".join(comment)
    return found


def description(model: type[BaseModel], name: str, key: str) -> str:
    """The field's description, else its ``#:`` comment (the nearest class of the MRO that has one)."""
    field = model.model_fields[name]
    text = field.description or next(
        (comments[name] for cls in model.__mro__ if name in (comments := _doc_comments(cls))), None)
    if not text:
        raise MissingDescriptionError(f"{key}: no description: add a #: comment above {model.__name__}.{name} "
                                 "in triage/settings.py")
    return text


def _env_name(key: str, settable: bool) -> str:
    dedicated = {dotted: env for env, dotted in ENV_KEYS.items()} | SPECIAL_ENV
    if key in dedicated:
        return dedicated[key]
    return NESTED_PREFIX + key.upper().replace(".", "__") if settable else "-"


def _section_of(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def _entry_model(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """For a table or list of tables: the key suffix of one entry and the entry's model."""
    annotation = _unwrap(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and (model := _model_of(_unwrap(args[1]))) is not None:
        return '."<name>"', model
    if origin is list and (model := _model_of(_unwrap(args[0]))) is not None:
        return "[]", model
    return None


def rows(model: type[BaseModel] = Settings, prefix: str = "", settable: bool = True,
         instance: BaseModel | None = None) -> Iterator[Row]:
    """Every key of ``model`` in the order the model declares them, a section's keys where it is declared, the
    entries of its tables after its own keys; ``instance``, when given, holds the section's defaults."""
    entries: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        section = _model_of(field.annotation)
        default = getattr(instance, name) if instance is not None else field.get_default(call_default_factory=True)
        if section is not None:
            yield from rows(section, key + ".", settable, default if isinstance(default, BaseModel) else None)
            continue
        shown = default_text(field) if instance is None else _shown(default)
        yield Row(section=_section_of(key), model=model, key=key, env=_env_name(key, settable),
                  type=_field_type(field), default=shown, description=description(model, name, key))
        entry = _entry_model(field.annotation)
        if entry is not None:
            entries.append((key + entry[0], entry[1]))
    for key, entry_model in entries:
        yield from rows(entry_model, key + ".", settable=False)


#: A Sphinx role (:func:`x`, :mod:`~a.b`) in a docstring, shown as code.
SPHINX_ROLE = re.compile(r":\w+:`~?([^`]+)`")


def _cell(text: str) -> str:
    r"""Text for one table cell: RST code as Markdown code, ``|`` escaped outside code.

    >>> print(_cell("a | b, ``c | d``, :func:`e`"))
    a \| b, `c | d`, `e`
    """
    text = SPHINX_ROLE.sub(r"`\1`", text)
    parts = text.replace("``", "`").replace("\n", " ").split("`")
    # a | outside code would end the cell; inside code MkDocs' tables keep it as it is
    return "`".join(part if index % 2 else part.replace("|", "\\|") for index, part in enumerate(parts))


def _section_doc(model: type[BaseModel]) -> str:
    """The first paragraph of a section model's own docstring (none for the top level)."""
    doc = inspect.getdoc(model) or ""
    inherited = any(doc == inspect.getdoc(base) for base in model.__mro__[1:])
    return "" if model is Settings or inherited else doc.split("\n\n")[0].replace("\n", " ")


INTRO = f"""\
<!-- Generated by `{COMMAND}` from triage/settings.py: edit the model, not this page. -->

# Settings reference

Every setting of triage, generated from the settings model (`triage/settings.py`), so this page is what the
code reads. A key is spelled as in the config file (`config/triage.toml`, or the file `TRIAGE_CONFIG`
names): `worker.lease_seconds` is `lease_seconds` in `[worker]`. Every key can be set from the environment
as `TRIAGE__SECTION__KEY` (lists and tables as JSON); where a key has a variable of its own, the
*environment* column names it, and it wins over the `TRIAGE__` form. Defaults are the model's: the shipped
config file sets more (the routing rules, for one; see [Configuration](../configuration.md)). A bad value
stops start-up with a message naming the key or the variable.

Entries of a table or a list of tables (`routing.rules[]`, `writeback.zendesk.routes."<name>"`) are set
with their table, not one by one.
"""


def render() -> str:
    """The whole page."""
    out = [INTRO]
    current: str | None = None
    for row in rows():
        if row.section != current:
            current = row.section
            heading = (f"`[[{current.removesuffix('[]')}]]`" if current.endswith("[]") else f"`[{current}]`"
                       if current else "Top level")
            doc = _section_doc(row.model)
            out += ["", f"## {heading}", ""] + ([_cell(doc), ""] if doc else [])
            out += ["| key | environment | type | default | description |", "| --- | --- | --- | --- | --- |"]
        out.append(f"| `{row.key}` | `{row.env}` | {_cell(row.type)} | {_cell(row.default)} | "
                   f"{_cell(row.description)} |" if row.env != "-" else
                   f"| `{row.key}` | - | {_cell(row.type)} | {_cell(row.default)} | {_cell(row.description)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m triage.settings_reference",
        description="Write the settings reference page (docs/reference/settings.md) from the settings model.")
    parser.add_argument("--output", type=Path, default=PAGE, help=f"the page to write (default: {PAGE})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the page is not what the model gives")
    args = parser.parse_args(argv)
    try:
        page = render()
    except MissingDescriptionError as exc:
        print(f"settings reference: {exc}", file=sys.stderr)
        return 1
    output: Path = args.output
    current = output.read_text(encoding="utf-8") if output.exists() else None
    if args.check:
        if current != page:
            print(f"{output} is stale: run `{COMMAND}` from the checkout and commit the page", file=sys.stderr)
            return 1
        print(f"{output} is up to date")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    print(f"wrote {output} ({page.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
