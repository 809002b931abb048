"""The LLM evaluation's answer cache: each answer stored in the database as soon as it is in.

An answer is keyed by the conversation (:func:`~triage.evaluation.labels.conversation_hash`), the schema
version, the prompt version and the model asked, so a rerun after Ctrl-C or a crash (or on another
data set holding the same conversation) asks only what is missing, and a new prompt or schema asks
again. An API error is not an answer: it is asked again next time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from triage.extraction.types import Attempt, ExtractionResult
from triage.states.tickets import ExtractionFailure
from triage.store.models import Base, utcnow

#: Conversation hashes looked up per query.
LOOKUP_CHUNK = 500


class EvaluationAnswer(Base):
    """One conversation's extraction by the LLM, as the evaluation got it."""

    __tablename__ = "evaluation_answers"
    __table_args__ = (UniqueConstraint("conversation_hash", "schema_version", "prompt_version", "model",
                                       name="uq_evaluation_answers_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_hash: Mapped[str] = mapped_column(String(64))
    schema_version: Mapped[str] = mapped_column(String(32))
    prompt_version: Mapped[str] = mapped_column(String(32))
    #: The model asked (``TRIAGE_MODEL``); ``answered_by`` the one that answered last.
    model: Mapped[str] = mapped_column(String(64))
    answered_by: Mapped[str | None] = mapped_column(String(64))
    #: The validated ticket, or None with the failure reason and detail.
    ticket: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    failure_detail: Mapped[str | None] = mapped_column(Text)
    #: Every call's model and tokens: ``[[model, prompt_tokens, completion_tokens, outcome], ...]``.
    usage: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)




@dataclass(frozen=True)
class CacheKey:
    """What an answer is looked up by, besides the conversation."""

    schema_version: str
    prompt_version: str
    model: str


def to_result(row: EvaluationAnswer) -> ExtractionResult:
    """A cached answer as the result the extractor gave."""
    attempts = [Attempt(n=i, model=str(model), outcome=outcome, prompt_tokens=prompt, completion_tokens=completion)
                for i, (model, prompt, completion, outcome) in enumerate(row.usage, 1)]
    reason = ExtractionFailure(row.failure_reason) if row.failure_reason else None
    return ExtractionResult(extractor="llm", ticket=row.ticket, attempts=attempts, failure_reason=reason,
                            failure_detail=row.failure_detail, model=row.answered_by,
                            schema_version=row.schema_version, prompt_version=row.prompt_version)


def cached(sessions: sessionmaker[Session], key: CacheKey, hashes: Iterable[str]) -> dict[str, ExtractionResult]:
    """The cached answers among ``hashes``, by hash."""
    wanted = sorted(set(hashes))
    found: dict[str, ExtractionResult] = {}
    with sessions() as session:
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            query = select(EvaluationAnswer).where(
                EvaluationAnswer.schema_version == key.schema_version,
                EvaluationAnswer.prompt_version == key.prompt_version, EvaluationAnswer.model == key.model,
                EvaluationAnswer.conversation_hash.in_(wanted[start:start + LOOKUP_CHUNK]))
            found.update({row.conversation_hash: to_result(row) for row in session.scalars(query)})
    return found


def store(sessions: sessionmaker[Session], key: CacheKey, answers: Sequence[tuple[str, ExtractionResult]],
          now: datetime) -> None:
    """Store answers, each in its own transaction: an answer another run stored meanwhile is kept as it is."""
    for conversation, result in answers:
        row = EvaluationAnswer(
            conversation_hash=conversation, schema_version=key.schema_version, prompt_version=key.prompt_version,
            model=key.model, answered_by=result.model, ticket=result.ticket,
            failure_reason=result.failure_reason.value if result.failure_reason else None,
            failure_detail=result.failure_detail,
            usage=[[a.model, a.prompt_tokens or 0, a.completion_tokens or 0, a.outcome] for a in result.attempts],
            created_at=now)
        try:
            with sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            continue


class AnswerStore:
    """The cache as the evaluation uses it: one key (schema, prompt version, model), answers in and out."""

    def __init__(self, sessions: sessionmaker[Session], key: CacheKey, now: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.key = key
        self.now = now

    def cached(self, hashes: Iterable[str]) -> dict[str, ExtractionResult]:
        return cached(self.sessions, self.key, hashes)

    def put(self, answers: Sequence[tuple[str, ExtractionResult]]) -> None:
        store(self.sessions, self.key, answers, self.now())
