"""The attempt loop against the loopback fake MiMo, through the real ``openai`` client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.fakeapi import FakeMiMo, error, hang, ok
from triage.conversation import Conversation
from triage.extraction.extractor import LLMExtractor
from triage.extraction.llm import LLMClient
from triage.extraction.types import Attempt, FatalAPIError, RetryableAPIError
from triage.schema import TicketSchema
from triage.settings import ExtractionSettings

SCHEMA = TicketSchema.load(Path(__file__).resolve().parents[1] / "config" / "ticket_schema.json")
MODEL = "mimo-v2-flash"
TODAY = date(2026, 11, 25)
FAST_TIMEOUT = 5.0

TICKET = {"problem_type": "device_fault", "device_model": None, "urgent_level": "high",
          "user_requirements": ["fix the Wi-Fi connection"]}
BAD_ENUM = {**TICKET, "urgent_level": "asap"}
CHINESE_TEXT = "想问一下怎么设置定时功能，设备型号是小米手表 S1，不着急。"

Factory = Callable[..., LLMExtractor]


@pytest.fixture(scope="module")
def api() -> Iterator[FakeMiMo]:
    """One server for the module (its shutdown polls for 0.5 s); each test scripts its own key."""
    with FakeMiMo() as server:
        yield server


@pytest.fixture
def make_extractor(api: FakeMiMo) -> Iterator[Factory]:
    """Build an extractor on the fake API; keyword arguments override ExtractionSettings."""
    clients: list[LLMClient] = []

    def factory(**overrides: Any) -> LLMExtractor:
        settings = ExtractionSettings(**{"timeout_seconds": FAST_TIMEOUT, **overrides})
        client = LLMClient(api.base_url, "test-key", settings)
        clients.append(client)
        return LLMExtractor(client, SCHEMA, MODEL, settings, today=lambda: TODAY)

    yield factory
    for client in clients:
        client.close()


def convo(key: str) -> Conversation:
    return Conversation.from_text(f"[{key}] My speaker can't connect Wi-Fi, please fix it quickly.")


def bodies(api: FakeMiMo, key: str) -> list[dict[str, Any]]:
    return [request["body"] for request in api.requests_for(key)]


def test_valid_answer_gives_a_ticket_and_one_attempt(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-VALID", ok(TICKET))
    result = make_extractor().extract(convo("K-VALID"))
    assert result.ok
    assert result.ticket == TICKET
    assert (result.extractor, result.model, result.failure_reason) == ("llm", MODEL, None)
    assert result.schema_version == SCHEMA.version
    assert result.prompt_version == make_extractor().prompt.version
    [attempt] = result.attempts
    assert attempt == Attempt(n=1, model=MODEL, outcome="valid", raw_output=json.dumps(TICKET),
                              finish_reason="stop", prompt_tokens=161, completion_tokens=89,
                              reasoning_tokens=0, latency_ms=attempt.latency_ms, max_completion_tokens=1024)
    assert isinstance(attempt.latency_ms, int)


def test_request_asks_for_json_object_with_the_budget(api: FakeMiMo, make_extractor: Factory) -> None:
    make_extractor().extract(convo("K-BODY"))
    [body] = bodies(api, "K-BODY")
    assert body["model"] == MODEL
    assert body["response_format"] == {"type": "json_object"}
    assert body["max_completion_tokens"] == 1024
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][0]["content"].startswith("You are MiMo")
    assert "Wednesday, November 25, 2026" in body["messages"][0]["content"]


def test_fenced_answer_is_accepted(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-FENCE", ok(f"```json\n{json.dumps(TICKET)}\n```"))
    result = make_extractor().extract(convo("K-FENCE"))
    assert result.ticket == TICKET
    assert [a.outcome for a in result.attempts] == ["valid"]


def test_invalid_enum_is_reasked_with_the_errors(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-ENUM", ok(BAD_ENUM), ok(TICKET))
    result = make_extractor().extract(convo("K-ENUM"))
    assert result.ticket == TICKET
    assert [(a.n, a.outcome) for a in result.attempts] == [(1, "invalid"), (2, "valid")]
    assert result.attempts[0].error == "$.urgent_level: 'asap' is not one of ['low', 'normal', 'high']"
    reask = bodies(api, "K-ENUM")[1]["messages"]
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"]
    assert reask[2]["content"] == json.dumps(BAD_ENUM)
    assert "$.urgent_level: 'asap' is not one of" in reask[3]["content"]


def test_unparseable_answer_is_reasked_with_the_parse_error(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-PROSE", ok("I think this is a device fault."), ok(TICKET))
    result = make_extractor().extract(convo("K-PROSE"))
    assert result.ticket == TICKET
    assert result.attempts[0].outcome == "unparseable"
    assert "no JSON object found" in (result.attempts[0].error or "")
    assert "no JSON object found" in bodies(api, "K-PROSE")[1]["messages"][3]["content"]


def test_always_invalid_fails_after_the_attempts_without_growing_context(
        api: FakeMiMo, make_extractor: Factory) -> None:
    answers = [{**TICKET, "urgent_level": level} for level in ("asap", "soon", "now")]
    api.script("K-BAD", *(ok(answer) for answer in answers))
    result = make_extractor().extract(convo("K-BAD"))
    assert result.ticket is None
    assert result.failure_reason == "invalid_after_attempts"
    assert result.failure_detail == "$.urgent_level: 'now' is not one of ['low', 'normal', 'high']"
    assert [(a.n, a.outcome) for a in result.attempts] == [(1, "invalid"), (2, "invalid"), (3, "invalid")]
    assert [a.raw_output for a in result.attempts] == [json.dumps(answer) for answer in answers]
    sent = bodies(api, "K-BAD")
    assert [len(body["messages"]) for body in sent] == [2, 4, 4]
    assert [body["messages"][2]["content"] for body in sent[1:]] == [json.dumps(a) for a in answers[:2]]


def test_truncation_doubles_the_budget_without_a_reask(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-TRUNC", ok('{"problem_type": "device_fa', finish_reason="length"), ok(TICKET))
    result = make_extractor().extract(convo("K-TRUNC"))
    assert result.ticket == TICKET
    assert [(a.outcome, a.max_completion_tokens) for a in result.attempts] == [("truncated", 1024),
                                                                                ("valid", 2048)]
    assert result.attempts[0].finish_reason == "length"
    sent = bodies(api, "K-TRUNC")
    assert [body["max_completion_tokens"] for body in sent] == [1024, 2048]
    assert sent[1]["messages"] == sent[0]["messages"]


def test_truncation_budget_is_capped(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-CAP", ok('{"problem_type": "dev', finish_reason="length"))
    extractor = make_extractor(attempts=4, max_completion_tokens=1000, max_completion_tokens_cap=3000)
    result = extractor.extract(convo("K-CAP"))
    assert result.failure_reason == "invalid_after_attempts"
    assert "cut off" in (result.failure_detail or "")
    assert [body["max_completion_tokens"] for body in bodies(api, "K-CAP")] == [1000, 2000, 3000, 3000]
    assert [a.outcome for a in result.attempts] == ["truncated"] * 4


def test_truncation_after_an_invalid_answer_keeps_the_reask(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-MIX", ok(BAD_ENUM), ok('{"problem', finish_reason="length"), ok(TICKET))
    result = make_extractor().extract(convo("K-MIX"))
    assert [a.outcome for a in result.attempts] == ["invalid", "truncated", "valid"]
    sent = bodies(api, "K-MIX")
    assert sent[2]["messages"] == sent[1]["messages"]
    assert sent[2]["messages"][2]["content"] == json.dumps(BAD_ENUM)
    assert [body["max_completion_tokens"] for body in sent] == [1024, 1024, 2048]


def test_server_error_is_retryable(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-500", error(500))
    with pytest.raises(RetryableAPIError) as caught:
        make_extractor().extract(convo("K-500"))
    assert caught.value.status_code == 500
    [attempt] = caught.value.attempts
    assert (attempt.n, attempt.outcome, attempt.status_code, attempt.model) == (1, "api_error", 500, MODEL)
    assert "scripted error" in (attempt.error or "")
    assert len(api.requests_for("K-500")) == 1


def test_rate_limit_carries_retry_after(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-429", error(429, headers={"Retry-After": "7"}))
    with pytest.raises(RetryableAPIError) as caught:
        make_extractor().extract(convo("K-429"))
    assert caught.value.retry_after == 7
    assert caught.value.status_code == 429


def test_bad_key_is_fatal(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-401", error(401, "invalid api key"))
    with pytest.raises(FatalAPIError) as caught:
        make_extractor().extract(convo("K-401"))
    assert not caught.value.retryable
    assert caught.value.attempts[0].status_code == 401


def test_timeout_is_retryable(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-HANG", hang(1.0))
    with pytest.raises(RetryableAPIError) as caught:
        make_extractor(timeout_seconds=0.2).extract(convo("K-HANG"))
    assert caught.value.status_code is None
    assert "timed out" in (caught.value.attempts[0].error or "")


def test_api_error_carries_every_attempt_of_this_call(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-THEN-503", ok(BAD_ENUM), error(503))
    with pytest.raises(RetryableAPIError) as caught:
        make_extractor().extract(convo("K-THEN-503"))
    assert [(a.n, a.outcome) for a in caught.value.attempts] == [(1, "invalid"), (2, "api_error")]
    assert caught.value.attempts[1].max_completion_tokens == 1024


def test_streaming_gives_the_same_result(api: FakeMiMo, make_extractor: Factory) -> None:
    script = (ok(BAD_ENUM), ok({**TICKET, "device_model": "小米音箱 Pro"}))
    api.script("K-PLAIN", *script)
    api.script("K-STREAM", *script)
    plain = make_extractor().extract(convo("K-PLAIN"))
    streamed = make_extractor(stream=True).extract(convo("K-STREAM"))

    def comparable(result: Any) -> list[dict[str, Any]]:
        return [{**asdict(a), "latency_ms": None} for a in result.attempts]

    assert streamed.ticket == plain.ticket == {**TICKET, "device_model": "小米音箱 Pro"}
    assert comparable(streamed) == comparable(plain)
    sent = bodies(api, "K-STREAM")
    assert all(body["stream"] is True for body in sent)
    assert all(body["stream_options"] == {"include_usage": True} for body in sent)


@pytest.mark.parametrize(("thinking", "sent"), [(False, "disabled"), (True, "enabled")])
def test_thinking_flag_is_sent(api: FakeMiMo, make_extractor: Factory, thinking: bool, sent: str) -> None:
    key = f"K-THINK-{sent}"
    make_extractor(thinking=thinking, temperature=0.3).extract(convo(key))
    [body] = bodies(api, key)
    assert body["thinking"] == {"type": sent}
    assert body.get("temperature") == (None if thinking else 0.3)


def test_extra_fields_are_dropped(api: FakeMiMo, make_extractor: Factory) -> None:
    api.script("K-EXTRA", ok({**TICKET, "route": "vip", "confidence": 0.9}))
    result = make_extractor().extract(convo("K-EXTRA"))
    assert result.ticket == TICKET


def test_chinese_text_is_intact(api: FakeMiMo, make_extractor: Factory) -> None:
    ticket = {"problem_type": "consult", "device_model": "小米手表 S1", "urgent_level": "low",
              "user_requirements": ["设置定时功能"]}
    api.script("K-中文", ok(ticket))
    conversation = Conversation.from_text(f"[K-中文] {CHINESE_TEXT}")
    result = make_extractor().extract(conversation)
    assert result.ticket == ticket
    assert "设置定时功能" in (result.attempts[0].raw_output or "")
    [body] = bodies(api, "K-中文")
    assert f"customer: [K-中文] {CHINESE_TEXT}" in body["messages"][1]["content"]


def test_prior_attempts_continue_numbering_limit_and_reask(api: FakeMiMo, make_extractor: Factory) -> None:
    prior = [Attempt(n=1, model=MODEL, outcome="invalid", raw_output=json.dumps(BAD_ENUM),
                     error="$.urgent_level: 'asap' is not one of ['low', 'normal', 'high']",
                     max_completion_tokens=1024),
             Attempt(n=2, model=MODEL, outcome="api_error", status_code=503, max_completion_tokens=1024)]
    api.script("K-PRIOR-REASK", ok({**TICKET, "urgent_level": "soon"}))
    result = make_extractor().extract(convo("K-PRIOR-REASK"), prior)
    assert [(a.n, a.outcome) for a in result.attempts] == [(3, "invalid"), (4, "invalid")]
    assert result.failure_reason == "invalid_after_attempts"
    first = bodies(api, "K-PRIOR-REASK")[0]["messages"]
    assert len(first) == 4
    assert first[2]["content"] == json.dumps(BAD_ENUM)
    assert "'asap' is not one of" in first[3]["content"]


def test_prior_truncation_doubles_the_budget(api: FakeMiMo, make_extractor: Factory) -> None:
    prior = [Attempt(n=1, model=MODEL, outcome="truncated", raw_output='{"pro', finish_reason="length",
                     max_completion_tokens=1024)]
    api.script("K-PRIOR-TRUNC", ok(TICKET))
    result = make_extractor().extract(convo("K-PRIOR-TRUNC"), prior)
    assert result.ticket == TICKET
    assert [(a.n, a.max_completion_tokens) for a in result.attempts] == [(2, 2048)]
    [body] = bodies(api, "K-PRIOR-TRUNC")
    assert len(body["messages"]) == 2


def test_prior_that_used_every_attempt_makes_no_call(api: FakeMiMo, make_extractor: Factory) -> None:
    prior = [Attempt(n=n, model=MODEL, outcome="invalid", raw_output="{}", error=f"problem {n}")
             for n in (1, 2, 3)]
    result = make_extractor().extract(convo("K-DONE"), prior)
    assert (result.ticket, result.attempts) == (None, [])
    assert (result.failure_reason, result.failure_detail) == ("invalid_after_attempts", "problem 3")
    assert api.requests_for("K-DONE") == []
