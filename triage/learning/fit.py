"""Fitting with scikit-learn: a featurizer, and per field a calibrated linear model; out-of-fold figures.

:func:`fit_model` fits the featurizer on every text, then, per enum field, scikit-learn's
``CalibratedClassifierCV(LinearSVC(C), method="temperature", ensemble=False)`` on the rows that have
that field's label: the SVM is fitted on all of them, its temperature on out-of-fold decisions of
an inner seeded split. The numbers are taken out into a :class:`~triage.learning.model.LearnedModel`;
nothing fitted is kept.

:func:`folds` is the seeded, stratified K-fold split every held-out figure uses (``triage learn``'s
report, ``triage evaluate --split test`` and the retraining job's comparison): each fold fits a
throw-away model on the other folds and predicts its own rows.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import version as package_version

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from triage.evaluation.scoring import FieldReport, expected_calibration_error
from triage.learning.features import FeatureSettings, fit_featurizer, text_hash
from triage.learning.model import FieldHead, LearnedModel, Prediction
from triage.settings import LearnSettings

#: The stratum of rows without a label for the field the split is stratified on.
UNLABELLED = "\0unlabelled"
#: Inner folds of the temperature's calibration (fewer when a class has fewer rows).
CALIBRATION_FOLDS = 5


@dataclass(frozen=True)
class TrainingRow:
    """One labelled text: what the model reads and its gold values (enum fields only)."""

    text: str
    labels: Mapping[str, str]
    #: Where it came from: a data set's name, or ``reviews``.
    source: str = ""
    key: str = ""


@dataclass
class FitReport:
    """A fitted model, and out-of-fold predictions when it was cross-validated."""

    model: LearnedModel
    #: Per field: row index -> out-of-fold prediction.
    held_out: dict[str, dict[int, Prediction]] = field(default_factory=dict)


def feature_settings(settings: LearnSettings) -> FeatureSettings:
    return FeatureSettings(word_ngrams=settings.word_ngrams, char_ngrams=settings.char_ngrams,
                           min_df=settings.min_df, max_features=settings.max_features)


def trainable(rows: Sequence[TrainingRow], name: str, values: Sequence[str],
              min_class_rows: int) -> tuple[list[int], list[str]]:
    """The rows a field's model learns from (labelled with a value the schema has, in a class with at least
    ``min_class_rows`` rows), and a note for each class left out."""
    counts = Counter(row.labels[name] for row in rows if name in row.labels)
    notes = [f"{name}: {value!r} is not a value of the schema's {name} ({count} rows left out)"
             for value, count in counts.items() if value not in values]
    notes += [f"{name}: {value!r} has {count} rows, fewer than learn.min_class_rows={min_class_rows}; "
              "left out (the rules decide it)" for value, count in counts.items()
              if value in values and count < min_class_rows]
    kept = {value for value, count in counts.items() if value in values and count >= min_class_rows}
    return [i for i, row in enumerate(rows) if row.labels.get(name) in kept], notes


def _fit_head(name: str, features: object, labels: Sequence[str], settings: LearnSettings) -> FieldHead:
    smallest = min(Counter(labels).values())
    inner = StratifiedKFold(min(CALIBRATION_FOLDS, smallest), shuffle=True, random_state=settings.seed)
    calibrated = CalibratedClassifierCV(LinearSVC(C=settings.c, random_state=settings.seed), method="temperature",
                                        cv=inner, ensemble=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # scikit-learn's note on small classes
        calibrated.fit(features, np.asarray(labels))
    fitted = calibrated.calibrated_classifiers_[0]
    svm = fitted.estimator
    return FieldHead(name, tuple(str(c) for c in calibrated.classes_), np.asarray(svm.coef_, dtype=np.float64),
                     np.asarray(svm.intercept_, dtype=np.float64), float(fitted.calibrators[0].beta_),
                     training_size=len(labels))


def libraries() -> dict[str, str]:
    return {name: package_version(name) for name in ("scikit-learn", "numpy", "scipy")}


def fit_model(rows: Sequence[TrainingRow], fields: Mapping[str, Sequence[str]], settings: LearnSettings, *,
              schema_version: str | None = None) -> LearnedModel:
    """Fit on every row: the featurizer on all texts, each field on its labelled rows (:func:`trainable`)."""
    if not rows:
        raise ValueError("no labelled rows to learn from")
    featurizer = fit_featurizer([row.text for row in rows], feature_settings(settings))
    features = featurizer.transform([row.text for row in rows])
    heads: dict[str, FieldHead] = {}
    notes: list[str] = []
    for name, values in fields.items():
        indexes, left_out = trainable(rows, name, values, settings.min_class_rows)
        notes += left_out
        labels = [rows[i].labels[name] for i in indexes]
        if len(set(labels)) < 2:
            if any(name in row.labels for row in rows):
                notes.append(f"{name}: fewer than two classes with enough rows; not learned (the rules decide it)")
            continue
        heads[name] = _fit_head(name, features[indexes], labels, settings)
    if not heads:
        raise ValueError("no field could be learned: " + ("; ".join(notes) or "the rows have no labels "
                         f"for the schema's enum fields ({', '.join(fields)})"))
    return LearnedModel(featurizer, heads, len(rows), frozenset(text_hash(row.text) for row in rows),
                        dict(Counter(row.source for row in rows)), schema_version=schema_version,
                        folds=settings.folds, seed=settings.seed, library=libraries(), notes=notes)


def strata(rows: Sequence[TrainingRow], fields: Sequence[str]) -> list[str]:
    """What the split is stratified on: the first field (in ``fields`` order) most rows are labelled with.

    >>> strata([TrainingRow("a", {"x": "1"}), TrainingRow("b", {})], ["x"])
    ['1', '\\x00unlabelled']
    """
    counts = Counter(name for row in rows for name in row.labels if name in fields)
    primary = max(fields, key=lambda name: counts[name]) if counts else None
    return [row.labels.get(primary, UNLABELLED) if primary else UNLABELLED for row in rows]


def folds(rows: Sequence[TrainingRow], fields: Sequence[str], k: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """The seeded, stratified ``k``-fold split of ``rows``: (training rows, held-out rows) per fold.

    A stratum with fewer than ``k`` rows is spread as far as it goes (scikit-learn's warning is silenced).
    """
    labels = strata(rows, fields)
    if len(rows) < k:
        raise ValueError(f"{len(rows)} rows cannot be split into {k} folds; give at least {k}")
    splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        return [(list(map(int, train)), list(map(int, test)))
                for train, test in splitter.split(np.zeros(len(rows)), labels)]


def fold_models(rows: Sequence[TrainingRow], fields: Mapping[str, Sequence[str]], settings: LearnSettings,
                split: Sequence[tuple[list[int], list[int]]] | None = None,
                ) -> Iterator[tuple[list[int], LearnedModel]]:
    """Per fold: its held-out rows and a throw-away model fitted on the other folds."""
    for train, test in split if split is not None else folds(rows, list(fields), settings.folds, settings.seed):
        yield test, fit_model([rows[i] for i in train], fields, settings)


def cross_validate(rows: Sequence[TrainingRow], fields: Mapping[str, Sequence[str]],
                   settings: LearnSettings) -> dict[str, dict[int, Prediction]]:
    """Out-of-fold predictions per field, for every row labelled with it."""
    held_out: dict[str, dict[int, Prediction]] = {name: {} for name in fields}
    for test, model in fold_models(rows, fields, settings):
        predictions = model.predict_texts([rows[i].text for i in test])
        for index, predicted in zip(test, predictions, strict=True):
            for name, prediction in predicted.items():
                if name in rows[index].labels:
                    held_out[name][index] = prediction
    return held_out


def with_held_out_figures(model: LearnedModel, rows: Sequence[TrainingRow],
                          held_out: Mapping[str, Mapping[int, Prediction]]) -> LearnedModel:
    """``model`` with each head's out-of-fold accuracy, macro F1 and ECE (over the rows it could learn)."""
    heads = {}
    for name, head in model.heads.items():
        pairs = [(rows[i].labels[name], p) for i, p in held_out.get(name, {}).items()
                 if rows[i].labels.get(name) in head.classes]
        confusion: dict[str, dict[str, int]] = {}
        for gold, prediction in pairs:
            row = confusion.setdefault(gold, {})
            row[prediction.value] = row.get(prediction.value, 0) + 1
        report = FieldReport(name, confusion, head.classes)
        ece = expected_calibration_error([p.probability for _, p in pairs],
                                         [gold == p.value for gold, p in pairs]) if pairs else None
        heads[name] = replace(head, accuracy=report.accuracy, macro_f1=report.macro_f1, ece=ece)
    model.heads = heads
    return model
