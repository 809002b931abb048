"""Every secret triage is configured with, and scrubbing them out of text: log lines (:mod:`triage.worker.logs`)
and the LLM's error messages (:mod:`triage.extraction.llm`) show ``<redacted>`` in their place.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from kombu.utils.url import url_to_parts
from pydantic import BaseModel, SecretStr
from sqlalchemy.engine import make_url

from triage.settings import Settings

REDACTED = "<redacted>"
#: Shorter secrets are not scrubbed: replacing two letters everywhere would garble every line.
MIN_SCRUBBED_CHARS = 6


def scrub_secrets(text: str, secrets: Sequence[str]) -> str:
    """``text`` with each of ``secrets`` (longest first, as :func:`scrubbed_order` sorts them) as ``<redacted>``.

    >>> scrub_secrets("key sk-123456 refused", scrubbed_order(["sk-123456", "ab"]))
    'key <redacted> refused'
    """
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def scrubbed_order(secrets: Sequence[str]) -> list[str]:
    """The secrets worth scrubbing (:data:`MIN_SCRUBBED_CHARS` or longer), longest first, each once."""
    return sorted({s for s in secrets if len(s) >= MIN_SCRUBBED_CHARS}, key=len, reverse=True)


def _secrets_in(value: object) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets_in(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secrets_in(item)


def secret_values(settings: Settings) -> list[str]:
    """Every secret in ``settings``: each ``SecretStr`` anywhere in it, and the database and broker passwords."""
    found = list(_secrets_in(settings))
    database_password = make_url(settings.database_url).password
    broker_password = url_to_parts(settings.broker_url).password
    return found + [str(p) for p in (database_password, broker_password) if p]
