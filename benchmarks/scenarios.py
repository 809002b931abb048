"""The issue's scenarios, each measured in the same run as its baselines.

(a) 500 ms API latency, 64-way concurrency, batching off; (b) 0 ms latency (pure overhead);
(c) 100 RPM with a backlog (scaled to finish in minutes, or the full 5,000 tickets); (d) signed
webhooks alone; plus ``triage submit`` throughput and the prompt's token counts. Every function
returns a :class:`~benchmarks.report.ScenarioResult` whose checks are the issue's targets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import redis

from benchmarks import celery_noop, webhooks
from benchmarks.conversations import Row
from benchmarks.loopback import APIShape, LoopbackAPI, difference
from benchmarks.procstats import ProcessMeter
from benchmarks.report import Check, Line, ScenarioResult, percentile
from benchmarks.seed import seed_prompt
from benchmarks.stack import (
    REPO,
    Services,
    TicketSummary,
    Triage,
    bench_database,
    celery_ready,
    clean_environ,
    flush_redis,
    free_port,
    http_ready,
    running,
    write_rows,
)
from benchmarks.tokens import count_tokens, system_prompt_tokens

MILLIS = 1000.0
MINUTE = 60.0
#: MiMo's budget per model (requests per minute), and the second our limiter's window adds to the API's for a
#: call's way to the API (not scaled with the windows: the way does not get shorter).
API_RPM = 100
API_WINDOW_SECONDS = 60.0
LIMITER_SLACK_SECONDS = 1.0
#: Budgets so large that scenarios (a) and (b) never wait for the limiter (it still runs).
UNLIMITED_RPM, UNLIMITED_TPM = "1000000000", "1000000000000"
OVERFLOW_MODEL = "mimo-v2.5"
FULL_BACKLOG = 5000
BATCH_MODE, BATCH_SIZE = "TRIAGE__EXTRACTION__BATCH_MODE", "TRIAGE__EXTRACTION__BATCH_SIZE"
OVERFLOW_MODELS = "TRIAGE__EXTRACTION__OVERFLOW_MODELS"
SCHEMA_PATH = REPO / "config" / "ticket_schema.json"
PROGRESS_EVERY_SECONDS = 5.0
DRAIN_POLL_SECONDS = 0.01
#: Slowest drain rate we wait for in (a), (b) and the token runs, in tickets per second.
SLOWEST_RATE = 5.0
MIN_WAIT_SECONDS = 120.0
#: A throughput this close to ``triage submit``'s own rate is bounded by intake, not by the workers.
INTAKE_BOUND_SHARE = 0.9

# The targets (section 6).
BOUND_SHARE_TARGET = 0.80
CELERY_SHARE_TARGET = 0.50
CPU_MS_TARGET = 6.0
BACKLOG_SPEEDUP_TARGET = 8.0
OVERFLOW_SPEEDUP_TARGET = 16.0
WEBHOOK_SHARE_TARGET = 0.40
WEBHOOK_P99_TARGET_MS = 100.0
SUBMIT_RATE_TARGET = 1000.0
PROMPT_TOKENS_TARGET = 250
BATCH_TOKEN_SHARE_TARGET = 1 / 3
TOKEN_BATCH_SIZE = 10


@dataclass(frozen=True)
class Plan:
    """How big this run is: ``full()`` for the results file, ``quick()`` for development."""

    tickets: int = 1000
    seed_sample: int = 40
    workers: int = 2
    threads: int = 32
    latency: float = 0.5
    jitter: float = 0.05
    backlog_divisor: float = 5.0
    webhooks: int = 2000
    webhook_clients: int = 16
    webhook_warmup: int = 100
    submit_lines: int = 10_000
    token_tickets: int = 200
    evaluate_conversations: int = 10_000

    @classmethod
    def quick(cls) -> Plan:
        return cls(tickets=150, seed_sample=10, backlog_divisor=25.0, webhooks=300, webhook_warmup=30,
                   submit_lines=1000, token_tickets=60, evaluate_conversations=1000)

    def scaled(self, factor: float) -> Plan:
        """Every count times ``factor`` (at least one of each)."""
        def size(n: int) -> int:
            return max(1, round(n * factor))
        return Plan(size(self.tickets), size(self.seed_sample), self.workers, self.threads, self.latency,
                    self.jitter, self.backlog_divisor, size(self.webhooks), self.webhook_clients,
                    size(self.webhook_warmup), size(self.submit_lines), size(self.token_tickets),
                    size(self.evaluate_conversations))

    @property
    def concurrency(self) -> int:
        return self.workers * self.threads


@dataclass
class Context:
    """What every scenario shares: services, sizes, conversations, extra settings, a scratch folder."""

    services: Services
    plan: Plan
    workdir: Path
    run_id: str
    make_rows: Callable[[int, str], list[Row]]
    extra_settings: Mapping[str, str] = field(default_factory=dict)
    cores: int = 2

    def rows(self, count: int, tag: str) -> list[Row]:
        return self.make_rows(count, f"{self.run_id}-{tag}")

    def say(self, message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)


def _per(value: float, count: int) -> float | None:
    return value / count if count else None


def _api_columns(stats: Mapping[str, Any], tickets: int) -> dict[str, Any]:
    return {"calls_per_ticket": _per(stats["calls"], tickets),
            "prompt_tokens_per_ticket": _per(stats["prompt_tokens"], tickets),
            "completion_tokens_per_ticket": _per(stats["completion_tokens"], tickets),
            "rate_limited": stats["rate_limited"]}


def _setting_name(env_name: str) -> str:
    """``TRIAGE__EXTRACTION__BATCH_MODE`` -> ``extraction.batch_mode``."""
    return env_name.removeprefix("TRIAGE__").lower().replace("__", ".")


# --------------------------------------------------------------------------------------------
# The subjects: seed loop, raw Celery, triage
# --------------------------------------------------------------------------------------------


def seed_line(ctx: Context, api: LoopbackAPI, rows: list[Row], threads: int, label: str) -> Line:
    """The seed script (``benchmarks.seed``) in a process of its own against ``api``."""
    path = write_rows(rows, ctx.workdir / f"seed-{threads}.jsonl")
    before = api.stats()
    done = subprocess.run([sys.executable, "-m", "benchmarks.seed", "--base-url", api.base_url, "--input", str(path),
                           "--threads", str(threads), "--schema", str(SCHEMA_PATH)],
                          cwd=REPO, env=clean_environ(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return Line(label, None, note=f"failed: {done.stderr.strip()[-300:]}")
    report = json.loads(done.stdout.splitlines()[-1])
    stats = difference(api.stats(), before)
    tickets = report["tickets"]
    note = f"{tickets} tickets" + (f", {report['failed']} failed" if report["failed"] else "")
    return Line(label, tickets / report["seconds"], cpu_ms=_per(report["cpu_seconds"] * MILLIS, tickets),
                peak_rss_mb=report["peak_rss_mb"], note=note, **_api_columns(stats, tickets))


def noop_line(ctx: Context, count: int) -> Line:
    """Raw Celery: ``count`` no-op tasks published, then workers of triage's shape started; until drained."""
    url = ctx.services.celery_redis_url
    flush_redis(url)
    env = {**clean_environ(), celery_noop.BROKER_ENV: url}
    argv = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_noop", "worker", "--pool=threads",
            f"--concurrency={ctx.plan.threads}", f"--queues={celery_noop.QUEUE}", "--loglevel=INFO"]
    app = celery_noop.create_app(url)
    client = redis.Redis.from_url(url)
    try:
        for number in range(count):
            app.send_task(celery_noop.TASK, (number,), queue=celery_noop.QUEUE)
        with running("noop", [argv] * ctx.plan.workers, env, ctx.workdir, celery_ready) as workers, \
                ProcessMeter({str(pid): pid for pid in workers.pids}) as meter:
            seconds = _drained(client, max(MIN_WAIT_SECONDS, count / SLOWEST_RATE)) - workers.first_ready
    finally:
        client.close()
        flush_redis(url)
    return Line("raw Celery no-op, backlog", count / seconds, cpu_ms=_per(meter.total_cpu_seconds * MILLIS, count),
                peak_rss_mb=meter.peak_rss_mb, note=f"{count} tasks")


