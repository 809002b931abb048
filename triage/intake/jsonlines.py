"""``triage submit``'s input: JSON Lines, every line decoded, parsed, normalised and stored on its own.

A line's bytes are decoded alone, so invalid UTF-8 costs only its line; each line is stored in a
transaction of its own, so a line the database refuses costs only that line. Whatever goes wrong
with one line is a :class:`Refused` with its number and the reason, and the next line goes on:

>>> [parse_line(b'{"source": "shop", "external_id": "A-1", "text": "hi"}').value.external_id]
['A-1']
>>> parse_line(b'{"source": "shop", "external_id": "A-1", "text": "hi\\xff"}')
Traceback (most recent call last):
...
triage.intake.submission.SubmissionError: not UTF-8: invalid start byte at byte 52
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from triage.errors import TriageError
from triage.intake.jsonbody import load_object
from triage.intake.normalise import Normalised, normalise_submission
from triage.intake.receive import Received
from triage.intake.submission import Submission, SubmissionError, accept, parse_submission


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


def submit_lines(sessions: sessionmaker[Session], lines: Iterable[bytes], enqueue: Callable[[int], None],
                 now: Callable[[], datetime]) -> Iterator[Stored | Refused]:
    """Store every non-blank line of ``lines`` (numbered from 1) on its own and say how each went."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            normalised = parse_line(raw)
            received = accept(sessions, normalised, enqueue, now())
        except TriageError as exc:  # the line itself is wrong: the reason names the field
            yield Refused(number, str(exc))
        except Exception as exc:  # whatever else one line meets costs that line only, never the rest of the file
            yield Refused(number, _reason(exc))
        else:
            yield Stored(number, normalised.value.external_id, received)
