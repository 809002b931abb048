"""A worker's heartbeat: renew the lease of the ticket it holds, every interval, for as long as it works on it.

A lease is short (``worker.lease_seconds``, 60 s) so that a killed worker's tickets come back
within a minute or so; a long LLM call must still never lose its lease while its worker lives, so
the task renews it every ``worker.heartbeat_seconds`` (20 s) from a thread of its own::

    with Heartbeat(lambda: lifecycle.renew(sessions, lease, clock.now(), lease_seconds), heartbeat_seconds):
        outcome = extractor.extract(lease.conversation)   # minutes, if the API is slow

The loop is :func:`beat_until_stopped`, whose waiting is a parameter, so tests drive it with the
app's clock instead of sleeping. A renewal that fails (the database is away for a moment) is
logged and tried again at the next beat; one that finds the lease gone (a person reprocessed the
ticket, or the lease had already run out) ends the heartbeat.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)

#: One renewal: ``True`` while the lease holds, ``False`` once it is lost.
Renew = Callable[[], bool]
#: Wait up to the given seconds; ``True`` when the heartbeat is told to stop.
Wait = Callable[[float], bool]
#: How long leaving a ``with Heartbeat(...)`` block waits for a renewal in progress to end.
STOP_TIMEOUT_SECONDS = 10.0


def beat_until_stopped(renew: Renew, interval_seconds: float, wait: Wait) -> int:
    """Call ``renew`` after every ``interval_seconds`` until ``wait`` says stop or the lease is lost;
    the number of renewals that held.

    >>> answers = iter([True, True, False])
    >>> beat_until_stopped(lambda: next(answers), 20, lambda seconds: False)
    2
    """
    held = 0
    while not wait(interval_seconds):
        try:
            if not renew():
                log.info("heartbeat: the claim is lost (reprocessed, or taken over), no more renewals")
                return held
        except Exception:  # a renewal that failed is tried again at the next beat; the lease still has time
            log.warning("heartbeat: renewing the lease failed; trying again in %.0fs", interval_seconds,
                        exc_info=True)
            continue
        held += 1
    return held


class Heartbeat:
    """Runs :func:`beat_until_stopped` on a daemon thread while the ``with`` block runs."""

    def __init__(self, renew: Renew, interval_seconds: float, *, name: str = "heartbeat") -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=beat_until_stopped, args=(renew, interval_seconds, self._stop.wait),
                                        name=name, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_SECONDS)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()