def _drained(client: redis.Redis, timeout: float) -> float:
    """``time.time()`` when the no-op queue and its unacked messages were first seen empty (twice in a row:
    a message moving from the queue to the unacked hash is briefly in neither)."""
    deadline, empty_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if client.llen(celery_noop.QUEUE) + client.hlen(celery_noop.UNACKED_KEY):
            empty_since = None
        elif empty_since is not None:
            return empty_since
        else:
            empty_since = time.time()
        time.sleep(DRAIN_POLL_SECONDS)
    raise TimeoutError(f"raw Celery did not drain its queue in {timeout:.0f} s")


@dataclass
class TriageRun:
    """One triage run: what the database and the loopback API saw, the workers' CPU and memory."""

    summary: TicketSummary
    stats: dict[str, Any]
    cpu_seconds: float
    peak_rss_mb: float
    refused: dict[str, str]
    timed_out: bool
    #: Backlog runs: when the first worker was ready (epoch seconds); the clock starts there, not at intake.
    workers_ready: float | None = None

    @property
    def drain_seconds(self) -> float | None:
        s = self.summary
        start = self.workers_ready if self.workers_ready is not None else s.first_created
        if start is None or s.last_finished is None:
            return None
        return s.last_finished - start

    @property
    def rate(self) -> float | None:
        seconds = self.drain_seconds
        return self.summary.finished / seconds if seconds else None

    @property
    def intake_rate(self) -> float | None:
        """Tickets per second ``triage submit`` stored (first to last row)."""
        s = self.summary
        span = (s.last_created or 0.0) - (s.first_created or 0.0)
        return s.total / span if span > 0 else None

    def line(self, label: str, ratio_of: float | None, unit_scale: float = 1.0, unit: str = "tickets/s") -> Line:
        s, tickets = self.summary, self.summary.finished
        rate = self.rate
        notes = [f"{s.finished}/{s.total} final"]
        if s.statuses.get("needs_review"):
            notes.append(f"{s.statuses['needs_review']} needs_review")
        if len(s.attempt_outcomes) > 1:  # not every recorded LLM attempt ended the same way
            notes.append("attempts by outcome: " + ", ".join(
                f"{outcome} {n}" for outcome, n in sorted(s.attempt_outcomes.items(), key=lambda item: -item[1])))
        if self.timed_out:
            notes.append("timed out")
        if self.workers_ready is None and rate and self.intake_rate and \
                rate >= INTAKE_BOUND_SHARE * self.intake_rate:
            notes.append(f"bounded by intake: triage submit stored {self.intake_rate:.0f} lines/s")
        if self.refused:
            notes.append(f"refused by the product, so left out: {_describe_refused(self.refused)}")
        latencies = s.latencies if self.workers_ready is None else []  # a backlog's wait is no latency
        return Line(label, rate * unit_scale if rate else None, unit=unit,
                    ratio=(rate / ratio_of) if rate and ratio_of else None,
                    p50=percentile(latencies, 0.50), p95=percentile(latencies, 0.95),
                    p99=percentile(latencies, 0.99), cpu_ms=_per(self.cpu_seconds * MILLIS, tickets),
                    peak_rss_mb=self.peak_rss_mb, note="; ".join(notes), **_api_columns(self.stats, tickets))


