"""The model fallback chain: a retired model (404) moves on at once; repeated 5xx open a circuit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakeapi import VALID_TICKET, FakeMiMo, error, ok
from tests.harness import REPO
from triage.conversation import Conversation
from triage.extraction.extractor import LLMExtractor
from triage.extraction.llm import LLMClient
from triage.extraction.model_chain import ModelChain
from triage.extraction.types import FatalAPIError, RetryableAPIError
from triage.schema import TicketSchema
from triage.settings import ExtractionSettings

SCHEMA = TicketSchema.load(REPO / "config" / "ticket_schema.json")
OPTIONS = ExtractionSettings(timeout_seconds=5)


@pytest.fixture
def api() -> Iterator[FakeMiMo]:
    with FakeMiMo() as server:
        yield server


def _extractor(api: FakeMiMo, chain: ModelChain) -> LLMExtractor:
    return LLMExtractor(LLMClient(api.base_url, "sk-test", OPTIONS), SCHEMA, chain, OPTIONS)


def _chain(clock: list[float], failures: int = 2) -> ModelChain:
    return ModelChain(["mimo-v2-flash", "mimo-v2.5"], failures_to_open=failures, open_seconds=30,
                      retired_seconds=3600, clock=lambda: clock[0])


def test_a_retired_model_moves_work_to_the_next_one_at_once(api: FakeMiMo) -> None:
    api.script("[retired]", error(404, "model not found"), ok(VALID_TICKET))
    result = _extractor(api, _chain([0.0])).extract(Conversation.from_text("hello [retired]"))
    assert result.ok and result.model == "mimo-v2.5"
    assert [(a.model, a.outcome, a.status_code) for a in result.attempts] == [
        ("mimo-v2-flash", "api_error", 404), ("mimo-v2.5", "valid", None)]
    assert [r["body"]["model"] for r in api.requests_for("[retired]")] == ["mimo-v2-flash", "mimo-v2.5"]


def test_every_model_retired_is_a_fatal_error(api: FakeMiMo) -> None:
    api.script("[all-gone]", error(404, "model not found"))
    with pytest.raises(FatalAPIError) as caught:
        _extractor(api, _chain([0.0])).extract(Conversation.from_text("hello [all-gone]"))
    assert [a.model for a in caught.value.attempts] == ["mimo-v2-flash", "mimo-v2.5"]


def test_repeated_server_errors_open_the_circuit_then_it_closes_again(api: FakeMiMo) -> None:
    clock = [0.0]
    chain = _chain(clock, failures=2)
    extractor = _extractor(api, chain)
    api.script("[flaky]", error(503), error(503), ok(VALID_TICKET), ok(VALID_TICKET))
    for _ in range(2):
        with pytest.raises(RetryableAPIError):
            extractor.extract(Conversation.from_text("hello [flaky]"))
    assert extractor.extract(Conversation.from_text("hello [flaky]")).model == "mimo-v2.5"
    clock[0] = 31.0  # the circuit's open time has passed: one trial call on the first model
    assert extractor.extract(Conversation.from_text("hello [flaky]")).model == "mimo-v2-flash"
    assert chain.pick() == "mimo-v2-flash"
