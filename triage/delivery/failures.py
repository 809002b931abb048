"""One error vocabulary for every outbound call: what the outbox does next is the error's class.

- :class:`TransientDeliveryError` (a :class:`RetryableDeliveryError`): the peer is away or busy for a
  while: 429, 5xx, timeouts, connection errors, Zendesk's 409 ``DatabaseConflict``. Retried with backoff
  until ``writeback.give_up_after_hours``, however many attempts that takes. ``wait`` is the peer's own
  ``Retry-After`` (or rate-limit reset) in seconds when it sent one; ``None`` means "back off".
- :class:`RetryableDeliveryError` itself: an answer the adapter cannot classify (a body that is not
  JSON, a list it needs missing from an answer, an unexpected error while sending): retried too, but at
  most ``writeback.max_attempts`` times, because retrying may never help.
- :class:`GoneDeliveryError`: the platform says the record does not exist (Zendesk ``RecordNotFound``,
  Intercom ``not_found`` on the conversation, a 404 its probe shows is not a configuration error). The
  delivery ends, it is not retried, and it is not a failure anyone must fix.
- :class:`SkippedDeliveryError`: the record exists but nothing can change it (a closed Zendesk ticket):
  the delivery ends as ``skipped``, without an alert.
- :class:`FailedDeliveryError`: retrying unchanged cannot help (401/403: credentials or permissions;
  400/422: the platform refused the write; a 404 that means a wrong URL, account, admin or team). The
  message is the platform's own, and names the setting most likely wrong when that is known.

Messages name the platform, the step and the status, never a credential:

>>> str(FailedDeliveryError("zendesk", "tags", "Couldn't authenticate you", status=401))
"zendesk tags: 401 Couldn't authenticate you"
>>> TransientDeliveryError("intercom", "tags", "rate limited", status=429, wait=12.0).wait
12.0
>>> isinstance(TransientDeliveryError("zendesk", "ticket", "Database collision"), RetryableDeliveryError)
True
"""

from __future__ import annotations

from typing import Any

from triage.errors import TriageError


class DeliveryError(TriageError):
    """An outbound call did not do what it should; ``target`` is the platform or receiver, ``step`` the step."""

    def __init__(self, target: str, step: str, message: str, *, status: int | None = None) -> None:
        self.target, self.step, self.message, self.status = target, step, message, status
        shown = f"{status} {message}" if status is not None else message
        super().__init__(f"{target} {step}: {shown}")


class RetryableDeliveryError(DeliveryError):
    """Try again later: after ``wait`` seconds when the peer said so, else after the outbox's backoff.

    This class itself is an answer nobody could classify, retried at most ``writeback.max_attempts``
    times; its subclass :class:`TransientDeliveryError` is retried until the deadline.
    """

    def __init__(self, target: str, step: str, message: str, *, status: int | None = None,
                 wait: float | None = None) -> None:
        super().__init__(target, step, message, status=status)
        self.wait = wait


class TransientDeliveryError(RetryableDeliveryError):
    """The peer is away or busy for now (429, 5xx, a timeout, no connection, a database collision):
    retried until ``writeback.give_up_after_hours`` after the delivery's creation or last manual retry."""


class GoneDeliveryError(DeliveryError):
    """The ticket or conversation does not exist on the platform (any more): end the delivery, do not retry."""


class SkippedDeliveryError(DeliveryError):
    """The ticket exists but takes no change (closed): end the delivery as ``skipped``, do not alert."""


class FailedDeliveryError(DeliveryError):
    """The platform refused the write, or our configuration is wrong: fail now, with the platform's message."""


class UnexplainedNotFoundError(FailedDeliveryError):
    """A helpdesk's 404 its adapter has not explained yet: ``body`` is the answer's JSON (or None),
    ``method`` and ``path`` the request that got it.

    The adapter turns it into :class:`GoneDeliveryError` (the platform says the record does not exist) or
    a :class:`FailedDeliveryError` naming the setting to check; one left unexplained fails the delivery,
    since a 404 is "gone" only when the platform says so.
    """

    def __init__(self, target: str, step: str, message: str, *, body: Any = None, method: str = "",
                 path: str = "") -> None:
        super().__init__(target, step, message, status=404)
        self.body, self.method, self.path = body, method, path
