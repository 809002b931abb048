"""The `triage` command's contract, run as a user runs it (subprocesses, embedded broker)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.stack import clean_environ
from tests.harness import REPO, Stack
from triage.conversation import Conversation
from triage.intake.receive import submit
from triage.outbox.outbox import Outbox
from triage.settings import load_settings
from triage.tickets import lifecycle

COMMANDS = [[], ["db"], ["db", "upgrade"], ["db", "downgrade"], ["db", "current"], ["db", "history"], ["db", "check"],
            ["worker"], ["beat"], ["submit"], ["tickets"], ["serve"], ["demo"],
            ["sweep"], ["retry-fallback"], ["reprocess"], ["purge"], ["deliveries"],
            ["evaluate"]]


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    stack = Stack(f"sqlite:///{tmp_path / 'triage.sqlite3'}", f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
                  api_base_url=None, extra_env={"TRIAGE_EXTRACTOR": "rules"})
    stack.migrate()
    return stack


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "triage")
def test_every_command_has_help(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "triage", *command, "--help"], capture_output=True,
                            text=True, check=False, env=clean_environ())
    assert result.returncode == 0 and "usage: triage" in result.stdout


@pytest.mark.parametrize("argv", [
    [sys.executable, "-m", "triage", "worker"],
    [sys.executable, "-m", "celery", "-A", "triage.worker", "worker", "--pool=threads"],
], ids=["triage-worker", "celery-worker"])
def test_llm_worker_without_key_refuses_to_start(argv: list[str], tmp_path: Path) -> None:
    env = {**clean_environ(), "TRIAGE_EXTRACTOR": "llm", "TRIAGE_BROKER_URL": f"sqla+sqlite:///{tmp_path}/b.db"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode != 0
    assert "MIMO_API_KEY is not set" in result.stderr and "TRIAGE_EXTRACTOR=rules" in result.stderr


def test_submit_reports_bad_lines_by_number_and_keeps_the_rest(stack: Stack) -> None:
    lines = [
        json.dumps({"source": "shop", "external_id": "1", "text": "Where is my parcel?"}),
        "{not json",
        json.dumps({"source": "shop", "text": "no id"}),
        json.dumps({"source": "shop", "external_id": "4", "messages": [{"role": "bot", "text": "?"}]}),
        json.dumps({"source": "shop", "external_id": "5", "messages": [
            {"role": "agent", "text": "Hello"}, {"role": "customer", "text": "Mi Band 8 won't charge"}]}),
    ]
    result = stack.cli("submit", stdin="\n".join(lines) + "\n")
    assert result.returncode == 1
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"external_id": "1", "ticket_id": 1, "status": "queued"},
        {"external_id": "5", "ticket_id": 2, "status": "queued"}]
    errors = result.stderr.splitlines()
    assert [e.split(":")[0] for e in errors] == ["line 2", "line 3", "line 4"]
    assert '"external_id" is required' in errors[1] and "messages[0]" in errors[2]


def test_submit_reads_a_file_argument(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"source": "s", "external_id": "x", "text": "hello"}) + "\n", encoding="utf-8")
    result = stack.cli("submit", str(path))
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "queued"


def test_commands_on_an_unmigrated_database_say_what_to_run(tmp_path: Path) -> None:
    stack = Stack(f"sqlite:///{tmp_path / 'empty.sqlite3'}", f"sqla+sqlite:///{tmp_path / 'b.sqlite3'}", None)
    result = stack.cli("tickets")
    assert result.returncode == 2 and "run `triage db upgrade` first" in result.stderr


def test_bad_setting_is_named_on_start(stack: Stack) -> None:
    stack.env["TRIAGE__EXTRACTION__ATTEMPTS"] = "many"
    result = stack.cli("tickets")
    assert result.returncode == 2 and "TRIAGE__EXTRACTION__ATTEMPTS='many'" in result.stderr


def test_beat_recovers_a_ticket_whose_message_was_lost(stack: Stack) -> None:
    """A ticket stored but never published (a lost message) is found by the sweep and finished."""
    stack.env |= {"TRIAGE__WORKER__STUCK_AFTER_SECONDS": "1", "TRIAGE__WORKER__SWEEP_INTERVAL_SECONDS": "1"}
    lost = submit(stack.sessions, "shop", "lost", Conversation.from_text("Is it waterproof?"), datetime.now(UTC))
    beat_log = stack.env.get("TMPDIR", "/tmp") + "/triage-beat.log"
    with open(beat_log, "w") as log:
        beat = subprocess.Popen([sys.executable, "-m", "triage", "beat", "--schedule",
                                 str(Path(stack.database_url.removeprefix("sqlite:///")).parent / "beat-schedule")],
                                env=stack.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            with stack.worker():
                view = stack.wait_finished([lost.ticket_id], timeout=60)[lost.ticket_id]
        finally:
            beat.terminate()
            beat.wait(20)
    assert (view.status, view.extractor, view.route) == ("routed", "rules", "general-inquiries")


def test_demo_runs_on_a_fresh_directory_without_servers(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "triage", "demo", "--timeout", "120"], cwd=tmp_path,
                            env=clean_environ(), capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    assert "offline rules extractor" in result.stderr
    rows = result.stdout.splitlines()[1:]
    assert len(rows) == 8 and all(" routed " in row for row in rows)
    assert any("mimo-sample-2" in row and "Watch S1" in row and "general-inquiries" in row for row in rows)
    assert (tmp_path / "var" / "triage.sqlite3").exists()


def test_submit_with_the_broker_down_stores_the_ticket_for_the_sweep(stack: Stack) -> None:
    stack.env["TRIAGE_BROKER_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    result = stack.cli("submit", stdin=json.dumps({"source": "s", "external_id": "down", "text": "hi"}) + "\n")
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "queued"
    assert "the sweep job will publish it" in result.stderr
    assert [v.status for v in stack.tickets()] == ["queued"]


def test_tickets_limits_filters_searches_and_rejects_impossible_values(stack: Stack) -> None:
    now = datetime.now(UTC)
    for external_id, text in (("c-1", "My ROUTER is broken"), ("c-2", "the router blinks"), ("c-3", "路由器坏了"),
                              ("c-4", "How do I set an alarm?")):
        submit(stack.sessions, "shop", external_id, Conversation.from_text(text), now)
    outbox = Outbox(load_settings(stack.env), stack.sessions, lambda _delivery_id: None, lease_seconds=60)
    lifecycle.assign(stack.sessions, 2, "alice", now, outbox=outbox)

    def listed(*args: str) -> list[str]:
        result = stack.cli("tickets", "--json", *args)
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["external_id"] for line in result.stdout.splitlines()]

    assert listed("--search", "router") == ["c-1", "c-2"]
    assert listed("--search", "路由器") == ["c-3"]
    assert listed("--assigned-to", "alice") == ["c-2"]
    assert listed("--limit", "3") == ["c-1", "c-2", "c-3"]
    assert listed("--status", "queued", "--limit", "1", "--search", "ALARM") == ["c-4"]
    for option, value in (("--status", "bogus"), ("--route", "nowhere"), ("--priority", "P9")):
        result = stack.cli("tickets", option, value)
        assert result.returncode == 1 and "matches no ticket; allowed:" in result.stderr, option
    assert "allowed: queued, processing, fallback" in stack.cli("tickets", "--status", "bogus").stderr
    assert stack.cli("tickets", "--limit", "0").returncode == 2
