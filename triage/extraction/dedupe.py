"""De-duplication keys: the same conversation again reuses an earlier LLM extraction, with no call.

The key of a conversation is a hash of what the model would read, normalised: PII placeholders
applied (:func:`triage.extraction.redact.redact_conversation`, as ``[privacy]`` says), whitespace
runs folded to one space, case folded, one ``role: text`` line per message; together with the
schema version and the prompt version, so a new schema or prompt never reuses an old answer.
Finding the earlier ticket is the store's (:func:`triage.store.dedupe.find_earlier`); the task
puts the two together (:func:`triage.worker.runs.dedupe_lookup`).

>>> from triage.settings import PrivacySettings
>>> normalise(Conversation.from_text("  My ROUTER\\n is   broken, mail me at Li@Example.com "), PrivacySettings())
'customer: my router is broken, mail me at [email]'
>>> conversation_key(Conversation.from_text("hi"), PrivacySettings(), "s1", "p1") == \\
...     conversation_key(Conversation.from_text(" HI "), PrivacySettings(), "s1", "p1")
True
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from triage.conversation import Conversation
from triage.extraction.redact import redact_conversation
from triage.extraction.types import ExtractionResult
from triage.settings import PrivacySettings

if TYPE_CHECKING:
    from triage.extraction.extractor import LLMExtractor

#: The extractor recorded on a ticket that reused another one's extraction.
DEDUPE_EXTRACTOR: Final = "dedupe"

_WHITESPACE = re.compile(r"\s+")
_Outcome = TypeVar("_Outcome")


def normalise(conversation: Conversation, privacy: PrivacySettings) -> str:
    """The text the key hashes: PII placeholders applied, whitespace and case folded, ``role: text`` per line."""
    redacted = redact_conversation(conversation, privacy)
    return "\n".join(f"{m.role}: {_WHITESPACE.sub(' ', m.text).strip().casefold()}" for m in redacted.messages)


def conversation_key(conversation: Conversation, privacy: PrivacySettings, schema_version: str,
                     prompt_version: str) -> str:
    """The conversation's de-duplication key: 64 hex digits of SHA-256 over the versions and the normalised text.

    >>> a = Conversation.from_text("hi")
    >>> conversation_key(a, PrivacySettings(), "s1", "p1") == conversation_key(a, PrivacySettings(), "s1", "p2")
    False
    """
    material = json.dumps([schema_version, prompt_version, normalise(conversation, privacy)], ensure_ascii=False)
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class Lookup:
    """A conversation's ``key``, and the result reusing an earlier extraction (``None``: extract it)."""

    key: str
    reused: ExtractionResult | None


def extractor_key(extractor: LLMExtractor, conversation: Conversation) -> str:
    """``conversation``'s key for what ``extractor`` would send (its privacy settings, schema and prompt)."""
    return conversation_key(conversation, extractor.privacy, extractor.schema.version, extractor.prompt.version)


def reuse(extractor: LLMExtractor, conversation: Conversation, key: str, source_ticket_id: int,
          fields: dict[str, Any], model: str | None) -> ExtractionResult:
    """Ticket ``source_ticket_id``'s extraction (``fields``, read by ``model``) as ``conversation``'s result:
    no attempt, and what would be sent scanned for injection as usual."""
    outgoing = extractor.prepare(conversation)
    return ExtractionResult(extractor=DEDUPE_EXTRACTOR, ticket=dict(fields), model=model,
                            schema_version=extractor.schema.version, prompt_version=extractor.prompt.version,
                            trimmed=outgoing.trimmed, injection=extractor.detector.scan(outgoing.conversation),
                            dedupe_key=key, dedupe_of=source_ticket_id)


def keyed(outcome: _Outcome, key: str) -> _Outcome:
    """``outcome`` with ``key`` recorded when it is a result (stored on the ticket, for later lookups)."""
    if isinstance(outcome, ExtractionResult):
        outcome.dedupe_key = key
    return outcome
