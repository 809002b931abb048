"""The offline rules extractor: the vendor's samples, Chinese, negation, models, any schema, odd input."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from triage.conversation import Conversation, Message
from triage.extraction.rules import (
    MAX_REQUIREMENT_CHARS,
    MAX_REQUIREMENTS,
    RulesExtractor,
    classify_problem_type,
    classify_urgency,
    find_device_model,
    find_requirements,
    generic_value,
)
from triage.extraction.types import Attempt
from triage.schema import TicketSchema

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "ticket_schema.json"

MIMO_FAULT = ("My speaker can't connect Wi-Fi, I restarted it but no use, hope to solve quickly, "
              "don't know the model.")
MIMO_CONSULT = "Want to ask how to set timing function, device model is Watch S1, no urgent demand."


@pytest.fixture(scope="module")
def schema() -> TicketSchema:
    return TicketSchema.load(SCHEMA_PATH)


@pytest.fixture(scope="module")
def rules(schema: TicketSchema) -> RulesExtractor:
    return RulesExtractor(schema)


def ticket_of(rules: RulesExtractor, text: str) -> dict[str, Any]:
    result = rules.extract(Conversation.from_text(text))
    assert result.ticket is not None, result.failure_detail
    assert rules.schema.validate(result.ticket) == []
    return result.ticket


# --- the two samples from the MiMo Structured Outputs page -----------------------------------


def test_mimo_fault_sample(rules: RulesExtractor) -> None:
    ticket = ticket_of(rules, MIMO_FAULT)
    assert ticket["problem_type"] == "device_fault"
    assert ticket["device_model"] is None
    assert ticket["urgent_level"] == "high"
    assert ticket["user_requirements"]
    assert any("solve quickly" in r for r in ticket["user_requirements"])


def test_mimo_consult_sample(rules: RulesExtractor) -> None:
    ticket = ticket_of(rules, MIMO_CONSULT)
    assert ticket["problem_type"] == "consult"
    assert ticket["device_model"] == "Watch S1"
    assert ticket["urgent_level"] == "low"
    assert ticket["user_requirements"] == ["Want to ask how to set timing function"]


def test_result_metadata(rules: RulesExtractor, schema: TicketSchema) -> None:
    prior = [Attempt(n=1, model="mimo-v2-flash", outcome="api_error", error="HTTP 503")]
    result = rules.extract(Conversation.from_text(MIMO_FAULT), prior)
    assert result.extractor == "rules"
    assert result.attempts == []
    assert result.model is None
    assert result.schema_version == schema.version
    assert result.failure_reason is None
    assert result.ok
    assert set(result.ticket or {}) == set(schema.properties)


def test_reads_customer_messages_only(rules: RulesExtractor) -> None:
    conversation = Conversation((
        Message("customer", "How do I set an alarm?"),
        Message("agent", "Sorry it is broken! This is urgent, we will refund you, terrible."),
    ))
    result = rules.extract(conversation)
    assert result.ticket is not None
    assert result.ticket["problem_type"] == "consult"
    assert result.ticket["urgent_level"] == "normal"


# --- Chinese ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "problem_type", "urgent_level", "device_model"), [
    ("我的小米14 Pro一直重启，很着急，希望尽快修好", "device_fault", "high", "小米14 Pro"),
    ("音箱无法连接WiFi，重启了也没用，请马上处理", "device_fault", "high", None),
    ("手机黑屏了，开不了机", "device_fault", "normal", None),
    ("型号是Redmi Note 12，不着急，想问一下怎么设置闹钟", "consult", "low", "Redmi Note 12"),
    ("请问如何设置定时功能？", "consult", "normal", None),
    ("服务太差了，我要投诉，马上给我退款！", "complaint", "high", None),
    ("你们的客服态度恶劣，我要投诉", "complaint", "normal", None),
    ("谢谢你们送的礼物", "other", "normal", None),
])
def test_chinese(rules: RulesExtractor, text: str, problem_type: str, urgent_level: str,
                 device_model: str | None) -> None:
    ticket = ticket_of(rules, text)
    assert (ticket["problem_type"], ticket["urgent_level"], ticket["device_model"]) == (
        problem_type, urgent_level, device_model)


def test_chinese_requirements(rules: RulesExtractor) -> None:
    ticket = ticket_of(rules, "音箱连不上网，希望尽快处理。另外想换一个新的。")
    assert ticket["user_requirements"] == ["希望尽快处理", "想换一个新的"]


# --- negation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("no urgent demand", "low"),
    ("It's not urgent at all", "low"),
    ("no rush, whenever you can", "low"),
    ("Not in a hurry.", "low"),
    ("不着急，有空再看", "low"),
    ("不是很急", "low"),
    ("不急", "low"),
    ("This is urgent!", "high"),
    ("please fix it asap", "high"),
    ("hope to solve quickly", "high"),
    ("情况紧急", "high"),
    ("请尽快", "high"),
    ("the SMS came immediately after I paid", "normal"),
    ("合约马上到期了", "normal"),
    ("a quick question about the app", "normal"),
    ("hello", "normal"),
])
def test_urgency_and_negation(text: str, expected: str) -> None:
    assert classify_urgency(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("It is not broken, I just want to know how to set the alarm", "consult"),
    ("There's no problem with the phone. How do I change the language?", "consult"),
    ("I don't know how to reset my password", "consult"),
    ("手机没有坏，想问一下怎么设置", "consult"),
    ("手机不停重启", "device_fault"),
    ("My phone keeps rebooting", "device_fault"),
    ("My card was declined at the shop", "device_fault"),
    ("The app crashes when I open it", "device_fault"),
    ("Terrible service, I want a refund", "complaint"),
    ("I want to file a complaint against your company", "complaint"),
    ("I would like to leave some feedback", "other"),
    ("How can I talk to a human agent?", "other"),
    ("", "other"),
])
def test_problem_type(text: str, expected: str) -> None:
    assert classify_problem_type(text) == expected


# --- device model -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("device model is Watch S1, no urgent demand", "Watch S1"),
    ("Model: RA7-2024", "RA7-2024"),
    ("the model number is MDZ-25-DA and it won't start", "MDZ-25-DA"),
    ("my Redmi Note 12 keeps rebooting", "Redmi Note 12"),
    ("Xiaomi 14 Pro screen is black", "Xiaomi 14 Pro"),
    ("my iPhone 15 Pro Max won't charge", "iPhone 15 Pro Max"),
    ("Galaxy S23 Ultra cracked", "Galaxy S23 Ultra"),
    ("Mi Band 8 does not sync", "Mi Band 8"),
    ("型号是小米14 Pro，坏了", "小米14 Pro"),
    ("型号：Redmi K70", "Redmi K70"),
    ("我的P9电池又出问题了", "P9"),
    ("华为Mate 60 Pro 信号差", "华为Mate 60 Pro"),
    ("don't know the model", None),
    ("model is unknown", None),
    ("型号不知道", None),
    ("型号是什么？", None),
    ("I watch 3 films a week on my phone", None),
    ("Smartisan OS1 update broke the launcher", None),
    ("order 113542617735902 has not arrived", None),
    ("", None),
])
def test_device_model(text: str, expected: str | None) -> None:
    assert find_device_model(text) == expected


def test_unknown_model_beats_nothing_but_not_a_named_model(rules: RulesExtractor) -> None:
    assert ticket_of(rules, "It broke, I don't know the model")["device_model"] is None
    assert ticket_of(rules, "My Redmi Note 12 broke, I don't know the exact model")["device_model"] == \
        "Redmi Note 12"


# --- requirements -------------------------------------------------------------------------------


def test_requirements_are_deduplicated_and_bounded() -> None:
    text = " ".join(["Please fix my phone."] * 5 + [f"I need item {i} replaced." for i in range(20)]
                    + ["I want " + "very " * 100 + "much a new one."])
    found = find_requirements(text)
    assert len(found) == MAX_REQUIREMENTS
    assert len({r.casefold() for r in found}) == len(found)
    assert found[0] == "Please fix my phone"
    assert all(len(r) <= MAX_REQUIREMENT_CHARS + 1 for r in find_requirements("I want " + "x" * 500))


def test_requirements_drop_fillers_and_bare_cues() -> None:
    assert find_requirements("Please fix it. please fix it! And I hope you can send a new one, pls") == [
        "Please fix it", "I hope you can send a new one"]


def test_consult_questions_become_requirements(rules: RulesExtractor) -> None:
    assert ticket_of(rules, "How do I locate my card?")["user_requirements"] == ["How do I locate my card?"]


def test_no_requirements_when_nothing_is_asked(rules: RulesExtractor) -> None:
    assert ticket_of(rules, "The screen is cracked.")["user_requirements"] == []


# --- custom schemas ------------------------------------------------------------------------------

CUSTOM_SCHEMAS: list[dict[str, Any]] = [
    {  # other enums, an integer urgency, an extra required field
        "type": "object",
        "properties": {
            "problem_type": {"type": "string", "enum": ["hardware", "billing", "other"]},
            "urgent_level": {"type": "integer", "minimum": 1, "maximum": 5},
            "team": {"type": "string", "minLength": 2},
            "device_model": {"type": "string"},
        },
        "required": ["problem_type", "urgent_level", "team", "device_model"],
        "additionalProperties": False,
    },
    {  # nested objects, $ref, arrays with minItems, const, booleans, numbers
        "type": "object",
        "$defs": {"contact": {"type": "object", "properties": {"email": {"type": ["string", "null"]},
                                                               "vip": {"type": "boolean"}},
                              "required": ["email", "vip"]}},
        "properties": {
            "contact": {"$ref": "#/$defs/contact"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 2},
            "version": {"const": 2},
            "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "sentiment": {"enum": ["positive", "neutral", "negative"], "default": "neutral"},
            "user_requirements": {"type": "array", "items": {"type": "string"}, "maxItems": 1},
        },
        "required": ["contact", "tags", "version", "score", "sentiment", "user_requirements"],
    },
    {  # anyOf / oneOf and a problem_type enum without "other"
        "type": "object",
        "properties": {
            "problem_type": {"enum": ["fault", "question"]},
            "when": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
            "channel": {"oneOf": [{"type": "string", "enum": ["web", "app"]}, {"type": "integer"}]},
            "urgent_level": {"type": "string", "enum": ["low", "normal", "high"]},
        },
        "required": ["problem_type", "when", "channel", "urgent_level"],
    },
    {"type": "object", "properties": {}},
]


@pytest.mark.parametrize("document", CUSTOM_SCHEMAS)
@pytest.mark.parametrize("text", [MIMO_FAULT, MIMO_CONSULT, "", "服务太差了，我要投诉"])
def test_custom_schema_always_valid(document: dict[str, Any], text: str) -> None:
    schema = TicketSchema.from_dict(document)
    result = RulesExtractor(schema).extract(Conversation.from_text(text))
    assert result.ticket is not None, result.failure_detail
    assert schema.validate(result.ticket) == []
    assert set(result.ticket) <= set(schema.properties)


def test_custom_schema_keeps_known_fields_that_fit() -> None:
    schema = TicketSchema.from_dict(CUSTOM_SCHEMAS[2])
    ticket = RulesExtractor(schema).extract(Conversation.from_text(MIMO_FAULT)).ticket
    assert ticket == {"problem_type": "fault", "when": None, "channel": "web", "urgent_level": "high"}


def test_generic_values() -> None:
    assert generic_value({"type": "string", "enum": ["x", "Other"]}) == "Other"
    assert generic_value({"type": "string", "enum": ["x", "y"]}) == "x"
    assert generic_value({"type": ["string", "null"]}) is None
    assert generic_value({"type": "array"}) == []
    assert generic_value({"type": "string"}) == ""
    assert generic_value({"type": "integer", "exclusiveMinimum": 3}) == 4
    assert generic_value({"type": "number", "maximum": -2}) == -2
    assert generic_value({"type": "boolean"}) is False
    assert generic_value({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}) == \
        {"n": 0}


def test_unsatisfiable_schema_fails_with_a_reason() -> None:
    schema = TicketSchema.from_dict({
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
        "required": ["code"],
    })
    result = RulesExtractor(schema).extract(Conversation.from_text("hello"))
    assert result.ticket is None
    assert result.failure_reason == "rules_invalid"
    assert "code" in (result.failure_detail or "")


# --- odd input: always a valid ticket --------------------------------------------------------------

FRAGMENTS = [
    "", " ", "\n\n", "😀😀😀", "🔥💯🙏", "???", "！！！", "。。。", "\x00\x07\x1b", "\u200b\u3000",
    "broken", "not broken", "urgent", "不急", "紧急", "型号是", "model is", "model:", "please", "希望",
    "My phone", "我的手机", "Watch S1", "小米14 Pro", "refund", "退款", "how do I", "怎么", "@中国联通客服",
    "#话题#", "http://t.cn/zHefFr3", "{{Order Number}}", "' OR 1=1 --", "<script>alert(1)</script>",
    "ａｂｃ", "Ｗｉ－Ｆｉ", "مرحبا", "привет", "こんにちは", "a" * 300, "。" * 50, "model is " + "X" * 200,  # noqa: RUF001
]


def _odd_texts(count: int) -> list[str]:
    rng = random.Random(20261125)
    texts = ["", "😀" * 40, "x" * 10_000, "手机坏了" * 2_500, ("broken, urgent, 退款, " * 400)[:10_000],
             "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(10_000))]
    for _ in range(count):
        parts = rng.choices(FRAGMENTS, k=rng.randrange(1, 12))
        texts.append(rng.choice(["", " ", ", ", "，", "\n"]).join(parts))
    return texts


@pytest.mark.parametrize("document", [None, *CUSTOM_SCHEMAS[:3]])
def test_odd_inputs_always_give_a_valid_ticket(schema: TicketSchema, document: dict[str, Any] | None) -> None:
    target = schema if document is None else TicketSchema.from_dict(document)
    rules = RulesExtractor(target)
    for text in _odd_texts(300):
        result = rules.extract(Conversation.from_text(text))
        assert result.ticket is not None, (text[:80], result.failure_detail)
        assert target.validate(result.ticket) == [], text[:80]
        requirements = result.ticket.get("user_requirements", [])
        assert len(requirements) <= MAX_REQUIREMENTS
        assert all(len(r) <= MAX_REQUIREMENT_CHARS + 1 for r in requirements)


def test_empty_conversation(rules: RulesExtractor) -> None:
    result = rules.extract(Conversation(()))
    assert result.ticket == {"problem_type": "other", "device_model": None, "urgent_level": "normal",
                             "user_requirements": []}
