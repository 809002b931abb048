"""The reports: plain text for a terminal, ``report.md`` with PNG charts for people, JSON Lines for programs.

``--report DIR`` writes ``DIR/report.md`` (a table per data set, then per extractor and field the
per-class scores and the confusion matrix, agreement, calibration) and its charts beside it:
``accuracy.png`` (accuracy per data set and extractor), ``confusion.png`` (every confusion matrix)
and ``calibration.png`` (reliability diagram and coverage-accuracy curve of each confidence).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from triage.evaluation.charts import (
    Bars,
    Calibration,
    ConfusionMatrix,
    bars_png,
    calibration_png,
    confusion_matrices_png,
)
from triage.evaluation.labels import LABEL_FIELD
from triage.evaluation.scoring import EvaluationReport, FieldReport, ratio

#: Said beside every figure of the rules extractor on the public sets.
RULES_TUNED = ("the rules' keyword tables were tuned on these public sets, so their figures here are not "
               "held-out figures")
MAPPED = ("gold problem_type comes from mapping the data set's own labels (triage.evaluation.labels tables); "
          "the figures are approximations")


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _split_line(report: EvaluationReport) -> str:
    if report.split == "test":
        return f"split: test (out-of-fold, seeded stratified {report.folds}-fold; a throw-away model per fold)"
    if report.split == "all":
        return (f"split: all (stored model v{report.model_version}; trained on {report.trained_on} of the "
                f"{report.evaluated} evaluated texts, by hash)")
    return ""


def _scores(name: str, field: FieldReport) -> list[str]:
    lines = [f"accuracy ({name}): {pct(field.accuracy)} ({field.correct}/{field.evaluated}); "
             f"macro F1: {num(field.macro_f1)}", ""]
    lines.append(f"{'class':<14}{'precision':>10}{'recall':>8}{'f1':>7}{'support':>9}{'predicted':>11}")
    for label, s in field.per_class().items():
        lines.append(f"{label:<14}{num(s.precision):>10}{num(s.recall):>8}{num(s.f1):>7}{s.support:>9}"
                     f"{s.predicted:>11}")
    classes = field.classes
    width = max(12, *(len(c) + 1 for c in classes))
    lines += ["", "confusion (rows: gold, columns: predicted)",
              f"{'':<14}" + "".join(f"{c:>{width}}" for c in classes)]
    for gold in classes:
        row = field.confusion.get(gold, {})
        if row:
            lines.append(f"{gold:<14}" + "".join(f"{row.get(c, 0):>{width}}" for c in classes))
    lines.append("")
    return lines


def format_report(report: EvaluationReport) -> str:
    """A readable plain-text report."""
    lines = [f"dataset: {report.dataset}  ({report.source})", f"extractor: {report.extractor}"]
    if report.split:
        lines.append(_split_line(report))
    sampled = f" (evenly spaced sample, --limit {report.limit})" if report.limit is not None else ""
    lines.append(f"rows read: {report.rows}; evaluated: {report.evaluated}{sampled}")
    if report.problems:
        lines.append(f"rows not read: {len(report.problems)} ({'; '.join(report.problems[:3])})")
    if report.excluded:
        lines.append(f"excluded as unmappable: {sum(report.excluded.values())} rows in "
                     f"{len(report.excluded)} labels ({', '.join(sorted(report.excluded))})")
    if report.unknown_labels:
        lines.append(f"unknown labels (not in the mapping tables): {dict(report.unknown_labels)}")
    lines.append(f"schema-valid tickets: {report.valid}/{report.evaluated} ({pct(report.validity)}); "
                 f"extractor errors: {report.errors}")
    lines.extend(f"  error: {message}" for message in report.error_examples)
    for name, field in report.fields.items():
        lines += _scores(name, field)
    for name, counts in report.distributions.items():
        shown = ", ".join(f"{value} {count} ({pct(ratio(count, report.evaluated))})" for value, count in counts.items())
        lines.append(f"predicted {name}: {shown}")
    if report.filled:
        lines.append("filled: " + "; ".join(f"{name} {count} ({pct(ratio(count, report.evaluated))})"
                                            for name, count in report.filled.items()))
    judged = [("confidence", name, c) for name, c in report.confidence.items()]
    judged += [("default confidence", "ticket", report.default_confidence)] if report.default_confidence else []
    judged += [("own probability", name, c) for name, c in report.probability.items()]
    for what, name, confidence in judged:
        coverage = ", ".join(f"{pct(share)} at precision {p}" for p, share in confidence.coverage_at_precision.items())
        lines.append(f"calibration of the {what} ({name}): ECE {confidence.ece:.3f} over 15 bins; coverage {coverage}")
    if report.prompt_tokens or report.completion_tokens or report.extractor == "llm":
        cost = "no price for the model in [extraction.prices]" if report.cost_per_1000 is None \
            else f"{report.cost_per_1000:.4f} per 1,000 tickets"
        lines.append(f"tokens: {report.prompt_tokens} prompt, {report.completion_tokens} completion; cost: {cost}"
                     + (f"; {report.cached} answers from the cache" if report.cached else ""))
    for other, (same, shared) in report.agreement.items():
        lines.append(f"agreement with {other} on {LABEL_FIELD}: {same}/{shared} ({pct(ratio(same, shared))})")
    per_item = f"{1000 * report.seconds / report.evaluated:.2f} ms per item" if report.evaluated else "-"
    lines.append(f"time: {report.seconds:.2f} s ({per_item})")
    if report.labelled and report.source.endswith((".csv", ".json")):
        lines.append(f"note: {MAPPED}.")
        if report.extractor == "rules":
            lines.append(f"note: {RULES_TUNED}.")
    return "\n".join(lines)


# --- charts ---------------------------------------------------------------------------------------


def confusion_matrices(reports: Sequence[EvaluationReport]) -> list[ConfusionMatrix]:
    """Every labelled field's confusion matrix, classes in the schema's order."""
    matrices = []
    for report in reports:
        for name, field in report.fields.items():
            classes = field.classes
            counts = [[field.confusion.get(gold, {}).get(predicted, 0) for predicted in classes] for gold in classes]
            title = f"{report.dataset}: {name}" + (f" ({report.extractor})" if len(reports) > 1 else "")
            matrices.append(ConfusionMatrix(title, classes, classes, counts))
    return matrices


def write_chart(reports: Sequence[EvaluationReport], path: Path) -> None:
    """The confusion matrices of the labelled ``reports`` as one PNG (needs the ``charts`` extra)."""
    matrices = confusion_matrices([report for report in reports if report.labelled])
    if not matrices:
        names = ", ".join(dict.fromkeys(report.dataset for report in reports))
        raise ValueError(f"--chart: {names} has no labels, so no confusion matrix; use banking77 or bitext")
    confusion_matrices_png(matrices, path)


def calibrations(reports: Sequence[EvaluationReport]) -> list[Calibration]:
    return [Calibration(f"{report.dataset} {report.extractor} {name}",
                        [(b.low, b.high, b.confidence, b.accuracy, b.count) for b in confidence.bins],
                        confidence.curve, confidence.ece)
            for report in reports for name, confidence in report.confidence.items()]


def accuracy_bars(reports: Sequence[EvaluationReport]) -> Bars:
    groups = list(dict.fromkeys(report.dataset for report in reports if report.labelled))
    extractors = list(dict.fromkeys(report.extractor for report in reports if report.labelled))
    found = {(r.dataset, r.extractor): r.accuracy for r in reports if r.labelled}
    split = next((r.split for r in reports if r.split), None)
    title = f"{LABEL_FIELD} accuracy" + (" (learned: out-of-fold)" if split == "test" else "")
    return Bars(title, "accuracy", [Path(g).name for g in groups],
                {name: [found.get((g, name)) for g in groups] for name in extractors})


def write_charts(reports: Sequence[EvaluationReport], folder: Path) -> list[str]:
    """The report's charts in ``folder``; the names of the files written."""
    written = []
    labelled = [report for report in reports if report.labelled]
    if labelled:
        bars_png(accuracy_bars(labelled), folder / "accuracy.png")
        confusion_matrices_png(confusion_matrices(labelled), folder / "confusion.png")
        written += ["accuracy.png", "confusion.png"]
    panels = calibrations(reports)
    if panels:
        calibration_png(panels, folder / "calibration.png")
        written.append("calibration.png")
    return written


