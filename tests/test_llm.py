"""The MiMo client against the loopback fake API: completions, streaming, error classes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pydantic import SecretStr

from tests.fakeapi import FakeMiMo, error, ok, raw
from triage.extraction.llm import Completion, LLMClient, parse_retry_after
from triage.extraction.types import FatalAPIError, RetryableAPIError
from triage.settings import ExtractionSettings, Settings, SettingsError

MODEL = "mimo-v2-flash"
OPTIONS = ExtractionSettings(timeout_seconds=5.0)
USAGE_WITH_REASONING = {"prompt_tokens": 200, "completion_tokens": 120, "total_tokens": 320,
                        "completion_tokens_details": {"reasoning_tokens": 80}}


@pytest.fixture(scope="module")
def api() -> Iterator[FakeMiMo]:
    with FakeMiMo() as server:
        yield server


@pytest.fixture
def client(api: FakeMiMo) -> Iterator[LLMClient]:
    llm = LLMClient(api.base_url, "test-key", OPTIONS)
    yield llm
    llm.close()


def ask(llm: LLMClient, key: str, n: int = 1) -> Completion:
    return llm.complete(MODEL, [{"role": "user", "content": key}], max_completion_tokens=512, n=n)


def test_completion_carries_text_usage_and_reasoning(api: FakeMiMo, client: LLMClient) -> None:
    api.script("L-OK", ok('{"a": 1}', reasoning="The customer asks.", usage=USAGE_WITH_REASONING))
    completion = ask(client, "L-OK")
    assert completion == Completion(text='{"a": 1}', finish_reason="stop", model=MODEL,
                                    latency_ms=completion.latency_ms, prompt_tokens=200,
                                    completion_tokens=120, reasoning_tokens=80,
                                    reasoning="The customer asks.")
    assert completion.latency_ms >= 0


def test_request_sends_auth_and_mimo_options(api: FakeMiMo, client: LLMClient) -> None:
    ask(client, "L-BODY")
    [request] = api.requests_for("L-BODY")
    assert request["headers"]["authorization"] == "Bearer test-key"
    assert request["body"]["response_format"] == {"type": "json_object"}
    assert request["body"]["max_completion_tokens"] == 512
    assert request["body"]["thinking"] == {"type": "disabled"}
    assert request["body"]["temperature"] == OPTIONS.temperature
    assert "stream" not in request["body"]


def test_streaming_gives_the_same_completion(api: FakeMiMo) -> None:
    reply = ok('{"device_model": "小米音箱", "user_requirements": ["尽快"]}', finish_reason="length")
    api.script("L-PLAIN", reply)
    api.script("L-STREAM", reply)
    plain = LLMClient(api.base_url, "test-key", OPTIONS)
    streaming = LLMClient(api.base_url, "test-key", OPTIONS.model_copy(update={"stream": True}))
    try:
        expected, got = ask(plain, "L-PLAIN"), ask(streaming, "L-STREAM")
    finally:
        plain.close()
        streaming.close()
    assert replace(got, latency_ms=0) == replace(expected, latency_ms=0)
    [request] = api.requests_for("L-STREAM")
    assert request["body"]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_rate_limits_and_server_errors_are_retryable(api: FakeMiMo, client: LLMClient, status: int) -> None:
    key = f"L-RETRY-{status}"
    api.script(key, error(status))
    with pytest.raises(RetryableAPIError) as caught:
        ask(client, key, n=4)
    assert caught.value.status_code == status
    [attempt] = caught.value.attempts
    assert (attempt.n, attempt.outcome, attempt.status_code, attempt.model) == (4, "api_error", status, MODEL)
    assert attempt.max_completion_tokens == 512
    assert len(api.requests_for(key)) == 1, "the openai client itself must not retry"


@pytest.mark.parametrize(("name", "body", "content_type"), [
    ("html", "<html><body>502 Bad Gateway</body></html>", "text/html"),
    ("cut", '{"id": "x", "object": "chat.completion", "choices": [{"index"', "application/json"),
])
def test_a_broken_body_is_a_retryable_api_error(api: FakeMiMo, client: LLMClient, name: str, body: str,
                                                content_type: str) -> None:
    key = f"L-BROKEN-{name}"
    api.script(key, raw(body, content_type=content_type))
    with pytest.raises(RetryableAPIError, match="malformed response body") as caught:
        ask(client, key)
    [attempt] = caught.value.attempts
    assert attempt.outcome == "api_error" and attempt.status_code is None


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 421, 422])
def test_client_errors_are_fatal(api: FakeMiMo, client: LLMClient, status: int) -> None:
    key = f"L-FATAL-{status}"
    api.script(key, error(status, "scripted refusal"))
    with pytest.raises(FatalAPIError) as caught:
        ask(client, key)
    assert caught.value.status_code == status
    assert "scripted refusal" in (caught.value.attempts[0].error or "")


def test_retry_after_http_date(api: FakeMiMo, client: LLMClient) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    api.script("L-DATE", error(503, headers={"Retry-After": format_datetime(when, usegmt=True)}))
    with pytest.raises(RetryableAPIError) as caught:
        ask(client, "L-DATE")
    assert caught.value.retry_after is not None
    assert 25 <= caught.value.retry_after <= 31


def test_retry_after_ms_wins(api: FakeMiMo, client: LLMClient) -> None:
    api.script("L-MS", error(429, headers={"retry-after-ms": "2500", "Retry-After": "9"}))
    with pytest.raises(RetryableAPIError) as caught:
        ask(client, "L-MS")
    assert caught.value.retry_after == 2.5


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    llm = LLMClient(f"http://127.0.0.1:{port}/v1", "test-key", OPTIONS)
    try:
        with pytest.raises(RetryableAPIError) as caught:
            ask(llm, "L-REFUSED")
    finally:
        llm.close()
    assert caught.value.status_code is None
    assert caught.value.attempts[0].outcome == "api_error"


@pytest.mark.parametrize(("headers", "seconds"), [
    ({}, None),
    ({"retry-after": "0"}, 0.0),
    ({"retry-after": "-3"}, 0.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after": "nan"}, None),
    ({"retry-after": "Wed, 25 Nov 2026 09:59:00 GMT"}, 0.0),
    ({"retry-after-ms": "abc", "retry-after": "4"}, 4.0),
])
def test_parse_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    now = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after(headers, now=now) == seconds


def test_from_settings_needs_a_key() -> None:
    with pytest.raises(SettingsError, match="MIMO_API_KEY"):
        LLMClient.from_settings(Settings())


def test_from_settings_uses_base_url_key_and_options(api: FakeMiMo) -> None:
    settings = Settings(mimo_api_key=SecretStr("sk-from-settings"), mimo_base_url=api.base_url,
                        extraction=ExtractionSettings(thinking=True))
    llm = LLMClient.from_settings(settings)
    try:
        ask(llm, "L-SETTINGS")
    finally:
        llm.close()
    [request] = api.requests_for("L-SETTINGS")
    assert request["headers"]["authorization"] == "Bearer sk-from-settings"
    assert request["body"]["thinking"] == {"type": "enabled"}
    assert "temperature" not in request["body"]


def test_an_api_errors_text_is_stored_without_our_secrets_or_personal_data(api: FakeMiMo) -> None:
    """An API may echo the key it refused and what the prompt held; neither is stored or shown as it came."""
    key = "sk-live-0123456789abcdef"
    llm = LLMClient(api.base_url, key, OPTIONS, secrets=["webhook-secret-value"])
    try:
        api.script("leaky", error(401, f"Incorrect API key provided: {key}. The prompt named li.lei@example.com, "
                                       "+86 138 0013 8000 and webhook-secret-value"))
        with pytest.raises(FatalAPIError) as refused:
            ask(llm, "leaky")
        stored = refused.value.attempts[0].error or ""
        assert key not in stored and "li.lei@example.com" not in stored and "138 0013 8000" not in stored
        assert "webhook-secret-value" not in stored and str(refused.value) == stored
        assert "Incorrect API key provided: <redacted>" in stored and "[EMAIL]" in stored and "[PHONE]" in stored
    finally:
        llm.close()