def run_triage(ctx: Context, api: LoopbackAPI, rows: list[Row], settings: Mapping[str, str], tag: str,
               timeout: float, skip_if_refused: Sequence[str] = (),
               backlog: bool = False) -> TriageRun | dict[str, str]:
    """``triage submit`` of ``rows`` to ready workers (or, with ``backlog``, first the rows, then the workers);
    wait until every ticket is final.

    Returns the refused settings instead when one of ``skip_if_refused`` is among them (the run
    would only repeat one without them).
    """
    flush_redis(ctx.services.triage_redis_url)
    asked = {"TRIAGE_RATE_LIMIT_RPM": UNLIMITED_RPM, "TRIAGE_RATE_LIMIT_TPM": UNLIMITED_TPM,
             "TRIAGE__RATE_LIMIT__KEY_PREFIX": f"bench:{ctx.run_id}:{tag}", **settings, **ctx.extra_settings}
    path = write_rows(rows, ctx.workdir / f"{tag}.jsonl")
    with bench_database(ctx.services, tag) as database_url:
        triage = Triage(database_url, ctx.services.triage_redis_url, api.base_url, asked, ctx.workdir)
        try:
            triage.upgrade()
            if any(name in triage.refused for name in skip_if_refused):
                return triage.refused
            if backlog:
                triage.submit(path)
            before = api.stats()
            with triage.workers(ctx.plan.workers, ctx.plan.threads) as workers, \
                    ProcessMeter({str(pid): pid for pid in workers.pids}) as meter:
                if not backlog:
                    triage.submit(path)
                finished = triage.wait_finished(len(rows), timeout, _progress(ctx, tag, len(rows)))
            stats = difference(api.stats(), before)
            return TriageRun(triage.summary(), stats, meter.total_cpu_seconds, meter.peak_rss_mb, triage.refused,
                             timed_out=finished < len(rows), workers_ready=workers.first_ready if backlog else None)
        finally:
            triage.close()
            flush_redis(ctx.services.triage_redis_url)


