"""``triage submit``'s input: JSON Lines, every line decoded, parsed, normalised and stored on its own.

A line's bytes are decoded alone, so invalid UTF-8 costs only its line. Lines are stored in chunks
(``intake.submit_chunk_lines``): one transaction and one broker connection per chunk
(:func:`triage.intake.receive.submit_chunk`), and a line the database refuses costs only that line.
Whatever goes wrong with one line is a :class:`Refused` with its number and the reason, and the
next line goes on:

>>> [parse_line(b'{"source": "shop", "external_id": "A-1", "text": "hi"}').value.external_id]
['A-1']
>>> parse_line(b'{"source": "shop", "external_id": "A-1", "text": "hi\\xff"}')
Traceback (most recent call last):
...
triage.intake.submission.SubmissionError: not UTF-8: invalid start byte at byte 52
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from triage.errors import TriageError
from triage.intake.jsonbody import load_object
from triage.intake.normalise import Normalised, normalise_submission
from triage.intake.receive import Received, submit_chunk
from triage.intake.submission import Submission, SubmissionError, new_conversation, parse_submission


@dataclass(frozen=True)
class Stored:
    """Line ``number`` is stored (or was already: ``received.duplicate``)."""

    number: int
    external_id: str
    received: Received


@dataclass(frozen=True)
class Refused:
    """Line ``number`` was not stored, for ``reason``."""

    number: int
    reason: str


def parse_line(raw: bytes) -> Normalised[Submission]:
    """One line's bytes as a normalised submission, else :class:`SubmissionError` saying why."""
    return normalise_submission(parse_submission(load_object(raw, SubmissionError)))


def _reason(exc: Exception) -> str:
    """What to tell the user about a line that failed in an unexpected place (the database's own words)."""
    if isinstance(exc, DBAPIError):
        first_line = str(exc.orig).strip().splitlines()[:1]
        return f"the database refused it: {first_line[0] if first_line else type(exc.orig).__name__}"
    return f"{type(exc).__name__}: {exc}"


#: A line read and parsed, waiting for its chunk to be stored, or already refused.
_Pending = tuple[int, Normalised[Submission] | Refused]


def submit_lines(sessions: sessionmaker[Session], lines: Iterable[bytes],
                 enqueue: Callable[[Sequence[int]], None], now: Callable[[], datetime],
                 chunk_lines: int) -> Iterator[Stored | Refused]:
    """Store every non-blank line of ``lines`` (numbered from 1), ``chunk_lines`` parsed lines per transaction,
    enqueue each chunk's new tickets after its commit, and say how each line went, in order."""
    pending: list[_Pending] = []
    parsed = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            pending.append((number, parse_line(raw)))
            parsed += 1
        except TriageError as exc:  # the line itself is wrong: the reason names the field
            pending.append((number, Refused(number, str(exc))))
        except Exception as exc:  # whatever else one line meets costs that line only, never the rest of the file
            pending.append((number, Refused(number, _reason(exc))))
        if parsed >= chunk_lines:
            yield from _store(sessions, pending, enqueue, now())
            pending, parsed = [], 0
    yield from _store(sessions, pending, enqueue, now())


def _store(sessions: sessionmaker[Session], pending: Sequence[_Pending], enqueue: Callable[[Sequence[int]], None],
           now: datetime) -> list[Stored | Refused]:
    """Store one chunk's parsed lines, then publish its new tickets."""
    items = [new_conversation(entry, now) for _, entry in pending if not isinstance(entry, Refused)]
    try:
        stored: Iterator[Received | Exception] = iter(submit_chunk(sessions, items) if items else [])
    except Exception as exc:  # the database is down: every line of the chunk says so, the next chunk tries again
        stored = iter([exc] * len(items))
    outcomes: list[Stored | Refused] = []
    for number, entry in pending:
        if isinstance(entry, Refused):
            outcomes.append(entry)
            continue
        received = next(stored)
        outcomes.append(Refused(number, _reason(received)) if isinstance(received, Exception)
                        else Stored(number, entry.value.external_id, received))
    enqueue([o.received.ticket_id for o in outcomes if isinstance(o, Stored) and o.received.enqueue])
    return outcomes
