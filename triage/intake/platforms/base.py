"""What every platform adapter returns or raises, and the small helpers they share.

An adapter turns one webhook request (headers + raw body) into an :class:`InboundMessage` to
store, a :class:`HelpdeskChange` (a person changed a routing decision on the platform: a label
candidate, :mod:`triage.intake.labels`), an :class:`Ignored` (answer 200, store nothing), or an
error that names its HTTP status:

>>> WebhookAuthError("bad signature").status, WebhookPayloadError("not JSON").status
(401, 400)
>>> header({"X-Hub-Signature": "sha1=ab"}, "x-hub-signature")
'sha1=ab'
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Protocol

from triage.conversation import Conversation
from triage.errors import AuthError, ConfigError, InputError, TriageError
from triage.intake.jsonbody import load_object

DEFAULT_TOLERANCE_SECONDS = 300.0


@dataclass(frozen=True)
class InboundMessage:
    """One customer message (or first message set) a platform delivered, ready for intake to store.

    ``conversation`` holds only the customer message(s) this delivery carries, not the history.
    Dedupe on ``(source, conversation_key, message_key)``; ``delivery_id`` is the platform's
    delivery or event id when it has one (stable across that platform's retries).

    ``platform_ticket_id`` is the id the platform's REST API takes for this ticket or
    conversation (Chatwoot: the display id) and ``platform_account_id`` its account or workspace
    where the platform has several: where write-back writes. The generic source has neither.
    """

    source: str
    conversation_key: str
    message_key: str
    delivery_id: str | None
    conversation: Conversation
    customer: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    platform_ticket_id: str | None = None
    platform_account_id: str | None = None
    #: When the customer wrote this delivery's (first) message, as the platform dates it; the SLA counts
    #: from it. None when the payload does not say.
    sent_at: datetime | None = None


@dataclass(frozen=True)
class IdFields:
    """Where a platform's ids come from, in its own terms, so that a refused id is named as the sender knows
    it (:mod:`triage.intake.normalise`)."""

    conversation_key: str
    message_key: str
    delivery_id: str
    platform_ticket_id: str = "the platform's ticket id"
    platform_account_id: str = "the platform's account id"


@dataclass(frozen=True)
class HelpdeskChange:
    """Someone changed a ticket's group (``change`` ``group``) or priority (``priority``) on the platform.

    ``previous`` and ``current`` are the platform's values (a group id, a priority name in lower case;
    None when unset), ``actor_id`` the platform user who made the change, ``delivery_id`` the platform's
    event id (dedupe), ``at`` when it happened as the platform dates it.
    """

    source: str
    platform_ticket_id: str
    change: Literal["group", "priority"]
    previous: str | None
    current: str | None
    actor_id: str
    delivery_id: str | None
    at: datetime | None = None


@dataclass(frozen=True)
class Ignored:
    """A genuine event with nothing to triage (agent reply, private note, ping...): answer 200."""

    reason: str


class WebhookError(TriageError):
    """Base of the adapter errors; ``status`` is the HTTP answer, ``reason`` says why."""

    status: ClassVar[int] = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookAuthError(WebhookError, AuthError):
    """Missing or wrong signature / shared secret, or a timestamp outside the window: 401."""

    status = 401


class WebhookPayloadError(WebhookError, InputError):
    """The body is not JSON, or lacks a field the platform always sends: 400."""

    status = 400


class WebhookConfigError(WebhookError, ConfigError):
    """Our side is misconfigured (no secret, malformed secret): 500, so the sender retries later."""

    status = 500


class Platform(Protocol):
    """One support platform's webhook dialect."""

    name: ClassVar[str]
    id_fields: ClassVar[IdFields]

    @property
    def tolerance(self) -> float: ...

    def check_secret(self, secret: str | None) -> None: ...

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str | None,
               now: float | None = None) -> None: ...

    def parse(self, headers: Mapping[str, str], body: bytes) -> InboundMessage | HelpdeskChange | Ignored: ...

    def sign(self, body: bytes, secret: str, now: float, delivery_id: str | None = None) -> dict[str, str]: ...

    def receive(self, headers: Mapping[str, str], body: bytes, secret: str | None,
                now: float | None = None) -> InboundMessage | HelpdeskChange | Ignored: ...


@dataclass(frozen=True)
class BasePlatform:
    """Shared behaviour: secret presence check, ``receive`` = verify then parse."""

    name: ClassVar[str] = ""
    id_fields: ClassVar[IdFields]
    tolerance: float = DEFAULT_TOLERANCE_SECONDS

    def check_secret(self, secret: str | None) -> None:
        """Raise :class:`WebhookConfigError` unless a usable secret is configured (call it at start-up)."""
        if not secret:
            raise WebhookConfigError(f"no webhook secret configured for {self.name}")

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str | None,
               now: float | None = None) -> None:
        """Check the signature over the raw bytes (each platform its own way)."""
        raise NotImplementedError

    def parse(self, headers: Mapping[str, str], body: bytes) -> InboundMessage | HelpdeskChange | Ignored:
        """Normalise the payload (each platform its own way)."""
        raise NotImplementedError

    def receive(self, headers: Mapping[str, str], body: bytes, secret: str | None,
                now: float | None = None) -> InboundMessage | HelpdeskChange | Ignored:
        """Verify the raw bytes, then parse them."""
        self.verify(headers, body, secret, now)
        return self.parse(headers, body)