# --- report.md ------------------------------------------------------------------------------------


def _cost(report: EvaluationReport) -> str:
    if report.cost_per_1000 is None:
        return "no price"
    return "-" if not (report.prompt_tokens or report.completion_tokens) else f"{report.cost_per_1000:.4f}"


def summary_table(reports: Sequence[EvaluationReport]) -> list[str]:
    """One markdown row per (data set, extractor): the figures people compare first."""
    lines = ["| data set | extractor | split | evaluated | problem_type accuracy | macro F1 | ECE | "
             "coverage at 95% precision | tokens (prompt / completion) | cost per 1,000 | seconds |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in reports:
        main = r.main_confidence
        lines.append(f"| {Path(r.dataset).name} | {r.extractor} | {r.split or '-'} | {r.evaluated} | "
                     f"{pct(r.accuracy)} | {num(r.macro_f1)} | {num(main.ece) if main else '-'} | "
                     f"{pct(main.coverage_at_precision.get('0.95')) if main else '-'} | "
                     f"{r.prompt_tokens} / {r.completion_tokens} | {_cost(r)} | {r.seconds:.1f} |")
    return lines


def _field_section(report: EvaluationReport, name: str, field: FieldReport) -> list[str]:
    classes = field.classes
    lines = [f"#### {Path(report.dataset).name}, {report.extractor}: {name}", "",
             f"accuracy {pct(field.accuracy)} ({field.correct}/{field.evaluated}), macro F1 {num(field.macro_f1)}", "",
             "| class | precision | recall | F1 | support | predicted |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {label} | {num(s.precision)} | {num(s.recall)} | {num(s.f1)} | {s.support} | {s.predicted} |"
              for label, s in field.per_class().items()]
    lines += ["", "confusion (rows: gold, columns: predicted)", "",
              "| gold \\ predicted | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    lines += [f"| {gold} | " + " | ".join(str(field.confusion.get(gold, {}).get(c, 0)) for c in classes) + " |"
              for gold in classes if gold in field.confusion]
    return [*lines, ""]


def markdown(reports: Sequence[EvaluationReport], command: str, charts: Sequence[str], now: datetime) -> str:
    """``report.md``: the summary table, notes on what the figures rest on, then each field in detail."""
    lines = ["# triage evaluate", "", f"`{command}` — {now:%Y-%m-%d %H:%M} UTC", "", *summary_table(reports), ""]
    splits = {r.split for r in reports if r.split}
    if "test" in splits:
        folds = next(r.folds for r in reports if r.split == "test")
        lines.append(f"- learned: out-of-fold figures (seeded, stratified {folds}-fold cross-validation, a "
                     "throw-away model per fold; the stored model untouched).")
    if "all" in splits:
        lines += [f"- learned: the stored model v{r.model_version} on every row of {Path(r.dataset).name}; it was "
                  f"trained on {r.trained_on} of these {r.evaluated} texts, so these are not held-out figures."
                  for r in reports if r.split == "all"]
    if any(r.extractor == "rules" and r.labelled and r.source.endswith((".csv", ".json")) for r in reports):
        lines.append(f"- rules: {RULES_TUNED}.")
    if any(r.labelled and r.source.endswith((".csv", ".json")) for r in reports):
        lines.append(f"- {MAPPED[0].upper()}{MAPPED[1:]}.")
    lines.append("- ECE: expected calibration error of the ticket's confidence (triage.confidence: calibrated on the "
                 "other folds, scoring the held-out one; its lowest routing field's) over 15 fixed bins; coverage "
                 "at 95% precision: the largest share of tickets whose most confident predictions are at least 95% "
                 "right.")
    lines.append("")
    lines += [f"![{name}]({name})" for name in charts]
    lines.append("")
    agreements = [(r, other, same, shared) for r in reports for other, (same, shared) in r.agreement.items()]
    if agreements:
        lines += ["## Agreement", "", "| data set | extractors | same problem_type | rate |", "|---|---|---:|---:|"]
        lines += [f"| {Path(r.dataset).name} | {r.extractor} / {other} | {same}/{shared} | {pct(ratio(same, shared))} |"
                  for r, other, same, shared in agreements]
        lines.append("")
    lines += ["## Per field", ""]
    for report in reports:
        for name, field in report.fields.items():
            lines += _field_section(report, name, field)
    return "\n".join(lines)


def write_report(reports: Sequence[EvaluationReport], folder: Path, command: str, now: datetime) -> Path:
    """``folder/report.md`` and its charts; the path of the report."""
    folder.mkdir(parents=True, exist_ok=True)
    charts = write_charts(reports, folder)
    path = folder / "report.md"
    path.write_text(markdown(reports, command, charts, now), encoding="utf-8")
    return path


def by_dataset(reports: Sequence[EvaluationReport]) -> Mapping[str, list[EvaluationReport]]:
    grouped: dict[str, list[EvaluationReport]] = {}
    for report in reports:
        grouped.setdefault(report.dataset, []).append(report)
    return grouped
