"""The batch calls table: a batch call's raw output is stored once, before its items' attempts point to it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from triage.store.models import BatchCall as BatchCallRow

if TYPE_CHECKING:
    from triage.extraction.batch_call import BatchCall


def store_call(sessions: sessionmaker[Session], call: BatchCall, now: datetime) -> int:
    """Store ``call`` (one short transaction); its id, for each item's attempt."""
    with sessions.begin() as session:
        batch_id: int = session.execute(
            insert(BatchCallRow).values(model=call.model, size=call.size, raw_output=call.raw_output,
                                        finish_reason=call.finish_reason, prompt_tokens=call.prompt_tokens,
                                        completion_tokens=call.completion_tokens,
                                        reasoning_tokens=call.reasoning_tokens, latency_ms=call.latency_ms,
                                        max_completion_tokens=call.max_completion_tokens, created_at=now)
            .returning(BatchCallRow.id)
        ).scalar_one()
    return batch_id