@dataclass(frozen=True)
class MayBeUnsigned(BasePlatform):
    """A platform some installs cannot sign for (Chatwoot before webhook signing, Zammad without a token):
    ``allow_unsigned`` takes their deliveries without a secret; with a secret, each is checked by
    :meth:`verify_signed`."""

    #: The start-up error when there is no secret and unsigned deliveries are not allowed.
    no_secret: ClassVar[str]
    allow_unsigned: bool = False

    def check_secret(self, secret: str | None) -> None:
        if not secret and not self.allow_unsigned:
            raise WebhookConfigError(self.no_secret)

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str | None, now: float | None = None) -> None:
        self.check_secret(secret)
        if secret:  # else allow_unsigned and no secret: an install that cannot sign
            self.verify_signed(headers, body, secret, now)

    def verify_signed(self, headers: Mapping[str, str], body: bytes, secret: str, now: float | None) -> None:
        """Check the signature with ``secret`` (each platform its own way)."""
        raise NotImplementedError


# ---- helpers shared by the adapters -------------------------------------------------------------

def header(headers: Mapping[str, str], name: str) -> str | None:
    """The header's value (stripped), looked up case-insensitively; None when absent."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value.strip()
    return None


def require_header(headers: Mapping[str, str], name: str) -> str:
    value = header(headers, name)
    if not value:
        raise WebhookAuthError(f"missing {name} header")
    return value


def same(expected: str, given: str) -> bool:
    """Constant-time comparison that never raises on non-ASCII input."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def hmac_digest(key: bytes, message: bytes, algorithm: str) -> bytes:
    return hmac.new(key, message, getattr(hashlib, algorithm)).digest()


#: Where Intercom and Zammad put the body's signature, :func:`sha1_signature`.
SHA1_SIGNATURE_HEADER = "X-Hub-Signature"


def sha1_signature(secret: str, body: bytes) -> str:
    """``sha1=<hex HMAC-SHA1(secret, body)>``: Intercom's ``X-Hub-Signature`` and Zammad's."""
    return "sha1=" + hmac_digest(secret.encode(), body, "sha1").hex()


def check_sha1_signature(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    """:class:`WebhookAuthError` unless ``X-Hub-Signature`` is the body's :func:`sha1_signature` with ``secret``."""
    given = require_header(headers, SHA1_SIGNATURE_HEADER)
    if not same(sha1_signature(secret, body), given.lower()):
        raise WebhookAuthError(f"{SHA1_SIGNATURE_HEADER} does not match")


def check_fresh(timestamp: float, now: float | None, tolerance: float) -> None:
    """Reject a signed timestamp further than ``tolerance`` seconds from ``now`` either way."""
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookAuthError(f"timestamp {timestamp:.0f} is outside the {tolerance:.0f} s window")


def unix_timestamp(value: str, name: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise WebhookAuthError(f"{name} must be unix seconds, got {value[:40]!r}")
    return int(value)


def load_json(body: bytes, *, strict: bool = True) -> dict[str, Any]:
    """Parse the body as a JSON object or raise :class:`WebhookPayloadError` (see :mod:`triage.intake.jsonbody`)."""
    return load_object(body, WebhookPayloadError, strict=strict, subject="body")


def obj(data: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    """``data[key]`` when it is an object, else :class:`WebhookPayloadError` naming the path."""
    value = data.get(key)
    if not isinstance(value, dict):
        raise WebhookPayloadError(f'"{where}{key}" is required and must be an object')
    return value


def object_or_empty(value: object) -> dict[str, Any]:
    """An optional object field: the object, or ``{}`` when it is absent or not an object."""
    return value if isinstance(value, dict) else {}


def ident(data: Mapping[str, Any], key: str, where: str = "") -> str:
    """An id field (non-empty string or integer) as a string, else :class:`WebhookPayloadError`."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise WebhookPayloadError(f'"{where}{key}" is required and must be a non-empty string or integer')
    return str(value).strip()


def optional_ident(data: Mapping[str, Any], key: str) -> str | None:
    """An id field (non-empty string or integer) as a string, or None when absent or of another type.

    >>> optional_ident({"account_id": 22129848}, "account_id"), optional_ident({}, "account_id")
    ('22129848', None)
    """
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        return None
    return str(value).strip()


def platform_time(value: object) -> datetime | None:
    """A payload's timestamp (unix seconds, or ISO-8601 with any number of fractional digits; naive means
    UTC) as an aware datetime; None for anything else: a bad date never refuses a webhook.

    >>> platform_time(1700000000).isoformat(), platform_time("2024-07-23T18:02:49.353123456Z").isoformat()
    ('2023-11-14T22:13:20+00:00', '2024-07-23T18:02:49.353123+00:00')
    >>> platform_time("soon"), platform_time(True)
    (None, None)
    """
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str) and value.strip():
            head, dot, rest = value.strip().partition(".")
            if dot:  # Python parses at most 6 fractional digits: trim the rest, keep the zone suffix
                digits = len(rest) - len(rest.lstrip("0123456789"))
                head = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
            moment = datetime.fromisoformat(head)
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def text_of(value: object) -> str:
    """A string field's stripped text; anything else (None, numbers, objects) is no text."""
    return value.strip() if isinstance(value, str) else ""


def join_text(subject: str, body: str) -> str:
    """Subject and body separated by a blank line; a subject the body already starts with is dropped.

    >>> join_text("Router reboots", "Router reboots every hour"), join_text("Hi", "")
    ('Router reboots every hour', 'Hi')
    """
    subject, body = subject.strip(), body.strip()
    if not body:
        return subject
    if not subject or body.startswith(subject):
        return body
    return f"{subject}\n\n{body}"


def customer_of(**fields: object) -> dict[str, Any] | None:
    """A customer dict of the given non-empty fields (ids as strings); None when none is set."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, str) and value.strip():
            out[key] = value.strip()
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = str(value)
    return out or None


def derived_id(prefix: str, body: bytes) -> str:
    """A deterministic delivery id for :func:`sign` helpers: ``prefix`` + 24 hex of sha256(body)."""
    return prefix + hashlib.sha256(body).hexdigest()[:24]
