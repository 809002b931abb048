"""triage evaluate of the learned and LLM extractors: JSON Lines data, out-of-fold and stored-model figures,
the JSON keys, the price table, the answer cache (resume after a kill, counted calls on the loopback API)
and report.md with its charts. Data: tests/fixtures/public (never ../shared) and files written here."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from matplotlib.image import imread
from sqlalchemy import func, select

from benchmarks.stack import clean_environ
from tests.factories import ManualClock, build_app, settings_for
from tests.fakeapi import FakeMiMo, ok
from tests.test_learning import FIXTURES, public_rows
from triage.cli.evaluate import evaluate_command
from triage.evaluation.cache import EvaluationAnswer
from triage.evaluation.labels import load_jsonl, parse_labelled_line
from triage.learning.retrain import learn
from triage.schema import TicketSchema

SCHEMA = TicketSchema.load(Path(__file__).resolve().parent.parent / "config" / "ticket_schema.json")
PRICES = '{"mimo-v2-flash": {"input_per_million": 1.0, "output_per_million": 2.0}}'
REQUIRED_KEYS = {"dataset", "extractor", "evaluated", "fields", "tokens", "cost_per_1000", "confidence",
                 # today's keys
                 "source", "labelled", "rows", "limit", "excluded", "unknown_labels", "valid", "validity", "errors",
                 "error_examples", "accuracy", "correct", "macro_f1", "per_class", "confusion", "distributions",
                 "filled", "seconds"}


def lines_of(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    return path


# --- the JSON Lines format --------------------------------------------------------------------------


def test_json_lines_rows_text_or_messages_keys_and_bad_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"text": "My phone is broken", "labels": {"problem_type": "device_fault", "urgent_level": "high"}},
        {"source": "zendesk", "external_id": 4711, "messages": [{"role": "customer", "text": "How do I pay?"},
                                                               {"role": "agent", "text": "Like this"}],
         "labels": {"problem_type": "consult"}},
        {"text": "no labels at all"},
        "not json",
        {"text": "x", "labels": {"problem_type": "refund"}},
        {"text": "x", "labels": {"colour": "red"}},
        {"text": "x", "labels": {"problem_type": ["other"]}},
        "",
    ])
    loaded = load_jsonl(path, SCHEMA)
    assert loaded.rows == 7 and len(loaded.samples) == 3 and loaded.labelled
    first, second, third = loaded.samples
    assert first.labels == {"problem_type": "device_fault", "urgent_level": "high"} and len(first.key) == 16
    assert second.key == "zendesk:4711" and second.conversation.customer_text() == "How do I pay?"
    assert third.labels == {}
    assert [p.split(":")[0] for p in loaded.problems] == ["line 4", "line 5", "line 6", "line 7"]
    assert "'refund' is not one of" in loaded.problems[1]
    assert "not a field of the ticket schema" in loaded.problems[2]
    assert loaded.fields == ["problem_type", "urgent_level"]
    assert parse_labelled_line(b'{"text": "same"}').key == parse_labelled_line(b'{"text": "same"}').key


# --- the learned extractor ----------------------------------------------------------------------------


def test_out_of_fold_learned_and_rules_on_public_samples(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    status = evaluate_command(["banking77", "bitext"], FIXTURES, as_json=True, extractors="all", out=out, err=err,
                              settings=settings_for(f"sqlite:///{tmp_path / 'unused.sqlite3'}"))
    assert status == 0, err.getvalue()
    reports = lines_of(out.getvalue())
    assert [(r["dataset"], r["extractor"]) for r in reports] == [
        ("banking77", "rules"), ("banking77", "learned"), ("bitext", "rules"), ("bitext", "learned")]
    for report in reports:
        assert set(report) >= REQUIRED_KEYS
        assert set(report["fields"]["problem_type"]) >= {"accuracy", "macro_f1"}  # type: ignore[index]
        assert report["tokens"] == {"prompt": 0, "completion": 0} and report["cost_per_1000"] == 0.0
    learned = reports[3]
    assert (learned["split"], learned["folds"]) == ("test", 5)
    assert learned["evaluated"] == 96 and learned["accuracy"] > 0.8  # type: ignore[operator]
    confidence = learned["confidence"]
    assert isinstance(confidence, dict) and 0 <= confidence["ece"] <= 1
    assert set(confidence["coverage_at_precision"]) >= {"0.95"}
    for report in reports:  # every extractor's ticket confidence, held out on the learned extractor's folds
        ticket = report["confidence"]
        assert isinstance(ticket, dict) and ticket["field"] == "ticket" and ticket["count"] == report["evaluated"]
        assert 0 <= ticket["ece"] <= 1 and set(ticket["fields"]) >= {"problem_type", "ticket"}
        assert ticket["default"] is not None and 0 <= ticket["default"]["ece"] <= 1
    assert reports[2]["probability"] is None  # the rules give no probability of their own
    assert set(learned["probability"]) == {"problem_type"}  # type: ignore[arg-type]
    assert reports[3]["agreement"]["rules"]["shared"] == 96  # type: ignore[index]
    assert "bitext learned [" in err.getvalue()  # the progress bar


def test_split_all_scores_the_stored_model_and_counts_what_it_was_trained_on(migrated_sqlite_url: str,
                                                                              tmp_path: Path) -> None:
    app = build_app(migrated_sqlite_url, clock=ManualClock())
    try:
        learn(app.sessions, app.schema, app.settings.learn, public_rows("bitext"), app.clock.now())
    finally:
        app.close()
    fresh = write_jsonl(tmp_path / "fresh.jsonl", [
        {"text": "I cannot pay with my card, the payment fails", "labels": {"problem_type": "device_fault"}},
        {"text": "I want to speak with a human agent", "labels": {"problem_type": "other"}}])
    out, err = io.StringIO(), io.StringIO()
    settings = settings_for(migrated_sqlite_url)
    assert evaluate_command(["bitext", str(fresh)], FIXTURES, as_json=True, extractors="learned", split="all",
                            settings=settings, out=out, err=err) == 0, err.getvalue()
    public, own = lines_of(out.getvalue())
    assert (public["split"], public["model_version"], public["trained_on"], public["evaluated"]) == ("all", 1, 96, 96)
    assert (own["trained_on"], own["evaluated"], own["dataset"]) == (0, 2, str(fresh))
    assert own["confidence"] is not None


def test_split_all_without_a_model_says_what_to_do(migrated_sqlite_url: str) -> None:
    err = io.StringIO()
    assert evaluate_command("bitext", FIXTURES, extractors="learned", split="all", out=io.StringIO(), err=err,
                            settings=settings_for(migrated_sqlite_url)) == 2
    assert "no learned model is stored: run `triage learn" in err.getvalue()


def test_report_dir_has_report_md_and_charts(tmp_path: Path) -> None:
    err = io.StringIO()
    assert evaluate_command("bitext", FIXTURES, extractors="all", report_dir=tmp_path / "report", out=io.StringIO(),
                            err=err, settings=settings_for(f"sqlite:///{tmp_path / 'x.sqlite3'}")) == 0
    report = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "| bitext | learned | test | 96 |" in report and "| bitext | rules | - | 96 |" in report
    assert "keyword tables were tuned on these public sets" in report and "out-of-fold" in report
    for chart in ("accuracy.png", "confusion.png", "calibration.png"):
        assert f"![{chart}]({chart})" in report
        pixels = imread(tmp_path / "report" / chart)
        assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 10  # drawn, not blank


# --- the LLM --------------------------------------------------------------------------------------------


def llm_env(database_url: str, api: FakeMiMo) -> dict[str, str]:
    return {"TRIAGE_EXTRACTOR": "llm", "MIMO_API_KEY": "test", "MIMO_BASE_URL": api.base_url,
            "TRIAGE__EXTRACTION__PRICES": PRICES, "TRIAGE__EXTRACTION__BATCH_MODE": "never",
            "TRIAGE__RETRY__BACKOFF_BASE_SECONDS": "0.01"}


def marked(count: int) -> list[dict[str, object]]:
    return [{"text": f"CONV-{i:02d} my speaker is broken", "labels": {"problem_type": "other"}} for i in range(count)]


def test_llm_tokens_cost_and_the_answer_cache(migrated_database_url: str, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "conversations.jsonl", [*marked(4), marked(1)[0]])  # one conversation twice
    with FakeMiMo() as api:
        settings = settings_for(migrated_database_url, **llm_env(migrated_database_url, api))
        out, err = io.StringIO(), io.StringIO()
        assert evaluate_command(str(data), None, as_json=True, extractors="llm", concurrency=2, settings=settings,
                                out=out, err=err) == 0, err.getvalue()
        (report,) = lines_of(out.getvalue())
        assert api.stats()["calls"] == 4  # the repeated conversation is asked once
        assert report["evaluated"] == 5 and report["accuracy"] == 1.0 and report["cached"] == 0
        assert report["tokens"] == {"prompt": 5 * 161, "completion": 5 * 89}
        assert report["cost_per_1000"] == pytest.approx(1000 * (161 * 1.0 + 89 * 2.0) / 1e6)
        out = io.StringIO()
        assert evaluate_command(str(data), None, as_json=True, extractors="llm", settings=settings, out=out,
                                err=err) == 0
        assert api.stats()["calls"] == 4 and lines_of(out.getvalue())[0]["cached"] == 5
        unpriced = settings_for(migrated_database_url, **{**llm_env(migrated_database_url, api),
                                                          "TRIAGE_MODEL": "other-model"})
        out = io.StringIO()
        assert evaluate_command(str(data), None, as_json=True, extractors="llm", settings=unpriced, out=out,
                                err=err) == 0
        assert api.stats()["calls"] == 8  # another model: asked again
        assert lines_of(out.getvalue())[0]["cost_per_1000"] is None


def test_llm_without_a_key_says_so(migrated_sqlite_url: str, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "c.jsonl", marked(1))
    err = io.StringIO()
    assert evaluate_command(str(data), None, extractors="llm", settings=settings_for(migrated_sqlite_url),
                            out=io.StringIO(), err=err) == 2
    assert "MIMO_API_KEY is not set" in err.getvalue()


def test_a_killed_llm_evaluation_resumes_asking_only_what_is_missing(migrated_sqlite_url: str,
                                                                     tmp_path: Path) -> None:
    total = 8
    data = write_jsonl(tmp_path / "conversations.jsonl", marked(total))
    with FakeMiMo(ok({"problem_type": "other", "device_model": None, "urgent_level": "normal",
                      "user_requirements": []}, delay=0.4)) as api:
        env = {**clean_environ(), "TRIAGE_CONFIG": str(Path(__file__).resolve().parent.parent / "config" /
                                                       "triage.toml"),
               "TRIAGE_DATABASE_URL": migrated_sqlite_url, "TRIAGE_BROKER_URL": "memory://",
               **llm_env(migrated_sqlite_url, api)}
        command = [sys.executable, "-m", "triage", "evaluate", str(data), "--extractor", "llm", "--json"]
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while api.stats()["answered"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        first.kill()
        first.communicate(timeout=30)
        asked_first = api.stats()["calls"]
        assert 4 <= asked_first < total
        app = build_app(migrated_sqlite_url)
        try:
            with app.sessions() as session:
                stored = int(session.scalar(select(func.count()).select_from(EvaluationAnswer)) or 0)
        finally:
            app.close()
        assert 3 <= stored < total  # each answer is stored as soon as it is in (the last one may be in flight)
        api.default = ok({"problem_type": "other", "device_model": None, "urgent_level": "normal",
                          "user_requirements": []})
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 0, second.stderr
        assert api.stats()["calls"] - asked_first == total - stored  # only the missing ones
        (report,) = lines_of(second.stdout)
        assert (report["evaluated"], report["cached"], report["accuracy"]) == (total, stored, 1.0)
        assert "ETA" in second.stderr or f"{total}/{total}" in second.stderr
