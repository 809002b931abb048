"""One error vocabulary for every outbound call: what the outbox does next is the error's class.

- :class:`RetryableDeliveryError`: 429, 5xx, timeouts, connection errors. ``wait`` is the peer's own
  ``Retry-After`` (or rate-limit reset) in seconds when it sent one; ``None`` means "back off".
- :class:`GoneDeliveryError`: the target no longer exists (a helpdesk's 404: the ticket was deleted). The
  delivery ends, it is not retried, and it is not a failure anyone must fix.
- :class:`FailedDeliveryError`: retrying unchanged cannot help (401/403: credentials or permissions;
  409/422, Freshdesk's 400: the platform refused the write). The message is the platform's own.

Messages name the platform, the step and the status, never a credential:

>>> str(FailedDeliveryError("zendesk", "tags", "Couldn't authenticate you", status=401))
"zendesk tags: 401 Couldn't authenticate you"
>>> RetryableDeliveryError("intercom", "tags", "rate limited", status=429, wait=12.0).wait
12.0
"""

from __future__ import annotations

from triage.errors import TriageError


class DeliveryError(TriageError):
    """An outbound call did not do what it should; ``target`` is the platform or receiver, ``step`` the step."""

    def __init__(self, target: str, step: str, message: str, *, status: int | None = None) -> None:
        self.target, self.step, self.message, self.status = target, step, message, status
        shown = f"{status} {message}" if status is not None else message
        super().__init__(f"{target} {step}: {shown}")


class RetryableDeliveryError(DeliveryError):
    """Try again later: after ``wait`` seconds when the peer said so, else after the outbox's backoff."""

    def __init__(self, target: str, step: str, message: str, *, status: int | None = None,
                 wait: float | None = None) -> None:
        super().__init__(target, step, message, status=status)
        self.wait = wait


class GoneDeliveryError(DeliveryError):
    """The ticket or conversation is gone on the platform (404): end the delivery, do not retry."""


class FailedDeliveryError(DeliveryError):
    """The platform refused the write, or our configuration is wrong: fail now, with the platform's message."""
