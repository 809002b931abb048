"""One attempt of one delivery: lease it, send it with :mod:`triage.delivery`, settle it.

:class:`Senders` holds one process's HTTP clients (one write-back adapter per platform that is
on, the events sender, the alerts sender), built when first needed. :func:`attempt` is the
``deliveries`` task's body; it returns what happened, or a :class:`~triage.outbox.outbox.Wait`
that the task turns into a Celery retry with that countdown::

    outcome = attempt(app.outbox, app.senders, app.clock, delivery_id)
    if isinstance(outcome, Wait):
        raise task.retry(countdown=outcome.seconds, max_retries=None)

Outbound URLs come only from the settings: a write-back's platform id fills a checked path
segment of the configured base URL; an event names its endpoint by a hash, looked up in
``[[events.endpoints]]``; an alert's URL is ``[alerts] webhook_url``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from triage.clock import Clock
from triage.delivery import (
    AlertSender,
    DeliveryError,
    EventSender,
    FailedDeliveryError,
    RetryableDeliveryError,
    Write,
    WritebackAdapter,
    build_adapters,
    deliver,
)
from triage.delivery.adapter import RecordStep
from triage.outbox import rules
from triage.outbox.outbox import DeliveryLease, LeaseLostError, Outbox, Skip, Wait
from triage.settings import Settings
from triage.states.deliveries import DeliveryKind

log = logging.getLogger(__name__)


class Senders:
    """One process's outbound clients, shared by its worker threads (httpx clients are thread-safe)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self._unix: Callable[[], float] = lambda: clock.now().timestamp()
        self._lock = threading.Lock()
        self._adapters: dict[str, WritebackAdapter] | None = None
        self._events: EventSender | None = None
        self._alerts: AlertSender | None = None

    def adapter(self, platform: str) -> WritebackAdapter:
        with self._lock:
            if self._adapters is None:
                self._adapters = build_adapters(self.settings.writeback, clock=self._unix)
            adapter = self._adapters.get(platform)
        if adapter is None:
            raise FailedDeliveryError(platform, "writeback", "write-back to it is off now (its URL or token is unset)")
        return adapter

    def events(self) -> EventSender:
        with self._lock:
            if self._events is None:
                self._events = EventSender(self.settings.events, clock=self._unix,
                                           retry_after_max=self.settings.writeback.retry_after_max_seconds)
            return self._events

    def alerts(self) -> AlertSender:
        with self._lock:
            if self._alerts is None:
                self._alerts = AlertSender(self.settings.alerts, clock=self._unix,
                                           retry_after_max=self.settings.writeback.retry_after_max_seconds)
            return self._alerts

    def endpoint_url(self, key: str, name: str) -> str:
        """The configured URL of the endpoint a delivery names by ``key``."""
        for endpoint in self.settings.events.endpoints:
            if rules.endpoint_key(endpoint.url) == key:
                return endpoint.url
        raise FailedDeliveryError(name, "event", "is no longer in [[events.endpoints]]")

    def send(self, lease: DeliveryLease, record: RecordStep) -> None:
        """Make the calls of ``lease``; raises a :class:`~triage.delivery.DeliveryError` when it did not happen."""
        if lease.kind == DeliveryKind.WRITEBACK:
            write = Write.from_json(lease.payload)
            deliver(self.adapter(lease.target), write, done=lease.steps_done, record=record, resumed=lease.resumed)
        elif lease.kind == DeliveryKind.EVENT:
            url = self.endpoint_url(lease.target, lease.target_name)
            self.events().send(url, lease.id, str(lease.payload["body"]).encode())
        else:
            self.alerts().send(str(lease.payload["text"]))

    def close(self) -> None:
        with self._lock:
            for sender in [*(self._adapters or {}).values(), self._events, self._alerts]:
                if sender is not None:
                    sender.close()
            self._adapters = self._events = self._alerts = None


def attempt(outbox: Outbox, senders: Senders, clock: Clock, delivery_id: str) -> str | Wait:
    """Lease ``delivery_id``, send it, settle it: its status afterwards, or a Wait before the next try."""
    lease = outbox.lease(delivery_id, clock.now())
    if isinstance(lease, Skip):
        log.info("delivery %s: nothing to do (%s)", delivery_id, lease.reason)
        return lease.reason
    if isinstance(lease, Wait):
        return lease
    error: DeliveryError | None = None
    try:
        senders.send(lease, lambda step, remarks: outbox.step_done(lease, step, clock.now(), remarks))
    except LeaseLostError as exc:
        log.warning("%s", exc)
        return "lease lost"
    except DeliveryError as exc:
        error = exc
    except SQLAlchemyError:
        raise  # the database is away: the lease runs out and the sweep brings the delivery back
    except Exception as exc:  # a bug must not lose the delivery; its text may hold a URL, so only its type
        log.error("delivery %s: unexpected %s while sending", delivery_id, type(exc).__name__)
        error = RetryableDeliveryError(lease.target, lease.kind, f"unexpected {type(exc).__name__} while sending")
    outcome = outbox.settle(lease, clock.now(), error)
    _log(lease, error, outcome)
    return outcome


def _log(lease: DeliveryLease, error: DeliveryError | None, outcome: Any) -> None:
    if error is None:
        log.info("delivery %s (%s to %s): delivered", lease.id, lease.topic, lease.target_name)
    elif isinstance(outcome, Wait):
        log.warning("delivery %s (%s) attempt %d: %s; retry in %.1fs", lease.id, lease.topic, lease.attempt, error,
                    outcome.seconds)
    else:
        log.warning("delivery %s (%s) %s: %s", lease.id, lease.topic, outcome, error)
