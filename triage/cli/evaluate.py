"""``triage evaluate DATASET...``: every named extractor over every data set, one report per pair.

``--extractor`` is ``rules`` (default), ``learned``, ``llm`` or ``all`` (rules + learned: the LLM
costs money, so it runs only when named). ``--split test`` (default) gives the learned extractor's
out-of-fold figures; ``--split all`` scores every row with the stored model and says how many of
the texts it was trained on. The rules and the LLM have nothing to fit: they are run on every row
either way. Exit status 0, or 2 for what the user must fix first (an unknown name, no data folder,
a file that cannot be read, no stored model, no API key, a chart that cannot be drawn).
"""

from __future__ import annotations

import csv
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from triage.confidence.calibrate import FitSettings
from triage.confidence.offline import Opinions, score_held_out
from triage.errors import ConfigError, DatabaseNotReadyError
from triage.evaluation.charts import ChartsUnavailableError
from triage.evaluation.labels import (
    LoadedDataset,
    Sample,
    load_dataset,
    needs_data_folder,
    resolve_datasets,
    spread,
)
from triage.evaluation.progress import ProgressBar
from triage.evaluation.report import format_report, write_chart, write_report
from triage.evaluation.runners import Run, labelled_enum_fields, run_out_of_fold, run_stored
from triage.evaluation.scoring import (
    EvaluationReport,
    Extractor,
    agreement,
    score,
    ticket_calibration,
    timed_run,
)
from triage.extraction.types import ExtractionResult
from triage.schema import TicketSchema
from triage.settings import Settings, load_settings
from triage.tickets.routing import Router

if TYPE_CHECKING:
    from triage.app import App

ExtractorChoice = Literal["rules", "learned", "llm", "all"]
EXTRACTOR_CHOICES: tuple[str, ...] = ("rules", "learned", "llm", "all")
SPLITS: tuple[str, ...] = ("test", "all")
EXIT_FIX_SETUP = 2
STC3_PAIR = ("stc3-cn", "stc3-en")


class EvaluationSetupError(Exception):
    """What the user must fix before this evaluation can run; the message says what."""


def extractors_of(choice: str) -> list[str]:
    """``all`` is rules + learned (the LLM only when named).

    >>> extractors_of("all"), extractors_of("llm")
    (['rules', 'learned'], ['llm'])
    """
    return ["rules", "learned"] if choice == "all" else [choice]


