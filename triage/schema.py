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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


class SchemaFileError(ValueError):
    """The schema file is unreadable or not a usable ticket schema."""


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
        return self.document["properties"]

    @property
    def required(self) -> list[str]:
        return list(self.document.get("required", []))

    def validate(self, instance: object) -> list[ValidationIssue]:
        """Every error in ``instance``, each with its JSON path, in a stable order."""
        errors = sorted(self._validator.iter_errors(instance), key=lambda e: (list(map(str, e.path)), e.message))
        return [ValidationIssue(error.json_path, error.message) for error in errors]

    def project(self, instance: dict[str, Any]) -> dict[str, Any]:
        """Only the fields the schema defines, so nothing else reaches routing or storage."""
        return {key: instance[key] for key in self.properties if key in instance}
