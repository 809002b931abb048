"""``make bench``: triage in the production shape against its baselines, in one run; results to Markdown + PNG.

Scenarios (``--scenario``, comma-separated; default all but the full backlog):
  a        500 ms API latency, 2 workers x 32 threads, batching off, vs the seed loop and its 64-thread version
  b        0 ms latency (pure overhead), vs raw Celery with a no-op task and the seed loops
  c        100 RPM with a backlog, scaled to finish in minutes (--backlog-divisor), one model and + an overflow model
  c-full   the issue's full backlog: 5,000 tickets, 60 s windows (about 50 minutes at one call per ticket)
  d        signed webhooks into triage serve alone, vs a bare FastAPI endpoint
  submit   triage submit of 10,000 lines into PostgreSQL
  tokens   the system prompt's tokens; prompt tokens per ticket without and with batches of 10
  evaluate triage evaluate of 10,000 labelled conversations with the rules and the learned extractor
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path

from benchmarks import conversations, evaluation, scenarios
from benchmarks.report import ScenarioResult, write_results
from benchmarks.stack import REPO, Services

RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_SCENARIOS = ("a", "b", "c", "d", "submit", "tokens", "evaluate")
KNOWN_SCENARIOS = (*DEFAULT_SCENARIOS, "c-full")


def _uptime() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{git('rev-parse', '--short', 'HEAD')} on {git('rev-parse', '--abbrev-ref', 'HEAD')}{dirty}"


def _settings(pairs: Sequence[str]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("TRIAGE"):
            raise SystemExit(f"--set {pair!r}: expected TRIAGE_NAME=VALUE, e.g. TRIAGE__EXTRACTION__BATCH_SIZE=20")
        settings[name] = value
    return settings


def _guarded(name: str, runner: Callable[[], ScenarioResult], ctx: scenarios.Context) -> ScenarioResult:
    """The scenario's result, or one that says how it broke: the other scenarios still run. Either way
    with the machine's load when it started (the machine may be shared)."""
    load = f"load average when this scenario started: {_uptime()}"
    try:
        result = runner()
    except Exception as exc:  # anything: a benchmark run reports a broken scenario and goes on
        ctx.say(f"scenario {name} failed: {type(exc).__name__}: {exc}")
        result = ScenarioResult(name, f"({name}) failed" if len(name) == 1 else f"{name} failed",
                                f"The scenario stopped with {type(exc).__name__}: {str(exc)[:500]}", "-")
    result.notes.append(load)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--scenario", default=",".join(DEFAULT_SCENARIOS),
                        help="comma-separated, from: " + ", ".join(KNOWN_SCENARIOS) + " (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small counts and short windows: seconds per scenario")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count by this (default: 1)")
    parser.add_argument("--backlog-divisor", type=float, help="scenario c: windows and backlog divided by this "
                        "(default: 5, i.e. 1,000 tickets and a 12 s API window; --quick: 25)")
    parser.add_argument("--latency", type=float, help="scenario a's (and c's) API latency in seconds (default 0.5)")
    parser.add_argument("--jitter", type=float, help="± seconds of uniform jitter on that latency (default 0.05)")
    parser.add_argument("--data", type=Path, help="read conversations from this folder (e.g. ../shared/data/bitext) "
                        "instead of generating them")
    parser.add_argument("--dataset", default="all", help="with --data: banking77, bitext, stc3-cn, stc3-en, stc3 or "
                        "all found (default)")
    parser.add_argument("--set", action="append", default=[], metavar="TRIAGE_NAME=VALUE",
                        help="a setting for every triage process, e.g. TRIAGE__EXTRACTION__BATCH_SIZE=20 (repeatable)")
    parser.add_argument("--out", type=Path, help="the results file (default: benchmarks/results/<date>.md, "
                        "<date>-quick.md with --quick); the PNG goes beside it")
    parser.add_argument("--label", default="", help="a word for the title, e.g. before")
    parser.add_argument("--postgres", default=Services.postgres_admin_url, help="admin URL (default: %(default)s)")
    parser.add_argument("--redis", default=Services.triage_redis_url, help="triage's broker (default: %(default)s)")
    parser.add_argument("--celery-redis", default=Services.celery_redis_url,
                        help="raw Celery's broker (default: %(default)s)")
    parser.add_argument("--no-chart", action="store_true", help="write the Markdown only")
    return parser


