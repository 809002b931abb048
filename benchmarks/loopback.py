"""The loopback chat-completions API in a process of its own, so it never shares a GIL with what it serves.

It is ``tests/fakeapi.py``'s :class:`FakeMiMo` with the benchmark's options: latency, jitter, RPM per
model and window, cl100k_base token counts, keep-alive connections and no request log. Run alone::

    python -m benchmarks.loopback --latency 0.5 --jitter 0.05 --rpm 100 --window 60

It prints ``{"base_url": ...}`` on its first line and serves until SIGTERM. :class:`LoopbackAPI`
starts it from the harness and reads its counters (``GET /_stats``).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from triage.cli.processes import stop_gracefully

STOP_GRACE_SECONDS = 5
START_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class APIShape:
    """How the loopback API behaves: seconds per answer (plus or minus ``jitter``), RPM per model."""

    latency: float = 0.0
    jitter: float = 0.0
    rpm: int | None = None
    window_seconds: float = 60.0
    #: Count usage with cl100k_base (needs ``bpe-openai``); else the fixed usage of ``tests/fakeapi.py``.
    count_tokens: bool = True

    def argv(self) -> list[str]:
        argv = ["--latency", str(self.latency), "--jitter", str(self.jitter), "--window", str(self.window_seconds)]
        argv += ["--rpm", str(self.rpm)] if self.rpm is not None else []
        return argv + ([] if self.count_tokens else ["--fixed-usage"])

    def describe(self) -> str:
        text = f"{self.latency * 1000:.0f} ms" + (f" ± {self.jitter * 1000:.0f} ms" if self.jitter else "")
        if self.rpm is not None:
            text += f", {self.rpm} requests per {self.window_seconds:g} s per model"
        return text


class LoopbackAPI:
    """``with LoopbackAPI(shape) as api``: the server running; ``api.base_url``, ``api.stats()``."""

    def __init__(self, shape: APIShape) -> None:
        self.shape = shape
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> LoopbackAPI:
        self._process = subprocess.Popen([sys.executable, "-m", "benchmarks.loopback", *self.shape.argv()],
                                         stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        timer = threading.Timer(START_TIMEOUT_SECONDS, self._process.kill)
        timer.start()
        line = self._process.stdout.readline()
        timer.cancel()
        if not line:
            raise RuntimeError("the loopback API did not start")
        self.base_url = json.loads(line)["base_url"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            stop_gracefully(self._process, STOP_GRACE_SECONDS)

    def stats(self) -> dict[str, Any]:
        """The server's counters now (see ``FakeMiMo.stats``)."""
        answer = httpx.get(f"{self.base_url}/_stats", timeout=10)
        answer.raise_for_status()
        return dict(answer.json())


def difference(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """Counters ``after`` minus ``before`` (``peak_in_flight`` as measured after).

    >>> difference({"calls": 5, "peak_in_flight": 3, "calls_by_model": {"m": 5}}, {"calls": 2, "calls_by_model": {}})
    {'calls': 3, 'peak_in_flight': 3, 'calls_by_model': {'m': 5}}
    """
    result: dict[str, Any] = {}
    for name, value in after.items():
        if name == "calls_by_model":
            old = before.get(name, {})
            result[name] = {model: count - old.get(model, 0) for model, count in value.items()}
        elif name == "peak_in_flight":
            result[name] = value
        else:
            result[name] = value - before.get(name, 0)
    return result


def main(argv: list[str] | None = None) -> int:
    from benchmarks.tokens import count_tokens
    from tests.fakeapi import FakeMiMo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer (default: %(default)s)")
    parser.add_argument("--jitter", type=float, default=0.0, help="uniform ± seconds (default: %(default)s)")
    parser.add_argument("--rpm", type=int, help="answered requests per model and window (default: no limit)")
    parser.add_argument("--window", type=float, default=60.0, help="the RPM window in seconds (default: 60)")
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    parser.add_argument("--fixed-usage", action="store_true", help="report fixed token usage instead of counting")
    options = parser.parse_args(argv)
    api = FakeMiMo(latency=options.latency, jitter=options.jitter, rpm=options.rpm, window_seconds=options.window,
                   count_tokens=None if options.fixed_usage else count_tokens, keep_alive=True, record=False,
                   port=options.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with api:
        print(json.dumps({"base_url": api.base_url}), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
