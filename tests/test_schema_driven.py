"""The schema file drives the fields: add enums to it and a rule on one of them, change no code.

A copy of the shipped config gains ``language`` and ``sentiment`` enums and a first rule
``when = {sentiment = "negative"}``; a real ``triage worker`` extracts through the loopback API,
routes by the new field, and every listing shows the new fields. A rule naming a field or value
the schema does not have stops start-up with the rule's name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import CONFIG_PATH, SCHEMA_PATH
from tests.fakeapi import FakeMiMo, ok
from tests.harness import Stack

EXTRA_FIELDS = {
    "language": {"type": "string", "enum": ["en", "zh", "other"]},
    "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
}
SENTIMENT_RULE = '''[[routing.rules]]
when = { sentiment = "negative" }
route = "customer-care"
priority = "P2"
sla_hours = 4

'''
ANGRY = {"problem_type": "consult", "device_model": None, "urgent_level": "low", "user_requirements": [],
         "language": "en", "sentiment": "negative"}
CALM = {**ANGRY, "sentiment": "neutral", "language": "zh"}


def write_config(folder: Path, rule: str = SENTIMENT_RULE) -> Path:
    """The shipped config with the two extra enums in the schema and ``rule`` as the first routing rule."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    schema["properties"] |= EXTRA_FIELDS
    schema["required"] = [*schema["required"], *EXTRA_FIELDS]
    (folder / "ticket_schema.json").write_text(json.dumps(schema, indent=2), encoding="utf-8")
    toml = CONFIG_PATH.read_text(encoding="utf-8")
    first_rule = toml.index("[[routing.rules]]")
    config = folder / "triage.toml"
    config.write_text(toml[:first_rule] + rule + toml[first_rule:], encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, int], FakeMiMo]]:
    tmp_path = tmp_path_factory.mktemp("schema-driven")
    with FakeMiMo() as api:
        api.script("[angry]", ok(ANGRY))
        api.script("[calm]", ok(CALM))
        stack = Stack(f"sqlite:///{tmp_path / 'triage.sqlite3'}", f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
                      api.base_url, {"TRIAGE_CONFIG": str(write_config(tmp_path))})
        stack.migrate()
        with stack.worker("--concurrency", "2"):
            printed = stack.submit([{"source": "shop", "external_id": key, "text": f"{text} [{key}]"}
                                    for key, text in (("angry", "This is the third time I write!"),
                                                      ("calm", "请问怎么设置闹钟？"))])
            ids = {line["external_id"]: line["ticket_id"] for line in printed}
            stack.wait_finished(list(ids.values()))
        yield stack, ids, api
        stack.close()


def test_a_rule_on_a_new_schema_field_routes_with_no_code_change(run: tuple[Stack, dict[str, int], Any]) -> None:
    stack, _, api = run
    views = {view.external_id: view for view in stack.tickets()}
    assert (views["angry"].status, views["angry"].route, views["angry"].priority) == ("routed", "customer-care", "P2")
    assert views["calm"].route == "general-inquiries", "the shipped rules still apply below the new one"
    assert views["angry"].fields == ANGRY and views["calm"].fields == CALM
    system = api.requests_for("[angry]")[0]["body"]["messages"][0]["content"]
    assert '"sentiment"' in system and '"negative"' in system, "the prompt is generated from the edited schema"


def test_listings_show_the_new_fields(run: tuple[Stack, dict[str, int], Any]) -> None:
    stack, _, _ = run
    listed = stack.cli("tickets", "--json")
    rows = {row["external_id"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert (rows["angry"]["sentiment"], rows["calm"]["language"]) == ("negative", "zh")
    table = stack.cli("tickets").stdout.splitlines()
    assert {"language", "sentiment"} <= set(table[0].split())


@pytest.mark.parametrize(("rule", "named"), [
    (SENTIMENT_RULE.replace('"negative"', '"furious"'), "routing.rules[0] (route 'customer-care'): when.sentiment"),
    (SENTIMENT_RULE.replace("sentiment", "mood"), "when.mood: not a field of the ticket schema"),
])
def test_a_rule_the_schema_cannot_satisfy_stops_start_up(tmp_path: Path, rule: str, named: str) -> None:
    stack = Stack(f"sqlite:///{tmp_path / 'triage.sqlite3'}", f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
                  None, {"TRIAGE_CONFIG": str(write_config(tmp_path, rule)), "TRIAGE_EXTRACTOR": "rules"})
    stack.migrate()
    for command in (["tickets"], ["worker"], ["serve"]):
        result = stack.cli(*command)
        assert result.returncode == 2 and named in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr
    stack.close()
