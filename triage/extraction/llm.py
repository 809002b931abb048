"""The MiMo chat client: one call in, one :class:`Completion` out, or a classified error.

Wraps the real ``openai.OpenAI`` client with ``max_retries=0``: retries belong to the caller
(Celery), which needs to know whether an error is worth retrying and how long the server asked
it to wait. Every request asks for ``response_format={"type": "json_object"}``, sets
``max_completion_tokens`` and MiMo's ``thinking`` switch; streaming gives the same
:class:`Completion` as a plain request.

With ``extraction.logprobs`` the request also asks for ``logprobs: true`` and the completion carries the
content tokens' log probabilities (:class:`~triage.extraction.logprobs.TokenLogprob`). An endpoint that
answers 400 to a request carrying the parameter is asked again at once without it, inside the same
:meth:`LLMClient.complete` (one call for the caller, one attempt on the ticket); when that succeeds the
model is remembered as not taking it (per base URL and model, for the life of the process) and a warning
is logged once. When the second request fails as well, the parameter was not the problem: its error is
raised as any other, and the model keeps being asked for logprobs.

    client = LLMClient.from_settings(load_settings())
    completion = client.complete("mimo-v2-flash", messages, max_completion_tokens=1024, n=1)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionTokenLogprob
from openai.types.completion_usage import CompletionUsage

from triage.extraction.logprobs import TokenLogprob
from triage.extraction.redact import redact
from triage.extraction.types import APIError, Attempt, FatalAPIError, RetryableAPIError
from triage.ratelimit.backoff import parse_retry_after
from triage.scrubbing import scrub_secrets, scrubbed_order, secret_values
from triage.settings import ExtractionSettings, PrivacySettings, Settings, SettingsError
from triage.states.tickets import AttemptOutcome

log = logging.getLogger(__name__)

JSON_OBJECT = {"type": "json_object"}
MILLISECONDS = 1000
#: Every kind of personal data redacted from an API error's text (not only what ``privacy`` takes out of prompts).
ERROR_REDACTION = PrivacySettings()


@dataclass(frozen=True)
class Completion:
    """One answer from the API: its text, why it stopped, token usage and latency.

    >>> Completion('{"problem_type": "consult"}', "stop", "mimo-v2-flash", latency_ms=840).finish_reason
    'stop'
    """

    text: str
    finish_reason: str | None
    model: str
    latency_ms: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    reasoning: str | None = None
    #: The content tokens' log probabilities, when they were asked for and the API sent them.
    logprobs: tuple[TokenLogprob, ...] | None = None


class LogprobsSupport:
    """Which models (per API base URL) answered 400 to ``logprobs``: shared by every client of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: set[tuple[str, str]] = set()

    def refused(self, base_url: str, model: str) -> bool:
        with self._lock:
            return (base_url, model) in self._refused

    def refuse(self, base_url: str, model: str) -> bool:
        """Remember that ``model`` refuses the parameter; True the first time (log it then)."""
        with self._lock:
            first = (base_url, model) not in self._refused
            self._refused.add((base_url, model))
            return first


#: The process's memory of models that refuse ``logprobs``.
LOGPROBS_SUPPORT = LogprobsSupport()


