"""``extraction.logprobs``: the answer's token log probabilities become each routing value's probability.

Against the loopback OpenAI-wire server through the real ``openai`` client, plain and streamed (SSE),
single and batched; an endpoint that answers 400 to the parameter is asked again without it, in the
same call, and that model is not asked for logprobs again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from tests.factories import CONFIG_PATH, SCHEMA
from tests.fakeapi import FakeMiMo, error, ok
from triage.conversation import Conversation
from triage.extraction.batch_call import extract_batch
from triage.extraction.extractor import LLMExtractor
from triage.extraction.llm import LLMClient, LogprobsSupport
from triage.extraction.logprobs import TokenLogprob, value_confidence
from triage.extraction.types import FatalAPIError
from triage.settings import ExtractionSettings, load_settings
from triage.tickets.routing import Router

ROUTING_FIELDS = Router(load_settings({"TRIAGE_CONFIG": str(CONFIG_PATH)}).routing, SCHEMA).fields
MODEL = "mimo-v2-flash"
OLD_MODEL = "mimo-old"
TODAY = date(2026, 12, 8)
TICKET = {"problem_type": "device_fault", "device_model": "AX3000", "urgent_level": "high",
          "user_requirements": ["fix the Wi-Fi"]}
CONSULT = {"problem_type": "consult", "device_model": None, "urgent_level": "low",
           "user_requirements": ["pair the speaker"]}
#: The logprobs the scripted answers give the routing values' tokens.
SURE = {"device_fault": math.log(0.8), "high": math.log(0.5), "consult": math.log(0.9), "low": math.log(0.6)}


@pytest.fixture(scope="module")
def api() -> Iterator[FakeMiMo]:
    with FakeMiMo(refuse_logprobs={OLD_MODEL}) as server:
        yield server


@pytest.fixture
def support() -> LogprobsSupport:
    """A fresh memory of refusing models per test (the process's own is shared)."""
    return LogprobsSupport()


def _extractor(api: FakeMiMo, support: LogprobsSupport, *, model: str = MODEL, **overrides: Any) -> LLMExtractor:
    settings = ExtractionSettings(**{"timeout_seconds": 5.0, "logprobs": True, **overrides})
    client = LLMClient(api.base_url, "test-key", settings, logprobs_support=support)
    return LLMExtractor(client, SCHEMA, model, settings, today=lambda: TODAY, routing_fields=ROUTING_FIELDS)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_each_routing_value_gets_the_probability_of_its_tokens(api: FakeMiMo, support: LogprobsSupport,
                                                               stream: bool) -> None:
    key = f"LP-ONE-{stream}"
    api.script(key, ok(TICKET, logprobs=SURE))
    extractor = _extractor(api, support, stream=stream)
    result = extractor.extract(Conversation.from_text(f"my AX3000 router drops Wi-Fi {key}"))
    assert result.ticket == TICKET
    assert result.logprob_confidence == pytest.approx({"problem_type": 0.8, "urgent_level": 0.5}, abs=1e-3)
    [request] = api.requests_for(key)
    assert request["body"]["logprobs"] is True
    assert len(result.attempts) == 1
    extractor.client.close()


def test_without_the_setting_nothing_is_asked_and_there_is_no_logprob_confidence(api: FakeMiMo,
                                                                                  support: LogprobsSupport) -> None:
    api.script("LP-OFF", ok(TICKET, logprobs=SURE))
    extractor = _extractor(api, support, logprobs=False)
    result = extractor.extract(Conversation.from_text("router drops Wi-Fi LP-OFF"))
    assert result.ok and result.logprob_confidence is None
    [request] = api.requests_for("LP-OFF")
    assert "logprobs" not in request["body"]
    extractor.client.close()


def test_the_value_the_result_holds_is_the_one_measured(api: FakeMiMo, support: LogprobsSupport) -> None:
    """Two objects that agree on routing: the last one is kept, and its tokens are the ones read."""
    text = ('{"problem_type": "device_fault", "device_model": null, "urgent_level": "high", '
            '"user_requirements": []} {"problem_type": "device_fault", "device_model": "AX3000", '
            '"urgent_level": "high", "user_requirements": ["fix the Wi-Fi"]}')
    api.script("LP-TWO", ok(text, logprobs=SURE))
    extractor = _extractor(api, support)
    result = extractor.extract(Conversation.from_text("router drops Wi-Fi LP-TWO"))
    assert result.ticket == TICKET
    assert result.logprob_confidence == pytest.approx({"problem_type": 0.8, "urgent_level": 0.5}, abs=1e-3)
    extractor.client.close()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_model_that_refuses_logprobs_is_asked_again_without_them_in_the_same_attempt(
        api: FakeMiMo, support: LogprobsSupport, stream: bool, caplog: pytest.LogCaptureFixture) -> None:
    key = f"LP-REFUSED-{stream}"
    api.script(key, ok(TICKET))
    extractor = _extractor(api, support, model=OLD_MODEL, stream=stream)
    with caplog.at_level(logging.WARNING, logger="triage.extraction.llm"):
        first = extractor.extract(Conversation.from_text(f"router drops Wi-Fi {key}"))
        second = extractor.extract(Conversation.from_text(f"router drops Wi-Fi again {key}"))
    assert first.ticket == TICKET and second.ticket == TICKET
    assert [len(first.attempts), len(second.attempts)] == [1, 1]  # the refused request is no attempt
    assert [a.outcome for a in first.attempts] == ["valid"]
    assert first.logprob_confidence is None and second.logprob_confidence is None
    asked = [bool(request["body"].get("logprobs")) for request in api.requests_for(key)]
    assert asked == [True, False, False]  # refused once, then never asked again
    warnings = [r for r in caplog.records if "logprobs" in r.getMessage()]
    assert len(warnings) == 1 and OLD_MODEL in warnings[0].getMessage()
    assert support.refused(api.base_url, OLD_MODEL) and not support.refused(api.base_url, MODEL)
    extractor.client.close()


def test_a_400_for_another_reason_is_raised_and_logprobs_stay_on(api: FakeMiMo, support: LogprobsSupport) -> None:
    api.script("LP-BAD", error(400, "messages: too long"))
    extractor = _extractor(api, support)
    with pytest.raises(FatalAPIError) as raised:
        extractor.extract(Conversation.from_text("router drops Wi-Fi LP-BAD"))
    assert raised.value.status_code == 400
    assert [a.outcome for a in raised.value.attempts] == ["api_error"]
    assert [bool(r["body"].get("logprobs")) for r in api.requests_for("LP-BAD")] == [True, False]
    assert not support.refused(api.base_url, MODEL)
    extractor.client.close()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_batch_answer_maps_each_items_own_tokens(api: FakeMiMo, support: LogprobsSupport, stream: bool) -> None:
    key = f"LP-BATCH-{stream}"
    api.script(key, ok({"c1": TICKET, "c2": CONSULT}, logprobs=SURE))
    extractor = _extractor(api, support, stream=stream)
    run = extract_batch(extractor, [(Conversation.from_text(f"router drops Wi-Fi {key}"), ()),
                                    (Conversation.from_text("how do I pair the speaker"), ())])
    first, second = (item.result for item in run.items)
    assert first is not None and second is not None
    assert (first.ticket, second.ticket) == (TICKET, CONSULT)
    assert first.logprob_confidence == pytest.approx({"problem_type": 0.8, "urgent_level": 0.5}, abs=1e-3)
    assert second.logprob_confidence == pytest.approx({"problem_type": 0.9, "urgent_level": 0.6}, abs=1e-3)
    extractor.client.close()


def test_a_value_split_over_several_tokens_multiplies_their_probabilities() -> None:
    text = '{"problem_type": "device_fault"}'
    pieces = [("{", 0.0), ('"', 0.0), ("problem_type", 0.0), ('":', 0.0), (' "', 0.0), ("device", math.log(0.5)),
              ("_fault", math.log(0.8)), ('"}', 0.0)]
    tokens = [TokenLogprob(token, logprob) for token, logprob in pieces]
    assert value_confidence(text, tokens, {"problem_type": "device_fault"}, ["problem_type"]) == {"problem_type": 0.4}


def test_non_ascii_tokens_line_up_by_their_bytes() -> None:
    """A token may be part of a character: the API's ``bytes`` say how long it is."""
    text = '{"u": "高"}'
    raw = "高".encode()
    tokens = [TokenLogprob('{"u": "', 0.0), TokenLogprob("\\xe9", math.log(0.5), tuple(raw[:1])),
              TokenLogprob("\\x98\\xab", math.log(0.5), tuple(raw[1:])), TokenLogprob('"}', 0.0)]
    assert value_confidence(text, tokens, {"u": "高"}, ["u"]) == {"u": 0.25}


def test_tokens_that_are_not_the_answer_give_nothing() -> None:
    tokens = [TokenLogprob("{}", 0.0)]
    assert value_confidence('{"u": "x"}', tokens, {"u": "x"}, ["u"]) is None
    assert value_confidence('{"u": "x"}', None, {"u": "x"}, ["u"]) is None
