"""How each extractor is run over a data set's samples, and each run scored.

- any extractor, one sample after the other (:func:`evaluate`, the rules);
- the learned extractor with the stored model (``--split all``): every row scored by the newest
  version, and counted how many of the texts it was trained on (:func:`run_stored`);
- the learned extractor out-of-fold (``--split test``): the seeded, stratified K-fold split of
  :func:`triage.learning.fit.folds`, a throw-away model fitted per fold on the other folds and
  scoring its own rows; the stored model is not touched (:func:`run_out_of_fold`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from triage.evaluation.labels import LoadedDataset, Sample, load_dataset, spread
from triage.evaluation.scoring import (
    EvaluationReport,
    Extractor,
    Outcome,
    Progress,
    enum_values,
    schema_of,
    score,
    timed_run,
)
from triage.extraction.rules import RulesExtractor
from triage.learning.extractor import FixedModel, LearnedExtractor
from triage.learning.features import model_text, text_hash
from triage.learning.fit import TrainingRow, fold_models, folds
from triage.schema import TicketSchema
from triage.settings import LearnSettings

#: Rows the stored model scores in one pass.
SCORE_CHUNK = 500


@dataclass(frozen=True)
class Run:
    """What a run gave: one outcome per sample, in order, and how long it took."""

    outcomes: list[Outcome]
    seconds: float
    #: Out-of-fold runs: the folds (training, held-out sample indices) and, per sample, the held-out model's
    #: probability of every class per field (the learned model's second opinion for the confidence).
    split: list[tuple[list[int], list[int]]] | None = None
    distributions: list[dict[str, dict[str, float]]] | None = None


def evaluate(dataset: str, path: Path | None, extractor: Extractor, *, limit: int | None = None,
             progress: Progress | None = None, schema: TicketSchema | None = None) -> EvaluationReport:
    """Run ``extractor`` over ``dataset`` (found under ``path``, or a JSON Lines file) and score it.

    ``limit`` takes that many evenly spaced samples; ``progress(done, total)`` is called after
    each one. Validity is checked against ``schema`` (default: ``extractor.schema`` if it has
    one; otherwise a returned ticket counts as valid). An extractor exception counts as an
    error (and a wrong answer) instead of ending the run.
    """
    schema = schema_of(extractor, schema)
    loaded = load_dataset(dataset, path, schema)
    samples = spread(loaded.samples, limit)
    outcomes, seconds = timed_run(samples, extractor, progress)
    return score(loaded, samples, outcomes, schema=schema, extractor=str(getattr(extractor, "name", "rules")),
                 seconds=seconds, limit=limit)


def run_stored(samples: Sequence[Sample], extractor: LearnedExtractor,
               progress: Progress | None = None) -> tuple[Run, int]:
    """The newest stored model over every sample, and how many of their texts it was trained on."""
    started = time.perf_counter()
    model = extractor.model()
    outcomes: list[Outcome] = []
    for start in range(0, len(samples), SCORE_CHUNK):
        chunk = samples[start:start + SCORE_CHUNK]
        outcomes.extend(extractor.extract_many([sample.conversation for sample in chunk]))
        if progress is not None:
            progress(len(outcomes), len(samples))
    trained_on = sum(text_hash(model_text(sample.conversation)) in model.training_hashes for sample in samples)
    return Run(outcomes, time.perf_counter() - started), trained_on


def training_rows(samples: Sequence[Sample], fields: Sequence[str], source: str) -> list[TrainingRow]:
    """The samples as training rows: their text and their labels of ``fields`` (as text)."""
    return [TrainingRow(model_text(sample.conversation),
                        {name: str(value) for name, value in sample.labels.items()
                         if name in fields and value is not None}, source, sample.key) for sample in samples]


def run_out_of_fold(samples: Sequence[Sample], schema: TicketSchema, settings: LearnSettings, source: str,
                    rules: RulesExtractor | None = None, progress: Progress | None = None) -> Run:
    """Out-of-fold outcomes: each sample scored by a model fitted on the folds it is not in."""
    started = time.perf_counter()
    fields = enum_values(schema)
    rows = training_rows(samples, list(fields), source)
    rules = rules or RulesExtractor(schema)
    outcomes: list[Outcome | None] = [None] * len(samples)
    distributions: list[dict[str, dict[str, float]]] = [{} for _ in samples]
    split = folds(rows, list(fields), settings.folds, settings.seed)
    done = 0
    for held_out, model in fold_models(rows, fields, settings, split):
        extractor = LearnedExtractor(schema, FixedModel(model), rules)
        for index, outcome in zip(held_out, extractor.extract_many([samples[i].conversation for i in held_out]),
                                  strict=True):
            outcomes[index] = outcome
        for index, distribution in zip(held_out, model.distributions_texts([rows[i].text for i in held_out]),
                                       strict=True):
            distributions[index] = distribution
        done += len(held_out)
        if progress is not None:
            progress(done, len(samples))
    return Run([outcome for outcome in outcomes if outcome is not None], time.perf_counter() - started, split,
               distributions)


def labelled_enum_fields(loaded: LoadedDataset, schema: TicketSchema) -> list[str]:
    """The schema's enum fields the data set has labels for (what a learned model can learn from it)."""
    enums = enum_values(schema)
    return [name for name in loaded.fields if name in enums]
