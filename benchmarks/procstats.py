"""CPU time and peak resident memory of running processes (each with its children), sampled by psutil."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import psutil

SAMPLE_SECONDS = 0.25
MEGABYTE = 1024 * 1024


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live children so far."""
    total = 0.0
    for process in _tree(pid):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def tree_rss_bytes(pid: int) -> int:
    total = 0
    for process in _tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


class ProcessMeter:
    """``with ProcessMeter({"worker-1": pid, ...}) as meter``: CPU used inside the block, peak RSS seen.

    RSS is sampled every :data:`SAMPLE_SECONDS` on a background thread; CPU is read at both ends.
    """

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.cpu_seconds: dict[str, float] = {}
        self.peak_rss: dict[str, int] = dict.fromkeys(self.pids, 0)
        self._start: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ProcessMeter:
        self._start = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._measure_rss()
        self.cpu_seconds = {name: tree_cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._measure_rss()

    def _measure_rss(self) -> None:
        for name, pid in self.pids.items():
            self.peak_rss[name] = max(self.peak_rss[name], tree_rss_bytes(pid))

    @property
    def total_cpu_seconds(self) -> float:
        return sum(self.cpu_seconds.values())

    @property
    def peak_rss_mb(self) -> float:
        """The largest peak of any one process tree, in MiB."""
        return max(self.peak_rss.values(), default=0) / MEGABYTE
