"""Model versions and the training set in the database: numbers and text, never a pickle.

A version is a row of ``learned_models`` (the featurizer's settings and terms as JSON, its idf weights,
the training texts' hashes, sizes, sources, date, libraries) and one row per field in
``learned_model_fields`` (classes, coefficients, intercepts, the calibration's inverse temperature,
its out-of-fold accuracy). Arrays are little-endian float64 bytes with their shape beside them: data
any numpy reads, not code (a pickle runs code when loaded and breaks across library versions).

``training_examples`` is the training set the last ``triage learn`` was given, which the scheduled
retraining fits again together with the desk's reviews.

Workers ask :func:`latest_version` (one indexed read) and load a version only when it is newer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, Mapped, Session, mapped_column, relationship, sessionmaker

from triage.learning.features import HASH_BYTES, FeaturePart, Featurizer, FloatArray
from triage.learning.fit import TrainingRow
from triage.learning.model import FieldHead, LearnedModel
from triage.store.models import Base, utcnow

FLOAT = np.dtype("<f8")


class LearnedModelRow(Base):
    """One model version (its id is the version number)."""

    __tablename__ = "learned_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    schema_version: Mapped[str | None] = mapped_column(String(32))
    training_size: Mapped[int] = mapped_column(Integer)
    #: data set name (or ``reviews``) -> rows
    sources: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The last review event learned from; later reviews are the retraining job's new labels.
    reviews_through: Mapped[int] = mapped_column(Integer, default=0)
    folds: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    #: scikit-learn, numpy and scipy versions it was fitted with.
    library: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The featurizer: per part, scikit-learn's parameters and the terms in column order.
    featurizer: Mapped[list[Any]] = mapped_column(JSON)
    #: The parts' idf weights, one after the other (float64, little-endian).
    idf: Mapped[bytes] = mapped_column(LargeBinary)
    #: The training texts' hashes (``HASH_BYTES`` each, concatenated).
    training_hashes: Mapped[bytes] = mapped_column(LargeBinary)
    notes: Mapped[list[Any]] = mapped_column(JSON, default=list)

    heads: Mapped[list[LearnedFieldRow]] = relationship(back_populates="model", cascade="all, delete-orphan",
                                                        order_by="LearnedFieldRow.id")


class LearnedFieldRow(Base):
    """One field's linear model and calibration within a version."""

    __tablename__ = "learned_model_fields"
    __table_args__ = (UniqueConstraint("model_id", "field"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("learned_models.id", ondelete="CASCADE"), index=True)
    field: Mapped[str] = mapped_column(String(64))
    classes: Mapped[list[Any]] = mapped_column(JSON)
    #: Rows x features, float64 little-endian, row-major (a two-class model has one row).
    coef: Mapped[bytes] = mapped_column(LargeBinary)
    coef_rows: Mapped[int] = mapped_column(Integer)
    intercept: Mapped[bytes] = mapped_column(LargeBinary)
    #: The calibration: probabilities are softmax(beta * logits).
    beta: Mapped[float] = mapped_column(Float)
    training_size: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float | None] = mapped_column(Float)
    macro_f1: Mapped[float | None] = mapped_column(Float)
    ece: Mapped[float | None] = mapped_column(Float)

    model: Mapped[LearnedModelRow] = relationship(back_populates="heads")


class TrainingExampleRow(Base):
    """A row of the stored training set (what the last ``triage learn`` was given)."""

    __tablename__ = "training_examples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def _bytes(array: FloatArray) -> bytes:
    return np.ascontiguousarray(array, dtype=FLOAT).tobytes()


def _array(data: bytes) -> FloatArray:
    return np.frombuffer(data, dtype=FLOAT).astype(np.float64)


