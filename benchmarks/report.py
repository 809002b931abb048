"""The results: one table per scenario, every target met or missed (with why), a Markdown file and a PNG chart.

>>> line = Line("triage", 40.0, ratio=0.31)
>>> result = ScenarioResult("a", "(a) 500 ms", "setup", "the concurrency bound", [line],
...                         [Check("at least 0.80 of the bound", "0.31", False, "CPU bound")])
>>> "| triage | 40.0 | 0.31 |" in render_scenario(result)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The columns of a scenario's table: header and the attribute of :class:`Line` it shows.
COLUMNS = (("p50 s", "p50"), ("p95 s", "p95"), ("p99 s", "p99"), ("calls/ticket", "calls_per_ticket"),
           ("prompt tok/ticket", "prompt_tokens_per_ticket"), ("completion tok/ticket", "completion_tokens_per_ticket"),
           ("CPU ms/ticket", "cpu_ms"), ("peak RSS MiB", "peak_rss_mb"), ("429s", "rate_limited"))
TRIAGE_COLOUR, OTHER_COLOUR = "#d95f02", "#7570b3"


@dataclass
class Line:
    """One subject measured in a scenario (a baseline, or triage itself); ``rate`` is in ``unit``."""

    subject: str
    rate: float | None
    unit: str = "tickets/s"
    ratio: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    calls_per_ticket: float | None = None
    prompt_tokens_per_ticket: float | None = None
    completion_tokens_per_ticket: float | None = None
    cpu_ms: float | None = None
    peak_rss_mb: float | None = None
    rate_limited: int | None = None
    note: str = ""


@dataclass
class Check:
    """One target of the issue: what it asks, what was measured, met or missed and, when missed, why."""

    target: str
    measured: str
    met: bool
    why: str = ""


@dataclass
class ScenarioResult:
    key: str
    title: str
    setup: str
    reference: str
    lines: list[Line] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile of sorted ``values``.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([], 0.5)
    (2.0, None)
    """
    if not values:
        return None
    return values[max(0, math.ceil(share * len(values)) - 1)]


def fmt(value: float | int | None) -> str:
    """A number for the table: ``-`` when not measured, fewer decimals as it grows.

    >>> [fmt(v) for v in (None, 3, 0.004567, 0.31, 12.345, 1234.5)]
    ['-', '3', '0.0046', '0.31', '12.3', '1,234']
    """
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.1 or value == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_scenario(result: ScenarioResult) -> str:
    units = sorted({line.unit for line in result.lines})
    header = ["subject", " or ".join(units) or "rate", f"x {result.reference}", *(name for name, _ in COLUMNS), "note"]
    rows = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for line in result.lines:
        cells = [line.subject, fmt(line.rate), fmt(line.ratio), *(fmt(getattr(line, attr)) for _, attr in COLUMNS),
                 line.note]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    parts = [f"## {result.title}", "", result.setup, "", *rows]
    if result.checks:
        parts += ["", *(f"- {verdict(check)}" for check in result.checks)]
    if result.notes:
        parts += ["", *(f"- {note}" for note in result.notes)]
    return "\n".join(parts)


def verdict(check: Check) -> str:
    word = "**met**" if check.met else "**missed**"
    return f"{check.target}: {check.measured}, {word}" + (f" ({check.why})" if check.why and not check.met else "")


def render_targets(results: Sequence[ScenarioResult]) -> str:
    rows = ["| scenario | target | measured | verdict | why a miss |", "| --- | --- | --- | --- | --- |"]
    for result in results:
        for check in result.checks:
            rows.append("| " + " | ".join(_cell(cell) for cell in (
                scenario_label(result), check.target, check.measured, "met" if check.met else "**missed**",
                "" if check.met else check.why)) + " |")
    return "\n".join(rows)


def scenario_label(result: ScenarioResult) -> str:
    """``(a)`` for the issue's lettered scenarios, else the key (``submit``, ``tokens``)."""
    return f"({result.key})" if len(result.key) == 1 else result.key


def render(title: str, header: Sequence[str], results: Sequence[ScenarioResult], chart: Path | None) -> str:
    """The whole results file."""
    parts = [f"# {title}", "", *(f"- {line}" for line in header), ""]
    if chart is not None:
        parts += [f"![throughput per scenario]({chart.name})", ""]
    parts += ["## Targets (issue, section 6)", "", render_targets(results), ""]
    for result in results:
        parts += [render_scenario(result), ""]
    return "\n".join(parts)


def write_chart(results: Sequence[ScenarioResult], path: Path) -> Path | None:
    """One horizontal bar chart per scenario (rate of each subject, ratio on the bar); None if nothing to plot."""
    from triage.evaluation.charts import DPI, pyplot

    plt = pyplot()

    plotted = [r for r in results if any(line.rate is not None for line in r.lines)]
    if not plotted:
        return None
    figure, axes = plt.subplots(len(plotted), 1, figsize=(9, 1.2 + 1.1 * sum(len(r.lines) for r in plotted) / 2),
                                squeeze=False)
    for axis, result in zip(axes[:, 0], plotted, strict=True):
        lines = [line for line in result.lines if line.rate is not None]
        values = [line.rate or 0.0 for line in lines]
        colours = [TRIAGE_COLOUR if "triage" in line.subject else OTHER_COLOUR for line in lines]
        bars = axis.barh([line.subject for line in lines], values, color=colours)
        for bar, line in zip(bars, lines, strict=True):
            label = f" {fmt(line.rate)}" + (f"  (x{fmt(line.ratio)})" if line.ratio is not None else "")
            axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=8)
        axis.invert_yaxis()
        axis.set_title(result.title, fontsize=9, loc="left")
        axis.set_xlabel(" / ".join(sorted({line.unit for line in lines})), fontsize=8)
        axis.tick_params(labelsize=8)
        axis.set_xlim(0, max(values, default=1) * 1.35 or 1)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def write_results(path: Path, title: str, header: Sequence[str], results: Sequence[ScenarioResult],
                  chart: bool = True) -> Path:
    """Write ``path`` (Markdown) and, with ``chart``, the PNG beside it (same name, ``.png``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    png = write_chart(results, path.with_suffix(".png")) if chart else None
    path.write_text(render(title, header, results, png), encoding="utf-8")
    return path