def _progress(ctx: Context, tag: str, total: int) -> Callable[[int], None]:
    started, last = time.monotonic(), [0.0]

    def show(done: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_SECONDS or done == total:
            last[0] = now
            ctx.say(f"{tag}: {done}/{total} tickets final after {now - started:.0f} s")

    return show


def _failed(label: str, exc: Exception) -> Line:
    return Line(label, None, note=f"failed: {type(exc).__name__}: {str(exc)[:300]}")


def _describe_refused(refused: Mapping[str, str]) -> str:
    """``extraction.batch_mode (Extra inputs are not permitted)``, for each refused setting."""
    return ", ".join(f"{_setting_name(name)} ({reason})" for name, reason in refused.items())


def _refused_why(run: TriageRun | None) -> str:
    if run is None or not run.refused:
        return ""
    return f"the product refused {_describe_refused(run.refused)}, so it ran without"


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _capacity_why(run: TriageRun, rate_wanted: float, cores: int) -> str:
    """Why a run fell short of ``rate_wanted``: the cores its CPU per ticket would need, and calls in flight."""
    tickets = run.summary.finished
    if not tickets:
        return "no ticket finished"
    cpu_ms = run.cpu_seconds * MILLIS / tickets
    return (f"workers spent {cpu_ms:.1f} CPU-ms per ticket, so {rate_wanted:.0f} tickets/s would need "
            f"{cpu_ms * rate_wanted / MILLIS:.1f} of the machine's {cores} cores; at most "
            f"{run.stats.get('peak_in_flight', 0)} API calls were in flight at once")


def _own_cpu_why(run: TriageRun, seed: Line) -> str:
    """How much of a ticket's CPU is triage's own, against the seed loop doing the same call, parse and validation."""
    tickets = run.summary.finished
    if not tickets or not seed.cpu_ms:
        return ""
    cpu_ms = run.cpu_seconds * MILLIS / tickets
    return (f"the {seed.subject} spent {seed.cpu_ms:.1f} CPU-ms per ticket on the same call, parse and validation, "
            f"so about {cpu_ms - seed.cpu_ms:.0f} of triage's {cpu_ms:.0f} ms are its own")


# --------------------------------------------------------------------------------------------
# (a) and (b)
# --------------------------------------------------------------------------------------------


def _triage_both_ways(ctx: Context, api: LoopbackAPI, rows: list[Row], settings: Mapping[str, str], tag: str,
                      ratio_of: float | None, result: ScenarioResult) -> tuple[TriageRun | None, Line | None]:
    """triage end to end (``submit`` into ready workers) and on a backlog (workers started after ``submit``),
    both added to ``result``; returns the backlog run and the end-to-end line."""
    timeout = max(MIN_WAIT_SECONDS, len(rows) / SLOWEST_RATE)
    backlog_run: TriageRun | None = None
    end_to_end: Line | None = None
    for label, backlog in (("triage, end to end", False), ("triage, backlog", True)):
        ctx.say(f"{result.title.split(' ')[0]} {label}")
        try:
            outcome = run_triage(ctx, api, rows, settings, f"{tag}-{'backlog' if backlog else 'e2e'}", timeout,
                                 backlog=backlog)
        except Exception as exc:  # a broken product run is reported, the other scenarios still run
            result.lines.append(_failed(label, exc))
            continue
        assert isinstance(outcome, TriageRun)  # nothing to skip: skip_if_refused is empty
        line = outcome.line(label, ratio_of)
        result.lines.append(line)
        if backlog:
            backlog_run = outcome
        else:
            end_to_end = line
    return backlog_run, end_to_end


def _measured_share(run: TriageRun | None, end_to_end: Line | None, ratio_of: float | None) -> tuple[float | None, str]:
    share = run.rate / ratio_of if run and run.rate and ratio_of else None
    text = fmt_share(share) + (f" (end to end {fmt_share(end_to_end.ratio)})" if end_to_end else "")
    return share, text


BOTH_WAYS = ("Two triage rows: *end to end* starts the workers, then `triage submit`s the conversations (rate from "
             "the first ticket stored to the last final, sharing the 2 cores with intake); *backlog* submits first, "
             "then starts the workers (rate from the first worker ready to the last final): the workers alone, as "
             "raw Celery is measured. Targets are checked on the backlog row.")


def scenario_latency(ctx: Context) -> ScenarioResult:
    """(a) the API answers in 500 ms; 2 workers x 32 threads; batching off."""
    plan = ctx.plan
    bound = plan.concurrency / plan.latency
    shape = APIShape(latency=plan.latency, jitter=plan.jitter)
    result = ScenarioResult(
        "a", f"(a) {plan.latency * MILLIS:.0f} ms API latency, {plan.concurrency}-way concurrency",
        f"Loopback API: {shape.describe()}; {plan.tickets} conversations; triage: {plan.workers} workers x "
        f"{plan.threads} threads, `batch_mode = \"never\"`. Ratio: share of the concurrency bound "
        f"{plan.concurrency} / {plan.latency:g} s = {bound:.0f} tickets/s. {BOTH_WAYS}", "bound")
    rows = ctx.rows(plan.tickets, "a")
    with LoopbackAPI(shape) as api:
        for label, sample, threads in (("seed loop (1 at a time)", rows[:plan.seed_sample], 1),
                                       (f"seed loop, {plan.concurrency} threads", rows, plan.concurrency)):
            ctx.say(f"(a) {label}")
            line = seed_line(ctx, api, sample, threads, label)
            line.ratio = line.rate / bound if line.rate else None
            result.lines.append(line)
        run, end_to_end = _triage_both_ways(ctx, api, rows, {BATCH_MODE: "never"}, "a", bound, result)
    share, measured = _measured_share(run, end_to_end, bound)
    result.checks.append(Check(f"triage with batching off at least {BOUND_SHARE_TARGET:.0%} of the concurrency "
                               "bound", measured, share is not None and share >= BOUND_SHARE_TARGET,
                               _join(_capacity_why(run, bound, ctx.cores) if run else "the run failed",
                                     _own_cpu_why(run, result.lines[1]) if run else "",
                                     _refused_why(run))))
    return result


def scenario_overhead(ctx: Context) -> ScenarioResult:
    """(b) the API answers at once: what is left is overhead."""
    plan = ctx.plan
    result = ScenarioResult(
        "b", "(b) 0 ms API latency (pure overhead)",
        f"Loopback API: 0 ms; {plan.tickets} conversations (raw Celery: as many no-op tasks, published before its "
        f"workers start); {plan.workers} workers x {plan.threads} threads everywhere; triage with its default "
        f"batching. Ratio: share of raw Celery's no-op throughput on the same broker and settings. {BOTH_WAYS}",
        "raw Celery")
    rows = ctx.rows(plan.tickets, "b")
    ctx.say("(b) raw Celery no-op")
    try:
        noop = noop_line(ctx, plan.tickets)
    except Exception as exc:
        noop = _failed("raw Celery no-op", exc)
    noop.ratio = 1.0 if noop.rate else None
    result.lines.append(noop)
    ceiling = noop.rate
    with LoopbackAPI(APIShape()) as api:
        for label, threads in (("seed loop (1 at a time)", 1), (f"seed loop, {plan.concurrency} threads",
                                                                 plan.concurrency)):
            ctx.say(f"(b) {label}")
            line = seed_line(ctx, api, rows, threads, label)
            line.ratio = line.rate / ceiling if line.rate and ceiling else None
            result.lines.append(line)
        run, end_to_end = _triage_both_ways(ctx, api, rows, {}, "b", ceiling, result)
    share, measured = _measured_share(run, end_to_end, ceiling)
    cpu = run.cpu_seconds * MILLIS / run.summary.finished if run and run.summary.finished else None
    noop_cpu = f"raw Celery spent {noop.cpu_ms:.1f} CPU-ms per task" if noop.cpu_ms else ""
    result.checks += [
        Check(f"triage at least {CELERY_SHARE_TARGET:.0%} of raw Celery's no-op throughput", measured,
              share is not None and share >= CELERY_SHARE_TARGET,
              _join(_capacity_why(run, ceiling or 0, ctx.cores) if run else "the run failed", noop_cpu)),
        Check(f"worker CPU per ticket under {CPU_MS_TARGET:g} ms", f"{cpu:.1f} ms" if cpu else "-",
              cpu is not None and cpu < CPU_MS_TARGET,
              _join(_own_cpu_why(run, result.lines[2]) if run else "", noop_cpu)),
    ]
    return result


def fmt_share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# --------------------------------------------------------------------------------------------
# (c) the backlog under 100 RPM
# --------------------------------------------------------------------------------------------


def scenario_backlog(ctx: Context, divisor: float) -> ScenarioResult:
    """(c) a backlog at 100 requests per window per model: one model, then with one overflow model.

    ``divisor`` shortens the API's window (60 s) and the backlog (5,000 tickets) alike; the limiter's
    window stays a second longer than the API's. 1 is the issue's full scenario.
    """
    plan = ctx.plan
    count = round(FULL_BACKLOG / divisor)
    api_window = API_WINDOW_SECONDS / divisor
    limiter_window = api_window + LIMITER_SLACK_SECONDS
    one_call_seconds = count / API_RPM * limiter_window
    reference_rate = count / one_call_seconds
    shape = APIShape(latency=plan.latency, jitter=plan.jitter, rpm=API_RPM, window_seconds=api_window)
    scaled = "" if divisor == 1 else f" (scaled 1/{divisor:g}: windows and backlog)"
    result = ScenarioResult(
        "c", f"(c) {API_RPM} RPM, {count:,}-ticket backlog{scaled}",
        f"Loopback API: {shape.describe()}; triage's limiter window {limiter_window:g} s "
        f"(`TRIAGE__RATE_LIMIT__WINDOW_SECONDS`), budget {API_RPM} per window per model; {plan.workers} workers x "
        f"{plan.threads} threads; `batch_mode = \"auto\"`. Ratio: speed-up over one call per ticket "
        f"({count:,} calls / {API_RPM} per {limiter_window:g} s window = {one_call_seconds:.0f} s). Rates in "
        f"tickets per minute{' of scaled time' if divisor != 1 else ''}.", "one call per ticket")
    result.lines.append(Line("one call per ticket (computed)", reference_rate * MINUTE, unit="tickets/min", ratio=1.0,
                             calls_per_ticket=1.0, note=f"{one_call_seconds:.0f} s to drain"))
    rows = ctx.rows(count, f"c{divisor:g}")
    base = {"TRIAGE_RATE_LIMIT_RPM": str(API_RPM), "TRIAGE__RATE_LIMIT__WINDOW_SECONDS": f"{limiter_window:g}",
            BATCH_MODE: "auto"}
    timeout = 2 * one_call_seconds + MIN_WAIT_SECONDS
    variants: tuple[tuple[str, dict[str, str], float, tuple[str, ...]], ...] = (
        ("triage, one model", {}, BACKLOG_SPEEDUP_TARGET, ()),
        (f"triage, + overflow model {OVERFLOW_MODEL}", {OVERFLOW_MODELS: f'["{OVERFLOW_MODEL}"]'},
         OVERFLOW_SPEEDUP_TARGET, (OVERFLOW_MODELS,)))
    for number, (label, extra, target, skip) in enumerate(variants):
        with LoopbackAPI(shape) as api:
            ctx.say(f"(c) {label}: {count} tickets, about {one_call_seconds:.0f} s at one call per ticket")
            try:
                outcome = run_triage(ctx, api, rows, {**base, **extra}, f"c{number}", timeout, skip)
            except Exception as exc:
                result.lines.append(_failed(label, exc))
                result.checks.append(Check(f"{label}: at least {target:g}x faster", "-", False, "the run failed"))
                continue
        if not isinstance(outcome, TriageRun):
            names = _describe_refused({name: reason for name, reason in outcome.items() if name in skip})
            result.lines.append(Line(label, None, unit="tickets/min", note=f"not run: the product refused "
                                     f"{names}; without it the run would repeat the one above"))
            result.checks.append(Check(f"{label}: at least {target:g}x faster than one call per ticket, zero 429s, "
                                       "every ticket final", "not run", False, f"the product refused {names}"))
            continue
        line = outcome.line(label, reference_rate, unit_scale=MINUTE, unit="tickets/min")
        drain = outcome.drain_seconds
        line.note = _join(f"drained in {drain:.0f} s" if drain else "", line.note)
        result.lines.append(line)
        speedup, rejected = line.ratio, outcome.stats["rate_limited"]
        all_final = outcome.summary.finished == count
        met = speedup is not None and speedup >= target and rejected == 0 and all_final
        why = _join(_backlog_bound(ctx, outcome, count, one_call_seconds / target, limiter_window)
                    if speedup and speedup < target else "",
                    f"{rejected} answers were 429" if rejected else "",
                    f"{count - outcome.summary.finished} tickets not final" if not all_final else "",
                    _refused_why(outcome))
        result.checks.append(Check(f"{label}: at least {target:g}x faster than one call per ticket, zero 429s, every "
                                   "ticket final", f"{fmt_share(speedup)}x, {rejected} 429s, "
                                   f"{outcome.summary.finished:,}/{count:,} final", met, why))
    return result


def _backlog_bound(ctx: Context, run: TriageRun, count: int, seconds_wanted: float, window: float) -> str:
    """What set a backlog's drain time: the budget when it took more than one window, else the workers."""
    calls, drain = run.stats["calls"], run.drain_seconds or 0.0
    spent = f"{calls:,} API calls for {count:,} tickets ({calls / count:.2f} per ticket)"
    if drain > window:
        return f"{spent}: the budget of {API_RPM} calls per window sets the drain time"
    return (f"{spent}, all within the first {window:g} s window, so the budget did not bound it: "
            + _capacity_why(run, count / seconds_wanted, ctx.cores))


# --------------------------------------------------------------------------------------------
# (d) webhooks
# --------------------------------------------------------------------------------------------


def _webhook_line(label: str, load: webhooks.LoadResult, meter: ProcessMeter, ratio_of: float | None) -> Line:
    rate = load.accepted / load.seconds if load.seconds else None
    others = len(load.statuses) - load.accepted
    return Line(label, rate, unit="requests/s", ratio=(rate / ratio_of) if rate and ratio_of else None,
                p50=percentile(load.latencies, 0.50), p95=percentile(load.latencies, 0.95),
                p99=percentile(load.latencies, 0.99), cpu_ms=_per(meter.total_cpu_seconds * MILLIS,
                                                                   len(load.statuses)),
                peak_rss_mb=meter.peak_rss_mb,
                note=f"{load.accepted}/{len(load.statuses)} answered 202" + (f", {others} not" if others else ""))


def scenario_webhooks(ctx: Context) -> ScenarioResult:
    """(d) signed webhooks into ``triage serve`` alone (no worker), against a bare FastAPI endpoint."""
    plan = ctx.plan
    result = ScenarioResult(
        "d", "(d) signed webhooks alone",
        f"{plan.webhooks:,} distinct signed `generic` webhooks (Standard Webhooks) from {plan.webhook_clients} client "
        f"threads, after {plan.webhook_warmup} warm-up requests; one uvicorn process, log level WARNING, for both; "
        "triage serve on PostgreSQL + Redis, no worker. Latency columns are per request, in seconds; CPU is the "
        "server's per request. Ratio: share of the bare endpoint's requests/s.", "bare endpoint")
    texts = [row["messages"][0]["text"] for row in ctx.rows(50, "d-texts")]
    warmup = webhooks.signed_webhooks(plan.webhook_warmup, f"{ctx.run_id}-warm", texts)
    load = webhooks.signed_webhooks(plan.webhooks, ctx.run_id, texts)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bare_argv = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.webhooks:create_bare_app", "--port",
                 str(port), "--log-level", "warning"]
    ctx.say("(d) bare FastAPI endpoint")
    bare_rate = None
    try:
        with running("bare", [bare_argv], clean_environ(), ctx.workdir, lambda _: http_ready(base)) as server:
            webhooks.send_load(base, warmup, plan.webhook_clients)
            with ProcessMeter({"bare": server.pids[0]}) as meter:
                bare = webhooks.send_load(base, load, plan.webhook_clients)
        bare_line = _webhook_line("bare FastAPI endpoint", bare, meter, None)
        bare_line.ratio, bare_rate = 1.0, bare_line.rate
        result.lines.append(bare_line)
    except Exception as exc:
        result.lines.append(_failed("bare FastAPI endpoint", exc))
    ctx.say("(d) triage serve")
    flush_redis(ctx.services.triage_redis_url)
    line: Line | None = None
    try:
        with bench_database(ctx.services, "d") as database_url:
            triage = Triage(database_url, ctx.services.triage_redis_url, None,
                            {"TRIAGE_WEBHOOK_SECRET_GENERIC": webhooks.SECRET, "TRIAGE_EXTRACTOR": "rules",
                             **ctx.extra_settings}, ctx.workdir)
            try:
                triage.upgrade()
                with triage.server(port) as server:
                    webhooks.send_load(base, warmup, plan.webhook_clients)
                    with ProcessMeter({"serve": server.pids[0]}) as meter:
                        served = webhooks.send_load(base, load, plan.webhook_clients)
                stored = triage.summary().total
            finally:
                triage.close()
        line = _webhook_line("triage serve", served, meter, bare_rate)
        expected = len(warmup) + len(load)
        line.note = _join(line.note, f"{stored}/{expected} tickets stored")
        result.lines.append(line)
    except Exception as exc:
        result.lines.append(_failed("triage serve", exc))
    finally:
        flush_redis(ctx.services.triage_redis_url)
    share = line.ratio if line else None
    p99_ms = line.p99 * MILLIS if line and line.p99 is not None else None
    cpu_why = (f"triage serve spent {line.cpu_ms:.1f} CPU-ms per request against the bare endpoint's "
               f"{result.lines[0].cpu_ms:.1f}" if line and line.cpu_ms and result.lines[0].cpu_ms else "")
    result.checks += [
        Check(f"triage serve at least {WEBHOOK_SHARE_TARGET:.0%} of the bare endpoint's requests/s", fmt_share(share),
              share is not None and share >= WEBHOOK_SHARE_TARGET, cpu_why),
        Check(f"p99 under {WEBHOOK_P99_TARGET_MS:g} ms", f"{p99_ms:.0f} ms" if p99_ms is not None else "-",
              p99_ms is not None and p99_ms < WEBHOOK_P99_TARGET_MS,
              f"{plan.webhook_clients} clients queue on one server process: {cpu_why}" if cpu_why else ""),
    ]
    return result


