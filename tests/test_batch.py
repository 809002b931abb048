"""Batched answers: each asked key read from its own span; what is unusable is reported per key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from triage.extraction.batch_answer import BatchAnswer, BatchItem, UnusableItem, parse_batch_answer

KEYS = ["c1", "c2", "c3"]
FAULT: dict[str, Any] = {"problem_type": "device_fault", "device_model": "AX3000", "urgent_level": "high",
                         "user_requirements": ["fix the router"]}
CONSULT: dict[str, Any] = {"problem_type": "consult", "device_model": "Watch S1", "urgent_level": "low",
                           "user_requirements": ["set a timer"]}
OTHER: dict[str, Any] = {"problem_type": "other", "device_model": None, "urgent_level": "normal",
                         "user_requirements": []}
BATCH: dict[str, dict[str, Any]] = {"c1": FAULT, "c2": CONSULT, "c3": OTHER}


def reasons(answer: BatchAnswer) -> dict[str, str]:
    return {key: item.reason for key, item in answer.unusable.items()}


def test_a_strict_batch_gives_every_item_without_repairs() -> None:
    answer = parse_batch_answer(json.dumps(BATCH), KEYS)
    assert answer == BatchAnswer(items={key: BatchItem(key, BATCH[key], ()) for key in KEYS}, unknown_keys=(),
                                 repairs=(), path="strict", truncated=False)


def test_items_come_back_in_the_order_asked() -> None:
    answer = parse_batch_answer(json.dumps({"c3": OTHER, "c1": FAULT, "c2": CONSULT}), KEYS)
    assert list(answer.items) == KEYS and set(answer.usable) == set(KEYS)


def test_each_item_carries_only_its_own_repairs() -> None:
    text = ("```json\n{\n  \"c1\": " + json.dumps(FAULT) + ",\n  // the second one\n  \"c2\": "
            + repr(CONSULT) + ",\n  \"c3\": " + json.dumps(OTHER).replace("null", "None") + ",\n}\n```")
    answer = parse_batch_answer(text, KEYS)
    assert answer.repairs == ("fence",) and answer.path == "tolerant"
    assert answer.items == {"c1": BatchItem("c1", FAULT, ()), "c2": BatchItem("c2", CONSULT, ("single_quotes",)),
                            "c3": BatchItem("c3", OTHER, ("python_literals",))}


def test_a_missing_item_and_an_unknown_key() -> None:
    answer = parse_batch_answer(json.dumps({"c1": FAULT, "c7": CONSULT, "c3": OTHER}), KEYS)
    assert set(answer.usable) == {"c1", "c3"}
    assert answer.items["c2"] == UnusableItem("c2", "missing", "the answer has no item 'c2'")
    assert answer.unknown_keys == ("c7",)


def test_a_key_given_twice_is_unusable_whatever_the_values() -> None:
    fault, consult, other = json.dumps(FAULT), json.dumps(CONSULT), json.dumps(OTHER)
    text = f'{{"c1": {fault}, "c2": {consult}, "c1": {fault}, "c3": {other}}}'
    answer = parse_batch_answer(text, KEYS)
    assert reasons(answer) == {"c1": "duplicate_key"}
    assert set(answer.usable) == {"c2", "c3"}


def test_a_key_in_two_objects_is_given_twice() -> None:
    text = json.dumps({"c1": FAULT, "c2": CONSULT}) + "\n" + json.dumps({"c1": CONSULT, "c3": OTHER})
    answer = parse_batch_answer(text, KEYS)
    assert reasons(answer) == {"c1": "duplicate_key"} and set(answer.usable) == {"c2", "c3"}


@pytest.mark.parametrize("value", ["null", '"n/a"', "42", "[]", f"[{json.dumps(FAULT)}]", "true"])
def test_an_item_that_is_not_an_object(value: str) -> None:
    answer = parse_batch_answer(f'{{"c1": {value}, "c2": {json.dumps(CONSULT)}}}', ["c1", "c2"])
    assert reasons(answer) == {"c1": "not_an_object"} and set(answer.usable) == {"c2"}


def test_an_unreadable_item_does_not_spoil_the_others() -> None:
    too_deep = "[" * 100 + "]" * 100
    text = f'{{"c1": {{"problem_type"}}, "c2": {json.dumps(CONSULT)}, "c3": {{"nested": {too_deep}}}}}'
    answer = parse_batch_answer(text, KEYS)
    assert reasons(answer) == {"c1": "unparseable", "c3": "unparseable"}
    assert answer.items["c2"] == BatchItem("c2", CONSULT, ())


def test_an_item_holding_another_asked_item_is_refused() -> None:
    # c1 never closes its own object before c2 starts: c2's fields would become c1's.
    text = f'{{"c1": {{"problem_type": "consult", "c2": {json.dumps(FAULT)}}}, "c3": {json.dumps(OTHER)}}}'
    answer = parse_batch_answer(text, KEYS)
    assert answer.items["c1"] == UnusableItem("c1", "unparseable", "the item 'c1' holds the item 'c2' inside it")
    assert reasons(answer) == {"c1": "unparseable", "c2": "missing"}
    assert answer.items["c3"] == BatchItem("c3", OTHER, ())


@pytest.mark.parametrize("cut_inside", ["c2", "c3"])
def test_a_cut_off_batch_keeps_every_item_that_closed(cut_inside: str) -> None:
    text = json.dumps(BATCH)
    cut = text.index(f'"{cut_inside}"') + len(f'"{cut_inside}": {{"problem_type": "co')
    answer = parse_batch_answer(text[:cut], KEYS)
    assert answer.truncated
    closed = KEYS[:KEYS.index(cut_inside)]
    assert answer.usable == {key: BatchItem(key, BATCH[key], ()) for key in closed}
    assert reasons(answer) == {key: "truncated" if key == cut_inside else "missing"
                               for key in KEYS if key not in closed}


def test_a_batch_cut_between_items_keeps_the_complete_ones() -> None:
    text = f'{{"c1": {json.dumps(FAULT)}, "c2": {json.dumps(CONSULT)}, '
    answer = parse_batch_answer(text, KEYS)
    assert answer.truncated and set(answer.usable) == {"c1", "c2"} and reasons(answer) == {"c3": "missing"}


def test_reasoning_and_prose_around_the_batch() -> None:
    text = f"<think>draft {json.dumps({'c1': CONSULT})}</think>Here you go: {json.dumps(BATCH)} Done."
    answer = parse_batch_answer(text, KEYS)
    assert answer.repairs == ("prose", "think_block") and set(answer.usable) == set(KEYS)
    assert answer.usable["c1"].value == FAULT


def test_unquoted_keys_and_missing_commas_between_items() -> None:
    text = f"{{c1: {json.dumps(FAULT)}\n c2: {json.dumps(CONSULT)}\n c3: {json.dumps(OTHER)}}}"
    answer = parse_batch_answer(text, KEYS)
    assert {key: item.value for key, item in answer.usable.items()} == BATCH


@pytest.mark.parametrize(("text", "reason", "detail"), [
    ("", "unparseable", "the answer is empty"),
    ("Sorry, I cannot do that.", "unparseable", "no JSON object found"),
    ("<think>Let me see, c1 is", "truncated", "unclosed reasoning block"),
    ('{"c1": {"problem_type": "dev', "truncated", "cut off inside the item 'c1'"),
])
def test_an_answer_without_items(text: str, reason: str, detail: str) -> None:
    answer = parse_batch_answer(text, ["c1"])
    [item] = answer.unusable.values()
    assert item.reason == reason and detail in item.detail


def test_hostile_strings_in_items_and_keys_are_sanitised() -> None:
    text = '{"c1\\u0000": {"device_model": "\\ud800", "note": "a\\u0000b"}}'
    answer = parse_batch_answer(text, ["c1"])
    assert answer.items["c1"] == BatchItem("c1", {"device_model": "\ufffd", "note": "ab"}, ("sanitised",))


def test_asking_a_key_twice_asks_it_once() -> None:
    answer = parse_batch_answer(json.dumps({"c1": FAULT}), ["c1", "c1"])
    assert list(answer.items) == ["c1"]


def items_by_key(answer: BatchAnswer) -> dict[str, Any]:
    return {key: item.value for key, item in answer.usable.items()}


def test_ten_conversations_in_one_answer() -> None:
    keys = [f"c{n}" for n in range(1, 11)]
    tickets = {key: {**CONSULT, "user_requirements": [f"question {key}"]} for key in keys}
    assert items_by_key(parse_batch_answer(json.dumps(tickets, indent=2), keys)) == tickets
