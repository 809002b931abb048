"""A progress bar for long evaluations: done/total, the rate and the time left.

On a terminal the bar is redrawn in place; otherwise (a log, CI) one line per tenth is written.
The clock is injectable, so the rate and the ETA are tested without waiting.

>>> import io
>>> ticks = iter([0.0, 10.0])
>>> stream = io.StringIO()
>>> show = ProgressBar("llm", stream, clock=lambda: next(ticks))
>>> show(0, 100), show(50, 100)
(None, None)
>>> stream.getvalue().splitlines()[-1]
'llm [###############...............] 50/100  5.0/s  ETA 0:00:10'
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import IO

WIDTH = 30


def eta(seconds: float) -> str:
    """``H:MM:SS``.

    >>> eta(3725.4)
    '1:02:05'
    """
    return str(timedelta(seconds=round(seconds)))


class ProgressBar:
    """A ``progress(done, total)`` callback; the rate counts from the first call."""

    def __init__(self, label: str, stream: IO[str] | None = None, *, clock: Callable[[], float] = time.monotonic,
                 since: int = 0) -> None:
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.started: float | None = None
        self.first_done = since
        self.last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if self.started is None:
            self.started, self.first_done = now, done
        filled = WIDTH * done // max(total, 1)
        elapsed = now - self.started
        rate = (done - self.first_done) / elapsed if elapsed > 0 else 0.0
        timing = f"  {rate:.1f}/s  ETA {eta((total - done) / rate)}" if rate > 0 and done < total else ""
        line = f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{total}{timing}"
        if self.stream.isatty():
            self.stream.write("\r\x1b[K" + line + ("\n" if done >= total else ""))
        elif (tenth := 10 * done // max(total, 1)) != self.last_tenth:
            self.last_tenth = tenth
            self.stream.write(line + "\n")
        self.stream.flush()