class LLMClient:
    """The chat-completions client for extraction.

    ``options`` supplies the timeout, ``thinking``, ``stream`` and ``temperature``::

        client = LLMClient("https://api.xiaomimimo.com/v1", "sk-...", ExtractionSettings())
        client.complete("mimo-v2-flash", [{"role": "user", "content": "..."}], 1024, n=1)
    """

    def __init__(self, base_url: str, api_key: str, options: ExtractionSettings, secrets: Sequence[str] = (),
                 logprobs_support: LogprobsSupport = LOGPROBS_SUPPORT) -> None:
        self.options = options
        self.base_url = base_url
        self.logprobs_support = logprobs_support
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key,
                                     timeout=options.timeout_seconds, max_retries=0)
        self._secrets = scrubbed_order([api_key, *secrets])

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMClient:
        """The client for ``settings.mimo_base_url`` with ``MIMO_API_KEY``; fails without a key. Its errors are
        scrubbed of every secret ``settings`` holds."""
        if settings.mimo_api_key is None:
            raise SettingsError("MIMO_API_KEY is not set: the LLM client needs a MiMo API key")
        return cls(settings.mimo_base_url, settings.mimo_api_key.get_secret_value(), settings.extraction,
                   secret_values(settings))

    def scrubbed(self, text: str) -> str:
        """An API error's text as it is stored and shown: our secrets (the key first among them) as
        ``<redacted>``, then personal data (e-mail addresses, phone, card and ID numbers an API may echo from
        the prompt) as placeholders, whatever ``privacy`` redacts from prompts."""
        return redact(scrub_secrets(text, self._secrets), ERROR_REDACTION).text

    def close(self) -> None:
        """Release the HTTP connections."""
        self._client.close()

    def complete(self, model: str, messages: Sequence[Mapping[str, str]], max_completion_tokens: int,
                 n: int) -> Completion:
        """Ask ``model`` once; ``n`` is the attempt number recorded on a raised error's attempt.

        Raises :class:`RetryableAPIError` or :class:`FatalAPIError`, each carrying one
        ``api_error`` :class:`Attempt`.
        """
        ask_logprobs = self.options.logprobs and not self.logprobs_support.refused(self.base_url, model)
        request = self._request(model, messages, max_completion_tokens, logprobs=ask_logprobs)
        started = time.monotonic()
        try:
            try:
                return self._send(request, started)
            except openai.BadRequestError as refused:
                if not ask_logprobs:
                    raise
                return self._without_logprobs(request, started, refused)
        except (openai.APIError, MalformedResponseError, json.JSONDecodeError) as exc:
            error = self.scrubbed(f"{type(exc).__name__}: {exc}")
            attempt = Attempt(n=n, model=model, outcome=AttemptOutcome.API_ERROR, error=error,
                              latency_ms=_elapsed_ms(started), max_completion_tokens=max_completion_tokens,
                              status_code=getattr(exc, "status_code", None))
            if not isinstance(exc, openai.APIError):  # a proxy's error page, a cut-off body: try again later
                raise RetryableAPIError(self.scrubbed(f"malformed response body: {exc}"), [attempt]) from exc
            raise classify_error(exc, attempt) from exc

    def _send(self, request: dict[str, Any], started: float) -> Completion:
        return self._stream(request, started) if self.options.stream else self._create(request, started)

    def _without_logprobs(self, request: dict[str, Any], started: float, refused: openai.BadRequestError) -> Completion:
        """The request sent again without ``logprobs`` after a 400; when it succeeds the model is remembered
        as refusing the parameter. Its own error (the 400 had another cause) is raised as it is."""
        request = {name: value for name, value in request.items() if name != "logprobs"}
        completion = self._send(request, started)
        if self.logprobs_support.refuse(self.base_url, request["model"]):
            log.warning("model %s answered 400 to logprobs (%s): asking it without logprobs from now on",
                        request["model"], self.scrubbed(str(refused))[:300])
        return completion

    def _request(self, model: str, messages: Sequence[Mapping[str, str]],
                 max_completion_tokens: int, *, logprobs: bool = False) -> dict[str, Any]:
        thinking = "enabled" if self.options.thinking else "disabled"
        request: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages],
                                   "response_format": JSON_OBJECT,
                                   "max_completion_tokens": max_completion_tokens,
                                   "extra_body": {"thinking": {"type": thinking}}}
        if not self.options.thinking:
            request["temperature"] = self.options.temperature
        if logprobs:
            request["logprobs"] = True
        return request

    def _create(self, request: dict[str, Any], started: float) -> Completion:
        response = self._client.chat.completions.create(**request)
        if not isinstance(response, ChatCompletion) or not response.choices:
            raise MalformedResponseError(f"expected a chat completion, got {str(response)[:200]!r}")
        choice = response.choices[0]
        return _completion(text=choice.message.content or "", finish_reason=choice.finish_reason,
                           model=response.model or request["model"], started=started,
                           usage=response.usage,
                           reasoning=getattr(choice.message, "reasoning_content", None),
                           logprobs=_tokens(choice.logprobs.content if choice.logprobs else None))

    def _stream(self, request: dict[str, Any], started: float) -> Completion:
        text: list[str] = []
        reasoning: list[str] = []
        finish_reason: str | None = None
        usage: CompletionUsage | None = None
        tokens: list[ChatCompletionTokenLogprob] = []
        model = request["model"]
        with self._client.chat.completions.create(**request, stream=True,
                                                  stream_options={"include_usage": True}) as stream:
            for chunk in stream:
                model = chunk.model or model
                usage = chunk.usage or usage
                for choice in chunk.choices[:1]:
                    text.append(choice.delta.content or "")
                    reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
                    finish_reason = choice.finish_reason or finish_reason
                    if choice.logprobs is not None and choice.logprobs.content is not None:
                        tokens.extend(choice.logprobs.content)
        return _completion(text="".join(text), finish_reason=finish_reason, model=model, started=started,
                           usage=usage, reasoning="".join(reasoning) or None, logprobs=_tokens(tokens))


class MalformedResponseError(ValueError):
    """A 200 answer whose body is not a chat completion (e.g. an HTML page from a proxy)."""


def _tokens(content: Sequence[ChatCompletionTokenLogprob] | None) -> tuple[TokenLogprob, ...] | None:
    """The API's token log probabilities as ours (None when it sent none)."""
    if not content:
        return None
    return tuple(TokenLogprob(token.token, token.logprob, tuple(token.bytes) if token.bytes is not None else None)
                 for token in content)


def _completion(*, text: str, finish_reason: str | None, model: str, started: float,
                usage: CompletionUsage | None, reasoning: str | None,
                logprobs: tuple[TokenLogprob, ...] | None = None) -> Completion:
    details = usage.completion_tokens_details if usage else None
    return Completion(text=text, finish_reason=finish_reason, model=model, latency_ms=_elapsed_ms(started),
                      prompt_tokens=usage.prompt_tokens if usage else None,
                      completion_tokens=usage.completion_tokens if usage else None,
                      reasoning_tokens=details.reasoning_tokens if details else None,
                      reasoning=reasoning, logprobs=logprobs)


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * MILLISECONDS)


def classify_error(exc: openai.APIError, attempt: Attempt) -> APIError:
    """Our error for an ``openai`` error: 429 and 5xx, timeouts, connection and stream errors are
    retryable; every other status (400, 401, 402, 403, 404, 421, ...) is fatal.

    >>> import httpx2
    >>> timeout = openai.APITimeoutError(httpx2.Request("POST", "http://mimo/v1/chat/completions"))
    >>> classify_error(timeout, Attempt(1, "mimo-v2-flash", "api_error")).retryable
    True
    """
    message = attempt.error or str(exc)
    if not isinstance(exc, openai.APIStatusError):
        return RetryableAPIError(message, [attempt])
    status = exc.status_code
    retry_after = parse_retry_after(exc.response.headers)
    retryable = status == HTTPStatus.TOO_MANY_REQUESTS or status >= HTTPStatus.INTERNAL_SERVER_ERROR
    error_class = RetryableAPIError if retryable else FatalAPIError
    return error_class(message, [attempt], status_code=status, retry_after=retry_after)
