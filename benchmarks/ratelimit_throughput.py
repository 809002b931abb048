"""Hammer one rate limiter budget from several processes and measure what gets through.

Each of ``--processes`` processes runs ``--threads`` threads that, until ``--duration`` is
over, call ``acquire`` and sleep the wait it returns. The report gives:

- ``peak_per_window``: the most grants that certainly fell inside one closed window. A grant
  happens somewhere between its call's start and return, so this counts the grants whose
  whole call fits in the window: never more than the true peak, and it must not exceed ``rpm``
  (placing grants at the call's midpoint instead over-counts: calls queue on the limiter);
- ``throughput_pct``: grants / (rpm * duration / window): with a duration that is a whole
  number of windows, 100 % is the most the budget allows.

Short windows make a quick run (the contract's window is 60 s)::

    .venv/bin/python benchmarks/ratelimit_throughput.py --url redis://127.0.0.1:6379/0 \\
        --processes 4 --threads 4 --rpm 20 --window 2 --duration 10
    .venv/bin/python benchmarks/ratelimit_throughput.py --url sqlite:///var/bench.sqlite3 --window 2

Grant times use ``time.monotonic()``, one clock for every process on Linux.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import threading
import time
import uuid
from bisect import bisect_right
from typing import Any

from sqlalchemy import delete

from triage.ratelimit import DatabaseRateLimiter, RateLimiter, RateLimitState, RedisRateLimiter
from triage.ratelimit.factory import is_redis_url
from triage.settings import RateLimitSettings
from triage.store.db import make_engine
from triage.store.models import Base

Span = tuple[float, float]  # (call started, call returned) of one grant


def build(url: str, settings: RateLimitSettings, window: float) -> RateLimiter:
    if is_redis_url(url):
        return RedisRateLimiter.from_url(url, settings, window_seconds=window)
    return DatabaseRateLimiter(make_engine(url), settings, window_seconds=window)


def hammer(limiter: RateLimiter, model: str, tokens: int, deadline: float) -> list[Span]:
    """One caller: acquire until ``deadline``, sleeping the waits; the spans of its grants."""
    spans: list[Span] = []
    while (now := time.monotonic()) < deadline:
        wait = limiter.acquire(model, tokens)
        if wait == 0:
            spans.append((now, time.monotonic()))
        else:
            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
    return spans


def _process(url: str, settings_json: str, args: dict[str, Any], barrier: Any, results: Any) -> None:
    limiter = build(url, RateLimitSettings.model_validate_json(settings_json), args["window"])
    spans: list[Span] = []
    barrier.wait()
    deadline = time.monotonic() + args["duration"]

    def run() -> None:
        spans.extend(hammer(limiter, args["model"], args["tokens"], deadline))

    threads = [threading.Thread(target=run) for _ in range(args["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(spans)


def peak_per_window(spans: list[Span], window: float) -> int:
    """The most grants whose calls all fit in one closed window of ``window`` seconds."""
    spans = sorted(spans)
    return max((sum(1 for _, end in spans[i:bisect_right(spans, (start + window, float("inf")))]
                    if end <= start + window) for i, (start, _) in enumerate(spans)), default=0)


def run(url: str, settings: RateLimitSettings, *, processes: int, threads: int, window: float, duration: float,
        model: str = "bench-model", tokens: int = 1) -> dict[str, Any]:
    """Run the benchmark and return its report (``spans`` included)."""
    if not is_redis_url(url):
        engine = make_engine(url)
        Base.metadata.create_all(engine, tables=[RateLimitState.__table__])
        engine.dispose()  # nothing open crosses the fork: each process builds its own limiter
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    args = {"window": window, "duration": duration, "model": model, "tokens": tokens, "threads": threads}
    workers = [context.Process(target=_process, args=(url, settings.model_dump_json(), args, barrier, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    spans = [span for _ in workers for span in results.get()]
    for worker in workers:
        worker.join()
    _cleanup(url, settings, model)
    budget = settings.budget(model)
    ideal = duration / window
    return {"processes": processes, "threads": threads, "rpm": budget.rpm, "tpm": budget.tpm, "window": window,
            "duration": duration, "grants": len(spans), "peak_per_window": peak_per_window(spans, window),
            "throughput_pct": round(100 * len(spans) / (budget.rpm * ideal), 1),
            "token_throughput_pct": round(100 * len(spans) * tokens / (budget.tpm * ideal), 1), "spans": spans}


def _cleanup(url: str, settings: RateLimitSettings, model: str) -> None:
    if is_redis_url(url):
        import redis

        client = redis.Redis.from_url(url)
        client.delete(*RedisRateLimiter(client, settings).keys(model))
        client.close()
    else:
        with make_engine(url).begin() as conn:
            conn.execute(delete(RateLimitState).where(RateLimitState.key == f"{settings.key_prefix}:{model}"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0", help="redis://... or a database URL")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rpm", type=int, default=20, help="requests per window")
    parser.add_argument("--tpm", type=int, default=10_000_000, help="tokens per window")
    parser.add_argument("--tokens", type=int, default=1, help="tokens per request")
    parser.add_argument("--window", type=float, default=2.0, help="window seconds (60 in production)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to run (best a whole number of windows)")
    parser.add_argument("--prefix", default=f"bench:{uuid.uuid4().hex[:8]}", help="key prefix (unique by default)")
    parser.add_argument("--json", action="store_true", help="print the report, grant spans included, as JSON")
    options = parser.parse_args(argv)
    settings = RateLimitSettings(rpm=options.rpm, tpm=options.tpm, key_prefix=options.prefix)
    report = run(options.url, settings, processes=options.processes, threads=options.threads, window=options.window,
                 duration=options.duration, tokens=options.tokens)
    if options.json:
        print(json.dumps(report))
        return
    print(" ".join(f"{key}={value}" for key, value in report.items() if key != "spans"))
    if report["peak_per_window"] > report["rpm"]:
        raise SystemExit(f"budget exceeded: {report['peak_per_window']} grants in one window, rpm={report['rpm']}")


if __name__ == "__main__":
    main()
