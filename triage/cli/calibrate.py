"""``triage calibrate [--since DATE] [DATASET...]``: fit the confidence, report it, store a version.

The labels are the desk's reviews, read as ``triage learn`` reads them (:mod:`triage.learning.reviews`: a
correction is the corrected value, a resolve without one confirms the machine's), each joined to the
signals its ticket was decided on (``tickets.confidence_signals``); and the labelled data sets given, read
as ``triage evaluate`` takes them, on which the offline extractors decide (the rules on every row, the
learned extractor out of fold). The fit and its held-out report are :mod:`triage.confidence.calibrate`;
the version is stored as data (:mod:`triage.confidence.store`) and every worker uses it within a minute.

The scheduled job (``jobs.calibrate_interval_hours``, :mod:`triage.confidence.recalibrate`) refits on the
reviews alone. Exit status 0, or 2 for what the user must fix first.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from triage.cli.learn import LearnError, parse_since
from triage.confidence.calibrate import CalibrationReport, Decision
from triage.confidence.offline import dataset_decisions
from triage.confidence.recalibrate import review_decisions, route_of, run_calibration
from triage.evaluation.labels import LabelledDataError, load_named
from triage.evaluation.progress import ProgressBar

if TYPE_CHECKING:
    from triage.app import App

EXIT_FIX_SETUP = 2


class CalibrateError(Exception):
    """What the user must fix before ``triage calibrate`` can run."""


def data_set_decisions(app: App, names: Sequence[str], data: Path | None, err: IO[str]) -> list[Decision]:
    """The labelled decisions of every named data set (a bad JSON Lines line is said and skipped)."""
    fields = sorted(app.router.fields)
    decisions: list[Decision] = []
    for name, loaded in load_named(names, data or app.settings.evaluation.data, app.schema,
                                   lambda line: print(f"triage calibrate: {line}", file=err)):
        if not any(field in loaded.fields for field in fields):
            raise CalibrateError(f"{name}: no row has a label of a routing field ({', '.join(fields)})")
        decisions += dataset_decisions(loaded.samples, app.schema, app.settings.learn, app.rules, fields,
                                       Path(name).name, route_of(app), lambda label: ProgressBar(label, err))
    return decisions


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def describe(version: int, report: CalibrationReport, sources: Mapping[str, int]) -> list[str]:
    """What ``triage calibrate`` prints for people."""
    lines = [f"stored calibration v{version}: {report.decisions} labelled decisions "
             f"({', '.join(f'{name} {count}' for name, count in sources.items())})"]
    for head, about in report.heads.items():
        state = "fitted" if about["fitted"] else "default (too few labels: calibrate.min_labels)"
        lines.append(f"  {head}: {about['labels']} labels, {about['right']} right: {state}")
    for name, ece in report.ece.items():
        default = report.default_ece.get(name)
        lines.append(f"  ECE {name}: {ece:.3f} held out (default combination {default:.3f})" if default is not None
                     else f"  ECE {name}: {ece:.3f} held out")
    target = f"{100 * report.target_precision:g}%"
    if report.threshold is not None:
        t = report.threshold
        lines.append(f"  to reach {target} precision (quality.target_precision): confidence at or above "
                     f"{'-' if t.threshold is None else f'{t.threshold:.3f}'} lets {_pct(t.coverage)} of "
                     f"{t.tickets} tickets through ({_pct(t.precision)} right)")
        lines += [f"    route {route}: at or above {'-' if r.threshold is None else f'{r.threshold:.3f}'}, "
                  f"{_pct(r.coverage)} of {r.tickets}" for route, r in report.routes.items()]
    lines += [f"  note: {note}" for note in report.notes]
    return lines


def calibrate_command(app: App, names: Sequence[str], *, data: Path | None = None, since: str | None = None,
                      as_json: bool = False, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """``triage calibrate``: the reviews (made at or after ``since``) and the data sets ``names``."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        print("triage calibrate: reading the desk's reviews", file=err, flush=True)
        decisions, through = review_decisions(app, parse_since(since) if since else None)
        print(f"triage calibrate: {len(decisions)} reviewed decisions", file=err, flush=True)
        decisions += data_set_decisions(app, names, data, err)
        if not decisions:
            raise CalibrateError("nothing to calibrate on: no reviewed ticket was scored by the machine"
                                 + (f" since {since}" if since else "") + ", and no labelled data set was given "
                                 "(give one, e.g. banking77 --data DIR or a JSON Lines file)")
        version, report = run_calibration(app, decisions, through, ProgressBar("fitting held-out folds", err))
    except (CalibrateError, LearnError, LabelledDataError) as exc:
        print(f"triage calibrate: {exc}", file=err)
        return EXIT_FIX_SETUP
    sources = dict(Counter(decision.source for decision in decisions))
    if as_json:
        print(json.dumps({"version": version, "sources": sources, **report.to_json()}, ensure_ascii=False), file=out)
    else:
        print("\n".join(describe(version, report, sources)), file=out)
    return 0
