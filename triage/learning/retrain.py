"""Training runs: ``triage learn``'s fit-and-store, and the scheduled retraining on the desk's reviews.

:func:`learn` fits on the rows given (and the reviews, with ``from_reviews``), measures itself on its
own seeded K-fold split, and stores the model as the newest version with the rows as the stored
training set.

:func:`retrain` is the scheduled job (``jobs.learn_interval_hours``): once ``learn.min_new_labels``
reviews were made after the newest version, it fits the stored training set plus every review and
stores the result only when it is at least as good as the version in use *on the same held-out folds*:
both recipes are cross-validated on the new training set's folds, the old one fitted on what the
version in use was trained on (the texts of each training part it knew, by hash), the new one on the
whole training part; the new version is stored when its held-out predictions are right at least as
often, over every learned field together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from triage.learning.features import text_hash
from triage.learning.fit import TrainingRow, cross_validate, fit_model, folds, with_held_out_figures
from triage.learning.model import LearnedModel, Prediction, enum_fields
from triage.learning.reviews import count_reviews, last_review, merged, review_labels
from triage.learning.store import load_version, save_version, training_set
from triage.schema import TicketSchema
from triage.settings import LearnSettings

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def learn(sessions: sessionmaker[Session], schema: TicketSchema, settings: LearnSettings, rows: Sequence[TrainingRow],
          now: datetime, *, from_reviews: bool = False, since: datetime | None = None, say: Say = _quiet,
          ) -> LearnedModel:
    """Fit on ``rows`` (plus the reviews made since ``since``, with ``from_reviews``), report the out-of-fold
    figures, store it as the newest version, ``rows`` as the stored training set."""
    fields = enum_fields(schema.properties)
    reviews = review_labels(sessions, list(fields), since=since) if from_reviews else None
    training = merged(rows, reviews.rows) if reviews is not None else list(rows)
    if reviews is not None:
        say(f"{len(reviews.rows)} labelled rows from the desk's reviews")
    if not training:
        raise ValueError("no labelled rows to learn from (give a data set with labels, or --from-reviews once the "
                         "desk has reviewed tickets)")
    say(f"cross-validating on {len(training)} rows ({settings.folds} seeded stratified folds)")
    held_out = cross_validate(training, fields, settings)
    say("fitting on every row")
    model = with_held_out_figures(fit_model(training, fields, settings, schema_version=schema.version), training,
                                  held_out)
    model.reviews_through = reviews.through if reviews is not None else last_review(sessions)
    save_version(sessions, model, now, keep=settings.keep_versions, training_set=rows)
    return model


@dataclass(frozen=True)
class Comparison:
    """Held-out right answers of the version in use's recipe and of the new one, on the same folds."""

    old: int
    new: int
    judged: int
    #: The new recipe's held-out predictions (its out-of-fold figures once stored).
    held_out: dict[str, dict[int, Prediction]] = field(default_factory=dict)

    @property
    def new_is_as_good(self) -> bool:
        return self.new >= self.old


def _right(model: LearnedModel | None, rows: Sequence[TrainingRow], test: Sequence[int],
           held_out: dict[str, dict[int, Prediction]] | None = None) -> int:
    """How many held-out labels ``model`` predicts right (recording its predictions in ``held_out``)."""
    if model is None:
        return 0
    right = 0
    for i, predicted in zip(test, model.predict_texts([rows[i].text for i in test]), strict=True):
        for name, prediction in predicted.items():
            if name in rows[i].labels:
                right += prediction.value == rows[i].labels[name]
                if held_out is not None:
                    held_out.setdefault(name, {})[i] = prediction
    return right


def _fit_or_none(rows: Sequence[TrainingRow], fields: Mapping[str, Sequence[str]],
                 settings: LearnSettings) -> LearnedModel | None:
    try:
        return fit_model(rows, fields, settings)
    except ValueError:  # too few rows (or classes) to fit: this candidate gets nothing right
        return None


def compare(rows: Sequence[TrainingRow], known: frozenset[bytes], fields: Mapping[str, Sequence[str]],
            settings: LearnSettings) -> Comparison:
    """Both recipes on the same seeded folds of ``rows``: the old fitted on the training part's texts in
    ``known`` (what the version in use was trained on), the new on the whole training part."""
    old = new = judged = 0
    held_out: dict[str, dict[int, Prediction]] = {}
    for train, test in folds(rows, list(fields), settings.folds, settings.seed):
        judged += sum(name in rows[i].labels for i in test for name in fields)
        new += _right(_fit_or_none([rows[i] for i in train], fields, settings), rows, test, held_out)
        old += _right(_fit_or_none([rows[i] for i in train if text_hash(rows[i].text) in known], fields, settings),
                      rows, test)
    return Comparison(old, new, judged, held_out)


def retrain(sessions: sessionmaker[Session], schema: TicketSchema, settings: LearnSettings, now: datetime) -> str:
    """The scheduled retraining; a one-line summary of what it did."""
    current = load_version(sessions)
    after = current.reviews_through if current is not None else 0
    new_reviews = count_reviews(sessions, after)
    where = f"since v{current.version}" if current is not None else "(no model stored yet)"
    if new_reviews < settings.min_new_labels:
        return f"learn: {new_reviews} new reviews {where}, retraining at {settings.min_new_labels}"
    fields = enum_fields(schema.properties)
    reviews = review_labels(sessions, list(fields))
    rows = merged(training_set(sessions), reviews.rows)
    if len(rows) < settings.folds:
        return f"learn: {len(rows)} labelled rows, too few for {settings.folds} folds"
    held_out = None
    if current is not None:
        verdict = compare(rows, current.training_hashes, fields, settings)
        held_out = verdict.held_out
        if not verdict.new_is_as_good:
            return (f"learn: kept v{current.version}: on the same held-out folds the new one was right "
                    f"{verdict.new}/{verdict.judged} times, the one in use {verdict.old}/{verdict.judged}")
    try:
        model = fit_model(rows, fields, settings, schema_version=schema.version)
    except ValueError as exc:
        return f"learn: not retrained: {exc}"
    model = with_held_out_figures(model, rows, held_out if held_out is not None else cross_validate(rows, fields,
                                                                                                       settings))
    model.reviews_through = reviews.through
    version = save_version(sessions, model, now, keep=settings.keep_versions)
    figures = ", ".join(f"{name} {head.accuracy:.3f}" for name, head in model.heads.items()
                        if head.accuracy is not None)
    return f"learn: stored v{version} ({len(rows)} rows, {len(reviews.rows)} from reviews; out-of-fold {figures})"
