"""The root of triage's own errors and the small tree under it (each leaf lives in its room).

::

    TriageError
    ├── ConfigError            settings, schema file, routing rules (SettingsError, SchemaFileError, RuleError)
    ├── DatabaseNotReadyError  no tables yet, or behind the migrations
    ├── InputError             a malformed submission line, webhook payload, filter or cursor
    ├── RejectedError          well-formed, but the record's rules refuse it (a correction the schema does not allow)
    ├── AuthError              a missing or wrong signature or token
    ├── NotFoundError          no such ticket
    ├── ConflictError          a transition the ticket's status does not allow, a claim someone else holds
    ├── ExtractionError        the LLM API failed (APIError and its kinds) or the rate budget is used up
    └── DeliveryError          a write-back, outbound event or alert could not be delivered (triage.delivery)

The CLI maps the tree to exit statuses once (:mod:`triage.cli.main`), the HTTP app to answers once
(:mod:`triage.api.error_answers`); nothing else translates errors.

>>> issubclass(NotFoundError, TriageError)
True
"""

from __future__ import annotations


class TriageError(Exception):
    """Every error triage raises on purpose derives from this."""


class ConfigError(TriageError):
    """Something configured (a setting, the schema file, a routing rule) is unusable; fix it and start again."""


class DatabaseNotReadyError(TriageError):
    """The database has no tables yet (or is behind the migrations)."""


class InputError(TriageError):
    """What a caller sent is malformed; the message names the field and why."""


class RejectedError(TriageError):
    """What a caller sent is well-formed, but the record's rules refuse it (e.g. the ticket schema)."""

    def detail(self) -> object:
        """The refusal as an answer's ``detail``: the reason in words, or a structure naming each problem."""
        return str(self)


class AuthError(TriageError):
    """A signature, shared secret or bearer token is missing or wrong."""


class NotFoundError(TriageError):
    """The ticket (or other record) asked for does not exist."""


class ConflictError(TriageError):
    """The request conflicts with the record's current state (its status, or someone else's claim)."""


class ExtractionError(TriageError):
    """Extraction could not get an answer from the LLM API."""
