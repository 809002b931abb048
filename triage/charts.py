"""PNG charts for the evaluation and the benchmarks, all drawn with matplotlib.

matplotlib is the ``charts`` extra (``pip install 'triage[charts]'``); without it, drawing
raises :class:`ChartsUnavailableError` with that command, and nothing else needs it.
"""

from __future__ import annotations

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
