"""Which model to ask: the configured models in order, skipping retired or failing ones.

A 404 means the model id is retired or missing: it is skipped for ``retired_seconds``. A run of
``failures_to_open`` server errors (5xx) opens its circuit for ``open_seconds``; then one call
is let through again (half-open), and a success closes it. The state lives in each worker
process (it is a hint about the API, not a ticket's state, so losing it loses nothing).

>>> chain = ModelChain(["mimo-v2-flash", "mimo-v2.5"], failures_to_open=2, open_seconds=60,
...                    retired_seconds=3600, clock=lambda: 0.0)
>>> chain.pick()
'mimo-v2-flash'
>>> chain.failed("mimo-v2-flash", 404)
>>> chain.pick()
'mimo-v2.5'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

NOT_FOUND = 404
SERVER_ERROR = 500


@dataclass
class _Circuit:
    failures: int = 0
    open_until: float = 0.0


class ModelChain:
    """Thread-safe model selection over an ordered list of model ids."""

    def __init__(self, models: Sequence[str], *, failures_to_open: int, open_seconds: float,
                 retired_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not models:
            raise ValueError("at least one model is needed")
        self.models = list(dict.fromkeys(models))
        self.failures_to_open = failures_to_open
        self.open_seconds = open_seconds
        self.retired_seconds = retired_seconds
        self._clock = clock
        self._circuits = {model: _Circuit() for model in self.models}
        self._lock = threading.Lock()

    @classmethod
    def single(cls, model: str) -> ModelChain:
        """A chain of one model (no fallback)."""
        return cls([model], failures_to_open=1, open_seconds=0, retired_seconds=0)

    def pick(self) -> str:
        """The first model whose circuit is closed (or due a trial); the first one when none is."""
        now = self._clock()
        with self._lock:
            for model in self.models:
                if self._circuits[model].open_until <= now:
                    return model
        return self.models[0]

    def available(self, model: str) -> bool:
        """Whether ``model``'s circuit is closed (or due a trial) now; a model never seen is available."""
        now = self._clock()
        with self._lock:
            circuit = self._circuits.get(model)
            return circuit is None or circuit.open_until <= now

    def has_alternative(self, model: str) -> bool:
        """Whether another model of the chain has its circuit closed now (overflow models do not count: they are
        for budget, not failure)."""
        now = self._clock()
        with self._lock:
            return any(self._circuits[m].open_until <= now for m in self.models if m != model)

    def failed(self, model: str, status_code: int | None) -> None:
        """Count an API error of ``model``: a 404 retires it, repeated 5xx open its circuit."""
        now = self._clock()
        with self._lock:
            circuit = self._circuits.setdefault(model, _Circuit())  # an overflow model too (triage.extraction.budget)
            if status_code == NOT_FOUND:
                circuit.open_until = now + self.retired_seconds
            elif status_code is not None and status_code >= SERVER_ERROR:
                circuit.failures += 1
                if circuit.failures >= self.failures_to_open:
                    circuit.open_until, circuit.failures = now + self.open_seconds, 0

    def succeeded(self, model: str) -> None:
        with self._lock:
            self._circuits[model] = _Circuit()
