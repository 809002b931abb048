"""Smoke tests of the benchmark harness (``make bench``): the loopback API's limits and batch answers,
and the results writer. Seconds, no services."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from types import ModuleType

import openai
import pytest

from benchmarks import conversations, loopback, report, stack
from benchmarks.report import Check, Line, ScenarioResult, write_results
from tests.fakeapi import FakeMiMo
from triage.schema import TicketSchema

REPO = Path(__file__).resolve().parent.parent
SCHEMA = TicketSchema.load(REPO / "config" / "ticket_schema.json")
WINDOW = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(client: openai.OpenAI, content: str, model: str = "mimo-v2-flash") -> str:
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                            response_format={"type": "json_object"})
    return answer.choices[0].message.content or ""


def test_rpm_limit_answers_429_with_retry_after_per_model_and_counts_them() -> None:
    clock = Clock()
    with FakeMiMo(rpm=2, window_seconds=WINDOW, clock=clock, keep_alive=True) as api:
        client = openai.OpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0)
        ask(client, "one")
        clock.now += 20
        ask(client, "two")
        with pytest.raises(openai.RateLimitError) as refused:
            ask(client, "three")
        assert refused.value.response.headers["Retry-After"] == "40"  # the first call leaves the window in 40 s
        ask(client, "another model has its own budget", model="mimo-v2.5")
        clock.now += 40
        ask(client, "four")
        stats = api.stats()
    assert stats["calls"] == 5 and stats["answered"] == 4 and stats["rate_limited"] == 1
    assert stats["calls_by_model"] == {"mimo-v2-flash": 4, "mimo-v2.5": 1}


def test_batch_request_gets_one_valid_ticket_per_key_and_counted_tokens() -> None:
    blocks = "".join(f'<<<CONVERSATION id="{key}">>>\ncustomer: router {key} broken\n<<<END CONVERSATION>>>\n'
                     for key in ("7", "8", "c-9"))
    system = "Extract one ticket per conversation."
    with FakeMiMo(count_tokens=lambda text: len(text.split())) as api:
        client = openai.OpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0)
        answer = client.chat.completions.create(
            model="mimo-v2-flash", response_format={"type": "json_object"},
            messages=[{"role": "system", "content": system}, {"role": "user", "content": blocks}])
        single = ask(client, "customer: my watch is broken")
        stats = api.stats()
    tickets = json.loads(answer.choices[0].message.content or "")
    assert list(tickets) == ["7", "8", "c-9"]
    assert all(SCHEMA.validate(ticket) == [] for ticket in tickets.values())
    assert SCHEMA.validate(json.loads(single)) == []
    assert answer.usage is not None and answer.usage.prompt_tokens == len(system.split()) + len(blocks.split())
    assert answer.usage.completion_tokens == len((answer.choices[0].message.content or "").split())
    assert stats["batch_calls"] == 1 and stats["batch_conversations"] == 3 and stats["calls"] == 2


def test_loopback_stats_are_served_over_http() -> None:
    with loopback.LoopbackAPI(loopback.APIShape(rpm=1, count_tokens=False)) as api:
        client = openai.OpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0)
        ask(client, "first")
        with pytest.raises(openai.RateLimitError):
            ask(client, "second")
        stats = api.stats()
    assert stats["answered"] == 1 and stats["rate_limited"] == 1 and stats["prompt_tokens"] > 0


def _results() -> list[ScenarioResult]:
    return [ScenarioResult("a", "(a) 500 ms API latency", "Loopback API: 500 ms.", "bound",
                           [Line("seed loop, 64 threads", 82.0, ratio=0.64, cpu_ms=2.5),
                            Line("triage", 40.2, ratio=0.314, p99=1.4, note="1000/1000 final")],
                           [Check("triage at least 80% of the bound", "0.31", False, "CPU bound: 25 ms per ticket"),
                            Check("zero 429s", "0", True)])]


def test_results_file_shows_every_target_met_or_missed_with_why(tmp_path: Path) -> None:
    path = write_results(tmp_path / "2026-12-01.md", "triage benchmark", ["load 0.10"], _results(), chart=False)
    text = path.read_text(encoding="utf-8")
    assert "| (a) | triage at least 80% of the bound | 0.31 | **missed** | CPU bound: 25 ms per ticket |" in text
    assert "| (a) | zero 429s | 0 | met |  |" in text
    assert "| triage | 40.2 | 0.31 | - | - | 1.40 |" in text
    assert "- load 0.10" in text and not (tmp_path / "2026-12-01.png").exists()


def test_results_chart_is_a_png_beside_the_file(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the chart needs the [bench] extra")
    path = write_results(tmp_path / "run.md", "triage benchmark", [], _results())
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![throughput per scenario](run.png)" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("module", [report, loopback, conversations, stack])
def test_harness_doctests(module: ModuleType) -> None:
    assert doctest.testmod(module).failed == 0
