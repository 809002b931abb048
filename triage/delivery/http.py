"""One HTTP peer (a helpdesk, an events endpoint, a Slack webhook): an httpx client with a
timeout on every phase and no redirects followed, whose answers are sorted into the error
vocabulary of :mod:`triage.delivery.failures`, with the peer's own message and none of our secrets.

>>> helpdesk_outcome(200) is None, helpdesk_outcome(404).__name__, helpdesk_outcome(429).__name__
(True, 'UnexplainedNotFoundError', 'TransientDeliveryError')
>>> {helpdesk_outcome(status).__name__ for status in (400, 401, 403, 409, 422, 301)}
{'FailedDeliveryError'}
>>> message_of({"type": "error.list", "errors": [{"code": "not_found", "message": "Resource Not Found"}]})
'not_found: Resource Not Found'
>>> message_of({"error": "RecordInvalid", "description": "Record validation errors",
...             "details": {"priority": [{"description": "Priority: is invalid"}]}})
'RecordInvalid: Record validation errors: Priority: is invalid'
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from triage.ratelimit.backoff import parse_retry_after

from .failures import (
    DeliveryError,
    FailedDeliveryError,
    RetryableDeliveryError,
    TransientDeliveryError,
    UnexplainedNotFoundError,
)

USER_AGENT = "triage"
#: The longest peer message kept in an error (the rest is cut).
MAX_MESSAGE_CHARS = 300
REDACTED = "<redacted>"
#: A secret shorter than this is not scrubbed from messages (it would mangle ordinary words).
MIN_SCRUBBED_CHARS = 4
TIMEOUT_STATUS, RATE_LIMITED = 408, 429

#: httpx logs every request with its full URL at INFO, and an outbound URL can be a credential (a Slack
#: webhook, an endpoint with a token in its query): its logger keeps to warnings.
logging.getLogger("httpx").setLevel(logging.WARNING)

Outcome = type[DeliveryError] | None
Classify = Callable[[int], Outcome]
#: A peer's own reading of an error answer (step, answer): the error it means, or None for the status's outcome.
ReadAnswer = Callable[[str, httpx.Response], DeliveryError | None]
NOT_FOUND = 404


def transient_status(status: int) -> bool:
    """408, 429 and 5xx: the peer is busy or away for now."""
    return status in (TIMEOUT_STATUS, RATE_LIMITED) or status >= 500


def helpdesk_outcome(status: int) -> Outcome:
    """A helpdesk's answer: 2xx done, 408/429/5xx transient, 404 for the adapter to explain (gone or a
    misaddressed request), anything else (3xx, 4xx) failed."""
    if 200 <= status < 300:
        return None
    if status == NOT_FOUND:
        return UnexplainedNotFoundError
    if transient_status(status):
        return TransientDeliveryError
    return FailedDeliveryError


def build_client(base_url: str, timeout: float, *, headers: Mapping[str, str] | None = None,
                 auth: httpx.Auth | None = None) -> httpx.Client:
    """An httpx client for one configured peer: every phase times out, redirects are not followed."""
    return httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout), follow_redirects=False,
                        headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
                        auth=auth)


def message_of(data: Any) -> str:
    """The human part of an error body, whatever shape the platform gives it."""
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        return "; ".join(message_of(item) for item in data)
    if not isinstance(data, dict):
        return json.dumps(data)
    parts: list[str] = []
    if isinstance(data.get("errors"), list | str):
        parts.append(_error_items(data["errors"]))
    head = data.get("error_human") or data.get("error")
    if head is not None:
        parts.append(message_of(head))
    for key in ("title", "message", "description"):
        if isinstance(data.get(key), str):
            parts.append(data[key])
    if isinstance(data.get("details"), dict):
        parts.append(_details(data["details"]))
    return ": ".join(part for part in parts if part) or json.dumps(data, ensure_ascii=False)


def _error_items(errors: list[Any] | str) -> str:
    if isinstance(errors, str):
        return errors
    shown = []
    for item in errors:
        if not isinstance(item, dict):
            shown.append(str(item))
            continue
        text = ": ".join(str(item[key]) for key in ("code", "message") if item.get(key))
        shown.append(f"{item['field']}: {text}" if item.get("field") else text)
    return "; ".join(shown)


def _details(details: dict[str, Any]) -> str:
    found = []
    for field, entries in details.items():
        for entry in entries if isinstance(entries, list) else [entries]:
            found.append(str(entry.get("description") or entry) if isinstance(entry, dict) else f"{field}: {entry}")
    return "; ".join(found)


class Peer:
    """One configured peer. ``secrets`` are scrubbed from every message it produces.

    ``reset_header`` names a header holding the unix time a rate limit resets (Intercom's
    ``X-RateLimit-Reset``), read when a 429 has no ``Retry-After``; ``rate_limited_wait`` is the
    wait for a 429 that names none at all (``None``: the outbox's backoff). Waits are clamped to
    ``retry_after_max``; ``clock`` is unix seconds. ``read_answer`` is the peer's own reading of an error
    answer before its status decides (Zendesk: a 409 ``DatabaseConflict`` is transient, a 422 on a closed
    ticket is skipped).
    """

    def __init__(self, target: str, client: httpx.Client, *, retry_after_max: float,
                 secrets: Sequence[str] = (), reset_header: str | None = None,
                 rate_limited_wait: float | None = None, classify: Classify = helpdesk_outcome,
                 read_answer: ReadAnswer | None = None, clock: Callable[[], float] = time.time) -> None:
        self.target, self.client = target, client
        self.retry_after_max = retry_after_max
        self._secrets = tuple(secret for secret in secrets if len(secret) >= MIN_SCRUBBED_CHARS)
        self.reset_header, self.rate_limited_wait = reset_header, rate_limited_wait
        self.classify, self.read_answer, self.clock = classify, read_answer, clock

    def close(self) -> None:
        self.client.close()

    def request(self, step: str, method: str, url: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                content: bytes | None = None, headers: Mapping[str, str] | None = None,
                tolerate: Callable[[httpx.Response], bool] | None = None) -> httpx.Response:
        """Send one request; raise the error its answer calls for, unless ``tolerate`` accepts the answer."""
        try:
            response = self.client.request(method, url, json=json, params=params, content=content, headers=headers)
        except httpx.TimeoutException:
            raise self.transient(step, f"no answer within {self.client.timeout.read:g} s") from None
        except httpx.UnsupportedProtocol:
            raise FailedDeliveryError(self.target, step, "the configured URL is not http(s)") from None
        except httpx.TransportError as exc:
            raise self.transient(step, f"could not reach it ({type(exc).__name__})") from None
        outcome = self.classify(response.status_code)
        if outcome is None or (tolerate is not None and tolerate(response)):
            return response
        own = self.read_answer(step, response) if self.read_answer is not None else None
        if own is not None:
            raise own
        message = self.message(response)
        if outcome is TransientDeliveryError:
            raise self.transient(step, message, status=response.status_code, wait=self.wait(response))
        if outcome is RetryableDeliveryError:
            raise self.retry(step, message, status=response.status_code, wait=self.wait(response))
        if outcome is UnexplainedNotFoundError:
            raise UnexplainedNotFoundError(self.target, step, message, body=body_of(response), method=method, path=url)
        raise outcome(self.target, step, message, status=response.status_code)

    def json(self, step: str, response: httpx.Response) -> Any:
        """The answer's JSON body; a body that is not JSON (a proxy's HTML page) is an answer nobody can
        classify: retried, at most ``writeback.max_attempts`` times."""
        try:
            return response.json()
        except ValueError:
            raise self.retry(step, f"answered {response.status_code} with a body that is not JSON",
                             status=response.status_code) from None

    def retry(self, step: str, message: str, *, status: int | None = None,
              wait: float | None = None) -> RetryableDeliveryError:
        """An answer the adapter cannot classify: retried at most ``writeback.max_attempts`` times."""
        return RetryableDeliveryError(self.target, step, message, status=status, wait=wait)

    def transient(self, step: str, message: str, *, status: int | None = None,
                  wait: float | None = None) -> TransientDeliveryError:
        """The peer is busy or away for now: retried until the delivery's deadline."""
        return TransientDeliveryError(self.target, step, message, status=status, wait=wait)

    def message(self, response: httpx.Response) -> str:
        """The peer's own words about an error answer, cut short, with our secrets scrubbed."""
        if response.is_redirect:
            text = "answered with a redirect, which is not followed: check the configured URL"
        else:
            try:
                text = message_of(response.json())
            except ValueError:
                text = response.text
        text = " ".join(text.split())[:MAX_MESSAGE_CHARS] or response.reason_phrase or "no message"
        return self.scrub(text)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def wait(self, response: httpx.Response) -> float | None:
        """Seconds the peer asked us to wait: Retry-After, else the reset header, else the 429 default."""
        now = self.clock()
        seconds = parse_retry_after(response.headers, now=datetime.fromtimestamp(now, UTC))
        if seconds is None and self.reset_header is not None:
            reset = _number(response.headers.get(self.reset_header))
            seconds = None if reset is None else reset - now
        if seconds is None and response.status_code == RATE_LIMITED:
            seconds = self.rate_limited_wait
        return None if seconds is None else min(max(seconds, 0.0), self.retry_after_max)


def body_of(response: httpx.Response) -> Any:
    """The answer's JSON body, or None when it has none or it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def error_codes(body: Any) -> list[str]:
    """The machine-readable codes of an error body: Zendesk's ``error``, Intercom's ``errors[].code``.

    >>> error_codes({"error": "RecordNotFound", "description": "Not found"})
    ['RecordNotFound']
    >>> error_codes({"type": "error.list", "errors": [{"code": "not_found", "message": "Conversation not found"}]})
    ['not_found']
    >>> error_codes("<html>Not Found</html>"), error_codes(None)
    ([], [])
    """
    if not isinstance(body, dict):
        return []
    codes = [body["error"]] if isinstance(body.get("error"), str) else []
    if isinstance(body.get("errors"), list):
        codes += [str(item["code"]) for item in body["errors"] if isinstance(item, dict) and item.get("code")]
    return codes


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None