def plan_for(options: argparse.Namespace) -> scenarios.Plan:
    plan = scenarios.Plan.quick() if options.quick else scenarios.Plan()
    if options.scale != 1.0:
        plan = plan.scaled(options.scale)
    changes = {"backlog_divisor": options.backlog_divisor, "latency": options.latency, "jitter": options.jitter}
    fields = {**plan.__dict__, **{k: v for k, v in changes.items() if v is not None}}
    return scenarios.Plan(**fields)


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    chosen = [name.strip() for name in options.scenario.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(KNOWN_SCENARIOS))
    if unknown:
        raise SystemExit(f"--scenario: unknown {unknown}; known: {', '.join(KNOWN_SCENARIOS)}")
    plan = plan_for(options)
    today = datetime.now().astimezone()
    out = options.out or RESULTS_DIR / f"{today:%Y-%m-%d}{'-quick' if options.quick else ''}.md"
    make_rows: Callable[[int, str], list[conversations.Row]] = (
        partial(conversations.from_data, options.data, dataset=options.dataset) if options.data
        else conversations.generated)
    source = f"from `{options.data}` ({options.dataset})" if options.data else \
        "generated (deterministic, English and Chinese mixed, one to three turns)"
    load_before, started = _uptime(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as workdir:
        ctx = scenarios.Context(Services(options.postgres, options.redis, options.celery_redis), plan, Path(workdir),
                                uuid.uuid4().hex[:8], make_rows, _settings(options.set), os.cpu_count() or 1)
        ctx.say(f"scenarios {', '.join(chosen)}; load average {load_before}; logs in {workdir}")
        runners: dict[str, Callable[[], ScenarioResult]] = {
            "a": lambda: scenarios.scenario_latency(ctx),
            "b": lambda: scenarios.scenario_overhead(ctx),
            "c": lambda: scenarios.scenario_backlog(ctx, plan.backlog_divisor),
            "c-full": lambda: scenarios.scenario_backlog(ctx, 1.0),
            "d": lambda: scenarios.scenario_webhooks(ctx),
            "submit": lambda: scenarios.scenario_submit(ctx),
            "tokens": lambda: scenarios.scenario_tokens(ctx),
            "evaluate": lambda: evaluation.scenario_evaluate(Path(workdir), plan.evaluate_conversations,
                                                             options.data),
        }
        results = [_guarded(name, runners[name], ctx) for name in chosen]
    minutes = (time.monotonic() - started) / 60
    title = f"triage benchmark, {today:%Y-%m-%d}" + (f" ({options.label})" if options.label else "") + \
        (" - quick mode, not a record" if options.quick else "")
    header = [f"run {today:%Y-%m-%d %H:%M %Z}, {minutes:.1f} min, commit {_commit()}",
              f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}; "
              f"load average (1, 5, 15 min) {load_before} at the start, {_uptime()} at the end",
              "production shape: PostgreSQL, Redis (broker and rate limiter), real `triage worker` processes, the "
              "real `openai` client, against a loopback chat-completions server (tests/fakeapi.py) in its own process",
              f"conversations: {source}",
              "command: `python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]) + "`"]
    if ctx.extra_settings:
        header.append("extra settings: " + ", ".join(f"`{k}={v}`" for k, v in ctx.extra_settings.items()))
    path = write_results(out, title, header, results, chart=not options.no_chart)
    print(path)
    return 0