@dataclass
class Evaluation:
    """One ``triage evaluate``: what to run, on what, and where the settings and the database come from."""

    names: list[str]
    data: Path | None
    extractors: list[str]
    split: str = "test"
    limit: int | None = None
    concurrency: int = 1
    #: The rules extractor to use (tests pass one; default: built from the settings' schema).
    rules: Extractor | None = None
    settings: Settings | None = None
    app_factory: Callable[[], App] | None = None
    err: IO[str] = sys.stderr

    def __post_init__(self) -> None:
        self._app: App | None = None
        #: Per data set, the rules' outcomes and the learned extractor's out-of-fold run: the confidence of
        #: each extractor weighs the others' opinions, and ``--extractor all`` runs each only once.
        self._rules_runs: dict[str, Run] = {}
        self._oof_runs: dict[str, Run | None] = {}

    @property
    def config(self) -> Settings:
        if self.settings is None:
            self.settings = load_settings()
        return self.settings

    @property
    def schema(self) -> TicketSchema:
        found = getattr(self.rules, "schema", None)
        return found if isinstance(found, TicketSchema) else TicketSchema.load(self.config.schema_path)

    def app(self) -> App:
        """The app (database, rate limiter, LLM client) for what needs one: built once, migrated checked."""
        if self._app is None:
            if self.app_factory is not None:
                self._app = self.app_factory()
            else:
                from triage.app import App
                from triage.store.db import ensure_migrated

                self._app = App.build(self.config)
                ensure_migrated(self._app.engine)
        return self._app

    def close(self) -> None:
        if self._app is not None and self.app_factory is None:
            self._app.close()

    def rules_extractor(self) -> Extractor:
        if self.rules is None:
            from triage.extraction.rules import RulesExtractor

            self.rules = RulesExtractor(self.schema)
        return self.rules

    def progress(self, label: str) -> ProgressBar:
        return ProgressBar(label, self.err)

    def run(self, loaded: LoadedDataset, extractor: str) -> EvaluationReport | None:
        """One (data set, extractor) report; None when it cannot apply (said on stderr)."""
        samples = spread(loaded.samples, self.limit)
        label = f"{Path(loaded.name).name} {extractor}"
        schema = self.schema
        extra: dict[str, Any] = {}
        cached = 0
        if extractor == "rules":
            run = self._rules_run(loaded, samples, label)
        elif extractor == "learned" and self.split == "test":
            if not labelled_enum_fields(loaded, schema):
                print(f"triage evaluate: {loaded.name}: no labels of the schema's enum fields, so no out-of-fold "
                      "figures for the learned extractor (--split all scores the stored model)", file=self.err)
                return None
            found = self._oof_run(loaded, samples, label, required=True)
            assert found is not None
            run = found
            extra = {"split": "test", "folds": self.config.learn.folds}
        elif extractor == "learned":
            learned = self.app().learned
            run, trained_on = run_stored(samples, learned, self.progress(label))
            extra = {"split": "all", "trained_on": trained_on, "model_version": learned.model().version}
        else:
            run, cached = self._llm(samples, label)
        defaults = self._confidence(loaded, samples, run, label, extractor)
        report = score(loaded, samples, run.outcomes, schema=schema, extractor=extractor, seconds=run.seconds,
                       limit=self.limit, prices=self.config.extraction.prices)
        if defaults is not None:
            report.default_confidence = ticket_calibration(samples, defaults, [
                o.ticket if isinstance(o, ExtractionResult) else None for o in run.outcomes])
        report.cached = cached
        for key, value in extra.items():
            setattr(report, key, value)
        return report

    def _rules_run(self, loaded: LoadedDataset, samples: Sequence[Sample], label: str) -> Run:
        if loaded.name not in self._rules_runs:
            outcomes, seconds = timed_run(samples, self.rules_extractor(), self.progress(label))
            self._rules_runs[loaded.name] = Run(outcomes, seconds)
        return self._rules_runs[loaded.name]

    def _oof_run(self, loaded: LoadedDataset, samples: Sequence[Sample], label: str, *,
                 required: bool = False) -> Run | None:
        """The learned extractor's out-of-fold run, run once per data set: None without labels of an enum field
        or, unless ``required``, when the data set cannot be cross-validated (too few rows)."""
        if loaded.name not in self._oof_runs or (required and self._oof_runs[loaded.name] is None):
            run = None
            if labelled_enum_fields(loaded, self.schema):
                try:
                    run = run_out_of_fold(samples, self.schema, self.config.learn, loaded.name,
                                          progress=self.progress(f"{Path(loaded.name).name} learned"))
                except ValueError as exc:
                    if required:
                        raise EvaluationSetupError(f"{loaded.name}: cannot cross-validate the learned extractor: "
                                                   f"{exc}") from exc
            self._oof_runs[loaded.name] = run
        return self._oof_runs[loaded.name]

    def _confidence(self, loaded: LoadedDataset, samples: Sequence[Sample], run: Run, label: str,
                    extractor: str) -> list[dict[str, float] | None] | None:
        """Give ``run``'s outcomes their held-out confidence (triage.confidence) on the learned extractor's folds,
        weighing the rules' and the held-out learned model's opinions; the default combination's confidence of
        each sample, or None when the data set has no routing labels to calibrate on (or too few rows to fold).

        ``--split all`` has no folds: the outcomes are scored as a worker scores them (the stored model's
        opinion, the stored calibration), not held out, as the rest of its figures; the rules alone need no
        database there, so they are scored only when the evaluation opened one anyway."""
        if self.split == "all":
            if extractor == "rules" and self._app is None and self.app_factory is None:
                return None
            scorer = self.app().confidence
            for sample, outcome in zip(samples, run.outcomes, strict=True):
                if isinstance(outcome, ExtractionResult):
                    scorer.score(outcome, sample.conversation)
            return None
        fields = sorted(Router(self.config.routing, self.schema).fields)
        oof = self._oof_run(loaded, samples, label) if any(name in loaded.fields for name in fields) else None
        if oof is None or oof.split is None:
            return None
        rules = self._rules_run(loaded, samples, f"{Path(loaded.name).name} rules")
        opinions = Opinions([o.ticket if isinstance(o, ExtractionResult) else None for o in rules.outcomes],
                            oof.distributions)
        settings = FitSettings(self.config.calibrate.min_labels, self.config.learn.folds, self.config.learn.seed,
                               self.config.quality.target_precision)
        return score_held_out(samples, run.outcomes, opinions, fields, settings, oof.split, loaded.name,
                              self.progress(f"{label} confidence"))

    def _llm(self, samples: Sequence[Any], label: str) -> tuple[Run, int]:
        import time

        from triage.evaluation.cache import AnswerStore, CacheKey
        from triage.evaluation.llm import run_llm

        app = self.app()
        extractor = app.llm  # refuses without MIMO_API_KEY
        store = AnswerStore(app.sessions, CacheKey(extractor.schema.version, extractor.prompt.version,
                                                   app.settings.model), app.clock.now)
        started = time.perf_counter()
        result = run_llm(samples, extractor, app.settings, store, concurrency=self.concurrency,
                         progress=self.progress(label))
        return Run(result.outcomes, time.perf_counter() - started), result.cached


