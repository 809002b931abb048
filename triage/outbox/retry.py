"""When a delivery that did not go through is tried again, and when the outbox stops trying.

Two budgets, one per kind of answer (:mod:`triage.delivery.failures`):

- a **transient** answer (429, 5xx, a timeout, no connection, Zendesk's ``DatabaseConflict``) spends
  time: the delivery is retried with backoff until its deadline, ``writeback.give_up_after_hours``
  after its creation or its last ``triage deliveries --retry``, however many attempts that takes. The
  last attempt is made at the deadline (a longer wait is cut to it); a transient answer then fails it;
- any other retryable answer (one the adapter cannot classify), or an attempt whose worker died, spends
  an attempt: at most ``writeback.max_attempts`` of them.

The wait is :func:`triage.ratelimit.backoff.retry_countdown` (exponential with jitter, the peer's ``Retry-After``
as a floor, clamped to ``writeback.retry_after_max_seconds``).

>>> from datetime import datetime, timezone
>>> policy = RetryPolicy(give_up_after=timedelta(hours=1), max_attempts=3,
...                      backoff=RetrySettings(backoff_base_seconds=2, backoff_max_seconds=4))
>>> start = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
>>> policy.next_try(start, start + timedelta(minutes=10), attempts=2, unclassified=0, wait=None).seconds <= 4
True
>>> policy.next_try(start, start + timedelta(minutes=59, seconds=59), attempts=99, unclassified=0, wait=30).seconds
1.0
>>> policy.next_try(start, start + timedelta(hours=1), attempts=100, unclassified=0, wait=None).reason
'gave up after 1 h of transient answers (100 attempts)'
>>> policy.next_try(start, start, attempts=3, unclassified=3, wait=None).reason
'gave up after 3 attempts whose answers could not be classified'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from triage.ratelimit.backoff import retry_countdown
from triage.settings import RetrySettings, Settings

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class TryAgain:
    """Retry in ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class GiveUp:
    """Stop: the delivery fails with ``reason``."""

    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    give_up_after: timedelta
    max_attempts: int
    backoff: RetrySettings

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        writeback = settings.writeback
        return cls(give_up_after=timedelta(hours=writeback.give_up_after_hours), max_attempts=writeback.max_attempts,
                   backoff=RetrySettings(max_retries=writeback.max_attempts,
                                         backoff_base_seconds=settings.retry.backoff_base_seconds,
                                         backoff_max_seconds=settings.retry.backoff_max_seconds,
                                         retry_after_max_seconds=writeback.retry_after_max_seconds))

    def deadline(self, since: datetime) -> datetime:
        """The end of the transient budget of a delivery created (or last retried by hand) at ``since``."""
        return since + self.give_up_after

    def out_of_attempts(self, unclassified: int) -> bool:
        """Whether ``unclassified`` attempts (those that met no transient answer) spent the budget."""
        return unclassified >= self.max_attempts

    def next_try(self, since: datetime, now: datetime, *, attempts: int, unclassified: int,
                 wait: float | None) -> TryAgain | GiveUp:
        """After attempt number ``attempts`` met a retryable answer at ``now``: when to try again, or why not.

        ``unclassified``: how many of the attempts met no transient answer (this one included when its answer
        was not transient); ``wait``: the peer's own wait, if it named one.
        """
        deadline = self.deadline(since)
        if self.out_of_attempts(unclassified):
            return GiveUp(f"gave up after {unclassified} attempts whose answers could not be classified")
        if now >= deadline:
            return GiveUp(f"gave up after {_hours(self.give_up_after)} h of transient answers ({attempts} attempts)")
        seconds = retry_countdown(self.backoff, retries=attempts - 1, retry_after=wait)
        return TryAgain(min(seconds, (deadline - now).total_seconds()))


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / SECONDS_PER_HOUR:g}"