# --------------------------------------------------------------------------------------------
# triage submit, tokens
# --------------------------------------------------------------------------------------------


def scenario_submit(ctx: Context) -> ScenarioResult:
    """``triage submit`` of ``plan.submit_lines`` lines into PostgreSQL (Redis broker, no worker)."""
    count = ctx.plan.submit_lines
    result = ScenarioResult("submit", f"`triage submit` of {count:,} lines",
                            "One `triage submit FILE` into PostgreSQL with the Redis broker, no worker; lines/s over "
                            "the command's wall time (start-up included).", "target")
    path = write_rows(ctx.rows(count, "submit"), ctx.workdir / "submit.jsonl")
    flush_redis(ctx.services.triage_redis_url)
    ctx.say(f"triage submit of {count} lines")
    try:
        with bench_database(ctx.services, "submit") as database_url:
            triage = Triage(database_url, ctx.services.triage_redis_url, None,
                            {"TRIAGE_EXTRACTOR": "rules", **ctx.extra_settings}, ctx.workdir)
            try:
                triage.upgrade()
                seconds = triage.submit(path)
                summary = triage.summary()
            finally:
                triage.close()
    except Exception as exc:
        result.lines.append(_failed("triage submit", exc))
        result.checks.append(Check(f"at least {SUBMIT_RATE_TARGET:,.0f} lines/s", "-", False, "the run failed"))
        return result
    finally:
        flush_redis(ctx.services.triage_redis_url)
    rate = count / seconds
    inner = (summary.last_created or 0) - (summary.first_created or 0)
    result.lines.append(Line("triage submit", rate, unit="lines/s", ratio=rate / SUBMIT_RATE_TARGET,
                             cpu_ms=None, note=f"{summary.total:,} stored in {seconds:.1f} s; first to last row "
                             f"{inner:.1f} s ({count / inner:.0f} lines/s)" if inner else ""))
    result.checks.append(Check(f"at least {SUBMIT_RATE_TARGET:,.0f} lines/s on PostgreSQL", f"{rate:.0f} lines/s",
                               rate >= SUBMIT_RATE_TARGET,
                               f"{MILLIS / rate:.1f} ms per line end to end, the process's start-up included"
                               + (f"; rows were written at {count / inner:.0f} lines/s from the first to the last"
                                  if inner else "")))
    return result


