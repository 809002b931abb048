"""Measuring extractors on labelled data: held-out figures for the rules, the learned model and the LLM.

- :mod:`triage.evaluation.labels`: labelled data in (the public sets mapped to the schema, JSON Lines);
- :mod:`triage.evaluation.scoring`: outcomes against gold labels (accuracy, macro F1, confusion,
  calibration, coverage, tokens and cost);
- :mod:`triage.evaluation.runners`: how each extractor is run (out-of-fold for the learned one, the
  LLM with its answer cache);
- :mod:`triage.evaluation.report`: the text, ``report.md``, the charts and the JSON Lines;
- :mod:`triage.cli.evaluate`: ``triage evaluate``.
"""

from triage.evaluation.labels import (
    BANKING77_EXCLUDED,
    BANKING77_PROBLEM_TYPE,
    BITEXT_EXCLUDED,
    BITEXT_PROBLEM_TYPE,
    DATASET_GROUPS,
    DATASETS,
    LABEL_FIELD,
    NO_TICKET,
    PROBLEM_TYPES,
    DatasetNotFoundError,
    LoadedDataset,
    Sample,
    find_dataset_file,
    load_dataset,
    resolve_datasets,
    spread,
)
from triage.evaluation.scoring import ClassScore, EvaluationReport, agreement

__all__ = [
    "BANKING77_EXCLUDED", "BANKING77_PROBLEM_TYPE", "BITEXT_EXCLUDED", "BITEXT_PROBLEM_TYPE", "DATASETS",
    "DATASET_GROUPS", "LABEL_FIELD", "NO_TICKET", "PROBLEM_TYPES", "ClassScore", "DatasetNotFoundError",
    "EvaluationReport", "LoadedDataset", "Sample", "agreement", "find_dataset_file", "load_dataset",
    "resolve_datasets", "spread",
]