def _agree(reports: Sequence[EvaluationReport]) -> None:
    """Agreement between the extractors on each data set, and between stc3's two languages."""
    for first, second in combinations(reports, 2):
        if first.dataset == second.dataset:
            first.agreement[second.extractor] = second.agreement[first.extractor] = agreement(first, second)
        elif {first.dataset, second.dataset} == set(STC3_PAIR) and first.extractor == second.extractor:
            first.agreement[second.dataset] = second.agreement[first.dataset] = agreement(first, second)


def _names(datasets: str | Sequence[str]) -> list[str]:
    names: list[str] = []
    for name in [datasets] if isinstance(datasets, str) else datasets:
        names += [n for n in resolve_datasets(name) if n not in names]
    return names


def evaluate_command(datasets: str | Sequence[str], data: Path | None, limit: int | None = None,
                     as_json: bool = False, *, chart: Path | None = None, extractor: Extractor | None = None,
                     extractors: str = "rules", split: str = "test", report_dir: Path | None = None,
                     concurrency: int = 1, settings: Settings | None = None,
                     app_factory: Callable[[], App] | None = None, out: IO[str] | None = None,
                     err: IO[str] | None = None) -> int:
    """``triage evaluate DATASET...``: run the chosen extractors and print the reports.

    A data set may be a group (``stc3``, ``all``) or a JSON Lines file; ``data`` is the folder holding
    the public sets (default: ``TRIAGE_EVAL_DATA``); ``chart`` a PNG of the confusion matrices;
    ``report_dir`` a folder for ``report.md`` and its charts; ``as_json`` prints JSON Lines, one object per
    (data set, extractor). ``extractor`` replaces the rules extractor (tests). Returns the exit status.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        names = _names(datasets)
        if extractors not in EXTRACTOR_CHOICES or split not in SPLITS:
            raise ValueError(f"--extractor {extractors} --split {split}: choose --extractor from "
                             f"{', '.join(EXTRACTOR_CHOICES)} and --split from {', '.join(SPLITS)}")
    except ValueError as exc:
        print(f"triage evaluate: {exc}", file=err)
        return EXIT_FIX_SETUP
    evaluation = Evaluation(names, data, extractors_of(extractors), split, limit, concurrency, extractor, settings,
                            app_factory, err)
    try:
        reports = _run_all(evaluation)
    except (EvaluationSetupError, ConfigError, DatabaseNotReadyError) as exc:
        print(f"triage evaluate: {exc}", file=err)
        return EXIT_FIX_SETUP
    finally:
        evaluation.close()
    if chart is not None or report_dir is not None:
        try:
            if chart is not None:
                write_chart(reports, chart)
                print(f"triage evaluate: confusion matrix written to {chart}", file=err)
            if report_dir is not None:
                command = shlex.join(["triage", *sys.argv[1:]]) if sys.argv[1:2] == ["evaluate"] else "triage evaluate"
                written = write_report(reports, report_dir, command, datetime.now(UTC))
                print(f"triage evaluate: report written to {written}", file=err)
        except (ValueError, ChartsUnavailableError) as exc:
            print(f"triage evaluate: {exc}", file=err)
            return EXIT_FIX_SETUP
    if as_json:
        for report in reports:
            print(json.dumps(report.to_dict(), ensure_ascii=False), file=out)
        return 0
    print("\n\n".join(format_report(report) for report in reports), file=out)
    for report in reports:
        same, shared = report.agreement.get(STC3_PAIR[1], (0, 0)) if report.dataset == STC3_PAIR[0] else (0, 0)
        if shared:
            print(f"\nstc3 cn/en agreement on problem_type (same dialogues, two languages): {same}/{shared} "
                  f"({100 * same / shared:.1f}%), {report.extractor}", file=out)
    return 0


def _run_all(evaluation: Evaluation) -> list[EvaluationReport]:
    data = evaluation.data
    if data is None and needs_data_folder(evaluation.names):
        data = evaluation.config.evaluation.data
        if data is None:
            raise EvaluationSetupError("no data folder: give --data DIR or set TRIAGE_EVAL_DATA to the folder holding "
                                       "banking77/, bitext/ and stc3/")
    reports: list[EvaluationReport] = []
    for name in evaluation.names:
        try:
            loaded = load_dataset(name, data, evaluation.schema)
        except (FileNotFoundError, json.JSONDecodeError, KeyError, csv.Error) as exc:
            raise EvaluationSetupError(f"{name}: cannot read the data set: {exc} (point --data or TRIAGE_EVAL_DATA "
                                       "at the folder holding banking77/, bitext/ and stc3/, or give a JSON Lines "
                                       "file)") from exc
        for problem in loaded.problems[:20]:
            print(f"triage evaluate: {name}: {problem}", file=evaluation.err)
        if len(loaded.problems) > 20:
            print(f"triage evaluate: {name}: ... {len(loaded.problems) - 20} more rows not read", file=evaluation.err)
        for extractor in evaluation.extractors:
            report = evaluation.run(loaded, extractor)
            if report is not None:
                reports.append(report)
    _agree(reports)
    return reports