def scenario_tokens(ctx: Context) -> ScenarioResult:
    """The system prompt's tokens, and prompt tokens per ticket without and with batches of 10."""
    count = ctx.plan.token_tickets
    today = date.today()
    system = system_prompt_tokens(SCHEMA_PATH, today)
    seed = count_tokens(seed_prompt(today))
    result = ScenarioResult(
        "tokens", "Tokens (cl100k_base)",
        f"The single-ticket system prompt (`TicketPrompt(TicketSchema.load(config/ticket_schema.json)).system(today)`) "
        f"against the seed's hand-written one; then {count} conversations through triage at 0 ms latency, batching "
        f"off and in batches of {TOKEN_BATCH_SIZE} (`batch_mode = \"always\"`, `batch_size = {TOKEN_BATCH_SIZE}`), "
        "prompt tokens per ticket as the loopback API counted them. Ratio: against triage's system prompt, and "
        "per ticket against the run with batching off.", "triage")
    result.lines += [Line("system prompt: triage", float(system), unit="tokens"),
                     Line("system prompt: seed (hand-written)", float(seed), unit="tokens",
                          ratio=seed / system)]
    result.checks.append(Check(f"single-ticket system prompt at most {PROMPT_TOKENS_TARGET} tokens", f"{system} tokens",
                               system <= PROMPT_TOKENS_TARGET,
                               f"the prompt generated from the schema is {system} tokens; the seed's hand-written one "
                               f"for the same schema is {seed}"))
    rows = ctx.rows(count, "tokens")
    per_ticket: dict[str, float | None] = {}
    runs: dict[str, TriageRun] = {}
    for label, settings in (("single", {BATCH_MODE: "never"}),
                            ("batch", {BATCH_MODE: "always", BATCH_SIZE: str(TOKEN_BATCH_SIZE)})):
        ctx.say(f"tokens: triage, {label}")
        with LoopbackAPI(APIShape()) as api:
            try:
                outcome = run_triage(ctx, api, rows, settings, f"tokens-{label}",
                                     max(MIN_WAIT_SECONDS, count / SLOWEST_RATE))
            except Exception as exc:
                result.lines.append(_failed(f"triage, {label}", exc))
                per_ticket[label] = None
                continue
        assert isinstance(outcome, TriageRun)
        runs[label] = outcome
        stats = outcome.stats
        per_ticket[label] = _per(stats["prompt_tokens"], outcome.summary.finished)
        batches = stats["batch_calls"]
        size = f"{stats['batch_conversations'] / batches:.1f} conversations per batch call" if batches else \
            "no batch call"
        name = "triage, batching off" if label == "single" else f"triage, batches of {TOKEN_BATCH_SIZE}"
        line = outcome.line(name, None)
        throughput = f"{line.rate:.0f} tickets/s" if line.rate else ""
        line.rate, line.unit = line.prompt_tokens_per_ticket, "prompt tokens/ticket"
        line.note = _join(size, throughput, line.note)
        result.lines.append(line)
    single, batch = per_ticket.get("single"), per_ticket.get("batch")
    for line in result.lines[2:]:
        if single and line.prompt_tokens_per_ticket is not None:
            line.ratio = line.prompt_tokens_per_ticket / single
    share = batch / single if single and batch else None
    result.checks.append(Check(f"in batches of {TOKEN_BATCH_SIZE}, prompt tokens per ticket at most a third of the "
                               "single-ticket figure", f"{fmt_share(share)} of {single:.0f}" if single else "-",
                               share is not None and share <= BATCH_TOKEN_SHARE_TARGET,
                               _join("no batch call was made: one call per ticket"
                                     if "batch" in runs and not runs["batch"].stats["batch_calls"] else "",
                                     _refused_why(runs.get("batch")))))
    return result