def _row(model: LearnedModel, now: datetime) -> LearnedModelRow:
    featurizer = model.featurizer
    row = LearnedModelRow(
        created_at=now, schema_version=model.schema_version, training_size=model.training_size,
        sources=dict(model.sources), reviews_through=model.reviews_through, folds=model.folds, seed=model.seed,
        library=dict(model.library), featurizer=[part.to_json() for part in featurizer.parts],
        idf=b"".join(_bytes(part.idf) for part in featurizer.parts),
        training_hashes=b"".join(sorted(model.training_hashes)), notes=list(model.notes))
    row.heads = [LearnedFieldRow(field=head.field, classes=list(head.classes), coef=_bytes(head.coef),
                                 coef_rows=int(head.coef.shape[0]), intercept=_bytes(head.intercept),
                                 beta=head.beta, training_size=head.training_size, accuracy=head.accuracy,
                                 macro_f1=head.macro_f1, ece=head.ece)
                 for head in model.heads.values()]
    return row


def save_version(sessions: sessionmaker[Session], model: LearnedModel, now: datetime, *, keep: int,
                 training_set: Sequence[TrainingRow] | None = None) -> int:
    """Store ``model`` as the newest version (and, when given, ``training_set`` as the stored training set) in
    one transaction; versions beyond the newest ``keep`` are deleted. Returns the version number."""
    with sessions.begin() as session:
        row = _row(model, now)
        session.add(row)
        if training_set is not None:
            session.execute(delete(TrainingExampleRow))
            session.add_all([TrainingExampleRow(source=r.source, key=r.key, text=r.text, labels=dict(r.labels),
                                                created_at=now) for r in training_set])
        session.flush()
        version = row.id
        delete_beyond(session, LearnedModelRow.id, LearnedFieldRow.model_id, keep)
    model.version, model.created_at = version, now
    return version


def delete_beyond(session: Session, version: InstrumentedAttribute[int], child: InstrumentedAttribute[int],
                  keep: int) -> None:
    """Delete every version (``version``: the versions' id column) but the newest ``keep``, their ``child`` rows
    (the column pointing at a version) first."""
    kept = select(version).order_by(version.desc()).limit(keep).subquery()
    old = list(session.scalars(select(version).where(version.not_in(select(kept.c[version.key])))))
    if old:
        session.execute(delete(child.class_).where(child.in_(old)))
        session.execute(delete(version.class_).where(version.in_(old)))


def latest_version(sessions: sessionmaker[Session]) -> int | None:
    """The newest stored version's number, or None when no model is stored."""
    with sessions() as session:
        return session.scalar(select(func.max(LearnedModelRow.id)))


def _featurizer(parts: list[Any], idf: FloatArray) -> Featurizer:
    built, offset = [], 0
    for part in parts:
        width = len(part["terms"])
        built.append(FeaturePart(part["name"], dict(part["params"]), tuple(part["terms"]), idf[offset:offset + width]))
        offset += width
    return Featurizer(built)


def _head(row: LearnedFieldRow) -> FieldHead:
    coef = _array(row.coef)
    return FieldHead(row.field, tuple(map(str, row.classes)), coef.reshape(row.coef_rows, -1), _array(row.intercept),
                     row.beta, training_size=row.training_size, accuracy=row.accuracy, macro_f1=row.macro_f1,
                     ece=row.ece)


def load_version(sessions: sessionmaker[Session], version: int | None = None) -> LearnedModel | None:
    """Version ``version`` (default: the newest), rebuilt from its numbers; None when it is not stored."""
    with sessions() as session:
        query = select(LearnedModelRow).order_by(LearnedModelRow.id.desc()).limit(1)
        if version is not None:
            query = select(LearnedModelRow).where(LearnedModelRow.id == version)
        row = session.scalar(query)
        if row is None:
            return None
        hashes = row.training_hashes
        return LearnedModel(
            _featurizer(row.featurizer, _array(row.idf)), {head.field: _head(head) for head in row.heads},
            row.training_size, frozenset(hashes[i:i + HASH_BYTES] for i in range(0, len(hashes), HASH_BYTES)),
            dict(row.sources), row.reviews_through, row.schema_version, row.folds, row.seed, dict(row.library),
            version=row.id, created_at=row.created_at, notes=list(row.notes))


def training_set(sessions: sessionmaker[Session]) -> list[TrainingRow]:
    """The stored training set, in the order it was given."""
    with sessions() as session:
        rows = session.scalars(select(TrainingExampleRow).order_by(TrainingExampleRow.id))
        return [TrainingRow(r.text, {k: str(v) for k, v in r.labels.items()}, r.source, r.key) for r in rows]
