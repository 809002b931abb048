"""PNG charts for the evaluation, the benchmarks and the desk's Quality page, all drawn with matplotlib.

matplotlib is the ``charts`` extra (``pip install 'triage[charts]'``); without it, drawing
raises :class:`ChartsUnavailableError` with that command, and nothing else needs it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install 'triage[charts]'"
PANEL_INCHES = 4.5
DPI = 120


class ChartsUnavailableError(RuntimeError):
    """matplotlib is not installed."""


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of gold class (rows) against predicted class (columns)."""

    title: str
    gold: Sequence[str]
    predicted: Sequence[str]
    counts: Sequence[Sequence[int]]


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise ChartsUnavailableError(f"charts need matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def confusion_matrices_png(matrices: Sequence[ConfusionMatrix], path: Path) -> None:
    """One heat-map panel per matrix, side by side, each cell labelled with its count."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(matrices), figsize=(PANEL_INCHES * len(matrices), PANEL_INCHES),
                                squeeze=False, layout="constrained")
    for ax, matrix in zip(axes[0], matrices, strict=True):
        image = ax.imshow(matrix.counts, cmap="Blues")
        ax.set(title=matrix.title, xlabel="predicted", ylabel="gold", xticks=range(len(matrix.predicted)),
               yticks=range(len(matrix.gold)))
        ax.set_xticklabels(matrix.predicted, rotation=30, ha="right")
        ax.set_yticklabels(matrix.gold)
        threshold = max((max(row, default=0) for row in matrix.counts), default=0) / 2
        for i, row in enumerate(matrix.counts):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center",
                        color="white" if count > threshold else "black")
        figure.colorbar(image, ax=ax, shrink=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


@dataclass(frozen=True)
class Calibration:
    """One field's calibration: per confidence bin its mean confidence, accuracy and size; and the
    coverage-accuracy curve (accepting the most confident predictions first)."""

    title: str
    bins: Sequence[tuple[float, float, float | None, float | None, int]]  # low, high, confidence, accuracy, count
    curve: Sequence[tuple[float, float]]
    ece: float


def calibration_png(panels: Sequence[Calibration], path: Path) -> None:
    """Per panel, a reliability diagram (accuracy per confidence bin against the diagonal) beside its
    coverage-accuracy curve."""
    plt = pyplot()
    figure, axes = plt.subplots(len(panels), 2, figsize=(2 * PANEL_INCHES, PANEL_INCHES * len(panels)),
                                squeeze=False, layout="constrained")
    for (reliability, coverage), panel in zip(axes, panels, strict=True):
        filled = [b for b in panel.bins if b[4]]
        reliability.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
        reliability.bar([(b[0] + b[1]) / 2 for b in filled], [b[3] or 0.0 for b in filled],
                        width=[b[1] - b[0] for b in filled], edgecolor="black", alpha=0.7, label="accuracy")
        reliability.plot([b[2] for b in filled], [b[3] for b in filled], marker="o", color="tab:red",
                         label="mean confidence -> accuracy")
        reliability.set(title=f"{panel.title}: reliability (ECE {panel.ece:.3f})", xlabel="confidence",
                        ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02))
        reliability.legend(loc="upper left", fontsize="small")
        coverage.plot([c for c, _ in panel.curve], [a for _, a in panel.curve], color="tab:blue")
        coverage.set(title=f"{panel.title}: coverage vs accuracy", xlabel="share of tickets accepted (most "
                     "confident first)", ylabel="accuracy of the accepted", xlim=(0, 1.0))
        coverage.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


@dataclass(frozen=True)
class Bars:
    """One grouped bar chart: per group (data set), one bar per series (extractor)."""

    title: str
    ylabel: str
    groups: Sequence[str]
    series: dict[str, Sequence[float | None]]


def bars_png(chart: Bars, path: Path) -> None:
    """Grouped bars, each labelled with its value (a missing value is left out)."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(max(PANEL_INCHES, 1.6 * len(chart.groups) + 1), PANEL_INCHES),
                              layout="constrained")
    width = 0.8 / max(len(chart.series), 1)
    for index, (name, values) in enumerate(chart.series.items()):
        xs = [g + (index - (len(chart.series) - 1) / 2) * width for g in range(len(chart.groups))]
        shown = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        bars = ax.bar([x for x, _ in shown], [v for _, v in shown], width=width, label=name)
        ax.bar_label(bars, labels=[f"{v:.3f}" for _, v in shown], fontsize="small")
    ax.set(title=chart.title, ylabel=chart.ylabel, xticks=range(len(chart.groups)), ylim=(0, 1.08))
    ax.set_xticklabels(chart.groups)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


@dataclass(frozen=True)
class CoveragePanel:
    """One route's coverage-accuracy curve from its reviews, with thresholds marked on it: each mark is
    ``(label, coverage, precision)``; ``target`` is the precision a threshold should reach."""

    title: str
    curve: Sequence[tuple[float, float]]  # coverage, precision
    marks: Sequence[tuple[str, float, float]]
    target: float


def coverage_png(panels: Sequence[CoveragePanel]) -> bytes:
    """The panels side by side (at most three a row) as PNG bytes, for a page to show inline."""
    plt = pyplot()
    columns = min(3, max(len(panels), 1))
    rows = max(1, -(-len(panels) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(PANEL_INCHES * columns, PANEL_INCHES * 0.8 * rows),
                                squeeze=False, layout="constrained")
    for index, ax in enumerate(axes.flat):
        if index >= len(panels):
            ax.set_axis_off()
            continue
        panel = panels[index]
        ax.axhline(panel.target, linestyle="--", color="grey", linewidth=1, label=f"target {panel.target:g}")
        if panel.curve:
            ax.plot([c for c, _ in panel.curve], [p for _, p in panel.curve], marker=".", color="tab:blue",
                    label="survived review")
        for (label, coverage, precision), colour in zip(panel.marks, ("tab:red", "tab:orange", "tab:green"),
                                                         strict=False):
            ax.plot([coverage], [precision], marker="o", markersize=8, color=colour, linestyle="none", label=label)
        ax.set(title=panel.title, xlabel="share of tickets at or above the threshold", ylabel="share that survived",
               xlim=(0, 1.02), ylim=(0, 1.05))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize="x-small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()
