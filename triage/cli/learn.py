"""``triage learn DATASET... [--from-reviews] [--since DATE]``: fit, measure out-of-fold, store a new version.

Data sets are read as ``triage evaluate`` reads them (a public set's name with ``--data DIR``, or a JSON
Lines file with labels); their rows become the stored training set the scheduled retraining uses.
Prints the new version's out-of-fold figures (``--json``: one JSON object). Exit status 0, or 2 for
what the user must fix first (an unknown name, a file that cannot be read, nothing to learn from).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from triage.evaluation.labels import load_named
from triage.evaluation.runners import training_rows
from triage.learning.fit import TrainingRow
from triage.learning.model import enum_fields
from triage.learning.retrain import learn

if TYPE_CHECKING:
    from triage.app import App

EXIT_FIX_SETUP = 2


class LearnError(Exception):
    """What the user must fix before ``triage learn`` can run."""


def parse_since(text: str) -> datetime:
    """``--since``: an ISO date (midnight UTC) or an ISO time with its zone.

    >>> parse_since("2026-11-01").isoformat(), parse_since("2026-11-01T08:00+08:00").isoformat()
    ('2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00')
    """
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LearnError(f"--since={text!r}: use an ISO date or time, e.g. 2026-11-01 or 2026-11-01T00:00Z") from None
    if when.tzinfo is None:
        if "T" in text or " " in text:
            raise LearnError(f"--since={text!r}: give a time zone, e.g. 2026-11-01T00:00+00:00")
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def dataset_rows(app: App, names: Sequence[str], data: Path | None, err: IO[str]) -> list[TrainingRow]:
    """The labelled rows of every named data set (a bad JSON Lines line is said and skipped)."""
    fields = list(enum_fields(app.schema.properties))
    rows: list[TrainingRow] = []
    for name, loaded in load_named(names, data or app.settings.evaluation.data, app.schema,
                                   lambda line: print(f"triage learn: {line}", file=err)):
        labelled = [row for row in training_rows(loaded.samples, fields, Path(name).name) if row.labels]
        if not labelled:
            raise LearnError(f"{name}: no row has a label of the schema's enum fields ({', '.join(fields)})")
        rows += labelled
    return rows


def learn_command(app: App, names: Sequence[str], *, data: Path | None = None, from_reviews: bool = False,
                  since: str | None = None, as_json: bool = False, out: IO[str] | None = None,
                  err: IO[str] | None = None) -> int:
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err

    def say(line: str) -> None:
        print(f"triage learn: {line}", file=err, flush=True)

    try:
        if not names and not from_reviews:
            raise LearnError("give a data set (a public set's name or a JSON Lines file) and/or --from-reviews")
        if since is not None and not from_reviews:
            raise LearnError("--since selects reviews: use it with --from-reviews")
        rows = dataset_rows(app, names, data, err)
        model = learn(app.sessions, app.schema, app.settings.learn, rows, app.clock.now(), from_reviews=from_reviews,
                      since=parse_since(since) if since else None, say=say)
    except (LearnError, ValueError) as exc:
        print(f"triage learn: {exc}", file=err)
        return EXIT_FIX_SETUP
    summary = model.summary()
    if as_json:
        print(json.dumps(summary, ensure_ascii=False), file=out)
        return 0
    sources = ", ".join(f"{name} {count}" for name, count in model.sources.items())
    print(f"stored learned model v{model.version}: {model.training_size} rows ({sources}), "
          f"{model.featurizer.width} features", file=out)
    for name, head in model.heads.items():
        figures = ("accuracy -, macro F1 -, ECE -" if head.accuracy is None else
                   f"accuracy {head.accuracy:.3f}, macro F1 {head.macro_f1 or 0:.3f}, ECE {head.ece or 0:.3f}")
        print(f"  {name}: {len(head.classes)} classes, {head.training_size} rows; out-of-fold ({model.folds} folds, "
              f"seed {model.seed}): {figures}", file=out)
    for note in model.notes:
        print(f"  note: {note}", file=out)
    return 0
