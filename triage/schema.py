"""The ticket JSON Schema: load it, validate answers against it, version it.

>>> schema = TicketSchema.from_dict({
...     "type": "object",
...     "properties": {"urgent_level": {"type": "string", "enum": ["low", "high"]}},
...     "required": ["urgent_level"],
... })
>>> [str(issue) for issue in schema.validate({"urgent_level": "soon"})]
["$.urgent_level: 'soon' is not one of ['low', 'high']"]
>>> schema.project({"urgent_level": "low", "route": "vip"})
{'urgent_level': 'low'}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from triage.errors import ConfigError

Node = Mapping[str, Any]
T = TypeVar("T")


class SchemaFileError(ConfigError):
    """The schema file is unreadable or not a usable ticket schema."""


class RefWalker:
    """Follows local ``$ref`` (``#/...``) inside one schema document, cycle-safe.

    A reference already being expanded is not expanded again, so walks over recursive schemas
    terminate; the prompt writer and the rules filler both walk schemas through this.

    >>> root = {"$defs": {"level": {"enum": ["low", "high"]}}, "properties": {"l": {"$ref": "#/$defs/level"}}}
    >>> RefWalker(root).follow(root["properties"]["l"], lambda node: node["enum"], lambda ref: [])
    ['low', 'high']
    """

    def __init__(self, root: Node) -> None:
        self.root = root
        self._expanding: list[str] = []

    def follow(self, node: Node, visit: Callable[[Node], T], on_cycle: Callable[[str], T]) -> T:
        """``visit(node)``, or ``visit`` of its ``$ref`` target; a reference already being expanded
        gives ``on_cycle(ref)`` instead."""
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return visit(node)
        if ref in self._expanding:
            return on_cycle(ref)
        self._expanding.append(ref)
        try:
            return self.follow(resolve_ref(self.root, ref), visit, on_cycle)
        finally:
            self._expanding.pop()


def resolve_ref(root: Node, ref: str) -> Node:
    """The subschema a local JSON pointer reference names; anything else is a :class:`SchemaFileError`.

    >>> resolve_ref({"$defs": {"a/b": {"type": "string"}}}, "#/$defs/a~1b")
    {'type': 'string'}
    >>> resolve_ref({}, "other.json#/x")
    Traceback (most recent call last):
    ...
    triage.schema.SchemaFileError: only local $ref (#/...) are supported in the ticket schema, not 'other.json#/x'
    """
    if not ref.startswith("#"):
        raise SchemaFileError(f"only local $ref (#/...) are supported in the ticket schema, not {ref!r}")
    node: Any = root
    for token in ref[1:].split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or key not in node:
            raise SchemaFileError(f"$ref {ref!r} points at nothing in the ticket schema")
        node = node[key]
    if not isinstance(node, Mapping):
        raise SchemaFileError(f"$ref {ref!r} does not point at a schema object")
    return node


def _refs(node: object) -> Iterator[str]:
    """Every ``$ref`` string anywhere in ``node``."""
    if isinstance(node, Mapping):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


@dataclass(frozen=True)
class ValidationIssue:
    """One validation error: where in the answer (JSON path) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class TicketSchema:
    """A ticket schema: an object schema whose ``properties`` are the ticket's fields."""

    def __init__(self, document: dict[str, Any]) -> None:
        try:
            Draft202012Validator.check_schema(document)
        except SchemaError as exc:
            raise SchemaFileError(f"not a valid JSON Schema: {exc.message}") from exc
        if document.get("type") != "object" or not isinstance(document.get("properties"), dict):
            raise SchemaFileError('a ticket schema must be {"type": "object", "properties": {...}}')
        for ref in _refs(document):  # refused here, so no later walk meets a dangling reference
            resolve_ref(document, ref)
        self.document = document
        self._validator = Draft202012Validator(document)
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        #: Short content hash: changes whenever the schema file's meaning changes.
        self.version = hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> TicketSchema:
        return cls(document)

    @classmethod
    def load(cls, path: Path) -> TicketSchema:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SchemaFileError(f"{path}: cannot read the ticket schema: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise SchemaFileError(f"{path}: not valid JSON: {exc}") from exc
        try:
            return cls(document)
        except SchemaFileError as exc:
            raise SchemaFileError(f"{path}: {exc}") from exc

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        properties: dict[str, dict[str, Any]] = self.document["properties"]
        return properties

    @property
    def required(self) -> list[str]:
        return list(self.document.get("required", []))

    def validate(self, instance: object) -> list[ValidationIssue]:
        """Every error in ``instance``, each with its JSON path, in a stable order."""
        errors = sorted(self._validator.iter_errors(instance), key=lambda e: (list(map(str, e.path)), e.message))
        return [ValidationIssue(error.json_path, error.message) for error in errors]

    def field_issues(self, name: str, value: object) -> list[str]:
        """Why ``value`` is not acceptable for field ``name`` (empty when it is).

        >>> schema = TicketSchema.from_dict({"type": "object", "properties": {"l": {"enum": ["low", "high"]}}})
        >>> schema.field_issues("l", "soon")
        ["'soon' is not one of ['low', 'high']"]
        """
        subschema = self._validator.evolve(schema=self.properties[name])  # keeps the root's $ref resolver
        return [error.message for error in subschema.iter_errors(value)]

    def project(self, instance: dict[str, Any]) -> dict[str, Any]:
        """Only the fields the schema defines, so nothing else reaches routing or storage."""
        return {key: instance[key] for key in self.properties if key in instance}
