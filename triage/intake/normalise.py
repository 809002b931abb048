"""The one normalisation step at intake, for every source: what an adapter parsed, made storable.

Every platform's :class:`~triage.intake.platforms.InboundMessage` and every ``triage submit``
line goes through here after its parse and before it is stored:

- text (each message, the customer record, the raw payload) has NUL removed and lone surrogates
  replaced by U+FFFD (:func:`triage.text.repair_text`); which fields changed is kept, and the
  ticket records it as the flag ``text_repaired``;
- an id that holds a control character (or a lone surrogate), or is longer than its column, is
  refused with :class:`IntakeFieldError` (a 400 at the webhook, ``line N: ...`` for submit)
  naming the field as the sender knows it;
- intake keys built from ids (:func:`bounded_key`) never overflow their column: a key that would
  is hashed.

>>> from triage.conversation import Conversation
>>> from triage.intake.submission import Submission
>>> done = normalise_submission(Submission("shop", "A-1", Conversation.from_text("Wi-Fi\\x00 down")))
>>> done.value.conversation.customer_text(), done.repaired
('Wi-Fi down', ('messages[0].text',))
>>> normalise_submission(Submission("shop", "A\\n1", Conversation.from_text("hi")))
Traceback (most recent call last):
...
triage.intake.normalise.IntakeFieldError: "external_id" holds a control character (U+000A)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Column, String

from triage.conversation import Conversation, Message
from triage.errors import InputError
from triage.intake.platforms.base import IdFields, InboundMessage
from triage.intake.submission import Submission
from triage.store.models import Conversation as ConversationRow
from triage.store.models import IntakeKey
from triage.text import JSONValue, repair_strings, repair_text

T = TypeVar("T")


def _column_length(column: Column[Any]) -> int:
    kind = column.type
    assert isinstance(kind, String) and kind.length, f"{column} is not a bounded string column"
    return kind.length


#: The longest ``source`` a conversation row holds.
SOURCE_MAX_CHARS = _column_length(cast(Column[Any], ConversationRow.__table__.c.source))
#: The longest conversation id (``external_id``) a conversation row holds.
EXTERNAL_ID_MAX_CHARS = _column_length(cast(Column[Any], ConversationRow.__table__.c.external_id))
#: The longest intake key; a key built from longer ids is hashed (:func:`bounded_key`).
INTAKE_KEY_MAX_CHARS = _column_length(cast(Column[Any], IntakeKey.__table__.c.key))
#: The longest message, delivery or platform id taken in: the intake key column's length, so that
#: an id always fits where a person might look it up.
ID_MAX_CHARS = INTAKE_KEY_MAX_CHARS
#: Unicode categories no id may hold, with what to call them: controls (NUL, line breaks, tab, DEL, C1)
#: and lone surrogates (no UTF-8 encoding exists for them).
REFUSED_ID_CATEGORIES = {"Cc": "a control character", "Cs": "a lone surrogate"}
HASHED_KEY_MARK = "sha256"


class IntakeFieldError(InputError):
    """An id that cannot be stored as it is (too long, or a control character); the message names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field} {reason}")
        self.field = field


@dataclass(frozen=True)
class Normalised(Generic[T]):
    """``value`` made storable, and the fields whose text had to be repaired (empty when none)."""

    value: T
    repaired: tuple[str, ...] = ()


def check_id(value: str, field: str, max_chars: int = ID_MAX_CHARS) -> str:
    """``value`` when it can be stored as an id, else :class:`IntakeFieldError` naming ``field``.

    >>> check_id("T-1001", '"external_id"')
    'T-1001'
    >>> check_id("x" * 300, "the webhook-id header")
    Traceback (most recent call last):
    ...
    triage.intake.normalise.IntakeFieldError: the webhook-id header is 300 characters long; at most 255 are taken
    """
    if len(value) > max_chars:
        raise IntakeFieldError(field, f"is {len(value)} characters long; at most {max_chars} are taken")
    for char in value:
        kind = REFUSED_ID_CATEGORIES.get(unicodedata.category(char))
        if kind:
            raise IntakeFieldError(field, f"holds {kind} (U+{ord(char):04X})")
    return value


def bounded_key(kind: str, *parts: str) -> str:
    """The intake key ``kind:part:part``, or ``kind:sha256:<hex>`` of the parts when that would not fit.

    >>> bounded_key("message", "35436", "m1")
    'message:35436:m1'
    >>> key = bounded_key("message", "x" * 250, "m1")
    >>> key[:15], len(key)
    ('message:sha256:', 79)
    """
    key = ":".join((kind, *parts))
    if len(key) <= INTAKE_KEY_MAX_CHARS:
        return key
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind}:{HASHED_KEY_MARK}:{digest}"


class _Repairs:
    """Collects the names of the fields whose text had to change."""

    def __init__(self) -> None:
        self.fields: list[str] = []

    def conversation(self, conversation: Conversation) -> Conversation:
        messages = []
        for i, message in enumerate(conversation.messages):
            fixed = repair_text(message.text)
            if fixed.repaired:
                self.fields.append(f"messages[{i}].text")
            messages.append(Message(message.role, fixed.text))
        return dataclasses.replace(conversation, messages=tuple(messages))

    def record(self, value: Mapping[str, Any] | None, field: str) -> dict[str, Any] | None:
        if value is None:
            return None
        fixed = repair_strings(cast(JSONValue, dict(value)))
        if fixed.repaired:
            self.fields.append(field)
        return cast(dict[str, Any], fixed.value)


def normalise_inbound(message: InboundMessage, names: IdFields) -> Normalised[InboundMessage]:
    """A platform's parsed message made storable; ``names`` says where the platform's ids came from."""
    check_id(message.conversation_key, names.conversation_key, EXTERNAL_ID_MAX_CHARS)
    for value, field in ((message.delivery_id, names.delivery_id), (message.message_key, names.message_key),
                         (message.platform_ticket_id, names.platform_ticket_id),
                         (message.platform_account_id, names.platform_account_id)):
        if value is not None:  # the delivery id first: a message key may be a copy of it
            check_id(value, field)
    repairs = _Repairs()
    conversation = repairs.conversation(message.conversation)
    customer = repairs.record(message.customer, "customer")
    raw = repairs.record(message.raw, "raw payload") or {}
    fixed = dataclasses.replace(message, conversation=conversation, customer=customer, raw=raw)
    return Normalised(fixed, tuple(repairs.fields))


def normalise_submission(submission: Submission) -> Normalised[Submission]:
    """A parsed ``triage submit`` line made storable."""
    check_id(submission.source, '"source"', SOURCE_MAX_CHARS)
    check_id(submission.external_id, '"external_id"', EXTERNAL_ID_MAX_CHARS)
    repairs = _Repairs()
    conversation = repairs.conversation(submission.conversation)
    customer = repairs.record(submission.customer, "customer")
    fixed = dataclasses.replace(submission, conversation=conversation, customer=customer)
    return Normalised(fixed, tuple(repairs.fields))
