"""Evaluation over labelled data sets, on small fixture files written here (never ../shared)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from benchmarks.stack import clean_environ
from triage.cli.evaluate import evaluate_command
from triage.conversation import Conversation
from triage.evaluation.charts import DPI, PANEL_INCHES
from triage.evaluation.labels import (
    BANKING77_EXCLUDED,
    BANKING77_PROBLEM_TYPE,
    BITEXT_EXCLUDED,
    BITEXT_PROBLEM_TYPE,
    DATASETS,
    NO_TICKET,
    PROBLEM_TYPES,
    DatasetNotFoundError,
    find_dataset_file,
    resolve_datasets,
    spread,
)
from triage.evaluation.report import format_report
from triage.evaluation.runners import evaluate
from triage.evaluation.scoring import agreement
from triage.extraction.rules import RulesExtractor
from triage.extraction.types import ExtractionResult
from triage.schema import TicketSchema
from triage.settings import load_settings

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "ticket_schema.json"

BANKING77_ROWS = [
    ("My card stopped working", "card_not_working"),
    ("My card payment was declined", "declined_card_payment"),
    ("How do I activate my card?", "activate_my_card"),
    ("What is the exchange rate?", "exchange_rate"),
    ("Where is my new card?", "card_arrival"),  # excluded: status enquiry
    ("Why was I charged twice?", "transaction_charged_twice"),  # excluded: dispute
    ("something new", "brand_new_intent"),  # unknown to the tables
]
BITEXT_ROWS = [
    ("I have to report a payment error", "payment_issue", "PAYMENT"),
    ("how can I cancel order 123?", "cancel_order", "ORDER"),
    ("I want to file a complaint against your company", "complaint", "FEEDBACK"),
    ("I'd like to leave feedback for your service", "review", "FEEDBACK"),
    ("I want a refund", "get_refund", "REFUND"),  # excluded
]
STC3 = [
    {"id": "1", "turns": [
        {"sender": "customer", "utterances": ["手机黑屏了，开不了机", ""]},
        {"sender": "helpdesk", "utterances": ["您好，请问型号是？这是投诉吗"]},
        {"sender": "customer", "utterances": ["型号是小米14 Pro，请尽快处理"]},
    ]},
    {"id": "2", "turns": [{"sender": "customer", "utterances": ["请问怎么设置闹钟？"]}]},
    {"id": "3", "turns": [{"sender": "helpdesk", "utterances": ["hello"]}]},
]
STC3_EN = [
    {"id": "1", "turns": [{"sender": "customer", "utterances": ["The screen is black and it won't turn on."]}]},
    {"id": "2", "turns": [{"sender": "customer", "utterances": ["Thanks for the gift"]}]},
    {"id": "3", "turns": []},
]


def write_csv(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data root laid out like ../shared/data, with a few rows per set."""
    write_csv(tmp_path / "banking77" / "test.csv", ["text", "category"], BANKING77_ROWS)
    write_csv(
        tmp_path / "bitext" / "Bitext_Sample.csv",
        ["flags", "instruction", "category", "intent", "response"],
        [("B", text, category, intent, "a reply, with a comma") for text, intent, category in BITEXT_ROWS],
    )
    (tmp_path / "stc3").mkdir()
    (tmp_path / "stc3" / "test_data_cn.json").write_text(json.dumps(STC3, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "stc3" / "test_data_en.json").write_text(json.dumps(STC3_EN), encoding="utf-8")
    return tmp_path


@pytest.fixture(scope="module")
def rules() -> RulesExtractor:
    return RulesExtractor(TicketSchema.load(SCHEMA_PATH))


class ScriptedExtractor:
    """Answers from a table keyed by customer text; records what it was given."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.seen: list[Conversation] = []

    def extract(self, conversation: Conversation) -> ExtractionResult:
        self.seen.append(conversation)
        answer = self.answers.get(conversation.customer_text(), {"problem_type": "other"})
        if isinstance(answer, Exception):
            raise answer
        ticket = None if answer is None else {
            "device_model": None, "urgent_level": "normal", "user_requirements": [], **answer}
        return ExtractionResult(extractor="rules", ticket=ticket)


# --- mapping tables ----------------------------------------------------------------------------


def test_mapping_tables_are_consistent() -> None:
    assert not set(BANKING77_PROBLEM_TYPE) & set(BANKING77_EXCLUDED)
    assert len(BANKING77_PROBLEM_TYPE) + len(BANKING77_EXCLUDED) == 77  # every banking77 intent
    assert not set(BITEXT_PROBLEM_TYPE) & set(BITEXT_EXCLUDED)
    assert len(BITEXT_PROBLEM_TYPE) + len(BITEXT_EXCLUDED) == 27  # every bitext intent
    assert set(BANKING77_PROBLEM_TYPE.values()) <= set(PROBLEM_TYPES)
    assert set(BITEXT_PROBLEM_TYPE.values()) == set(PROBLEM_TYPES)
    assert all(reason for reason in (*BANKING77_EXCLUDED.values(), *BITEXT_EXCLUDED.values()))


def test_readme_suggestions_are_followed() -> None:
    for intent in ("card_not_working", "contactless_not_working", "declined_card_payment", "pin_blocked",
                   "compromised_card"):
        assert BANKING77_PROBLEM_TYPE[intent] == "device_fault"
    assert BITEXT_PROBLEM_TYPE["payment_issue"] == BITEXT_PROBLEM_TYPE["registration_problems"] == "device_fault"
    assert BITEXT_PROBLEM_TYPE["complaint"] == "complaint"
    assert BITEXT_PROBLEM_TYPE["delivery_options"] == BITEXT_PROBLEM_TYPE["check_payment_methods"] == "consult"


# --- finding files --------------------------------------------------------------------------------


def test_find_dataset_file_accepts_root_folder_or_file(data: Path) -> None:
    assert find_dataset_file("banking77", data) == data / "banking77" / "test.csv"
    assert find_dataset_file("banking77", data / "banking77") == data / "banking77" / "test.csv"
    assert find_dataset_file("bitext", data) == data / "bitext" / "Bitext_Sample.csv"
    assert find_dataset_file("stc3-en", data / "stc3" / "test_data_en.json") == data / "stc3" / "test_data_en.json"


def test_missing_and_unknown_datasets(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="banking77"):
        find_dataset_file("banking77", tmp_path)
    with pytest.raises(ValueError, match="unknown data set"):
        find_dataset_file("mnist", tmp_path)


def test_dataset_names() -> None:
    assert DATASETS == ("banking77", "bitext", "stc3-cn", "stc3-en")
    assert resolve_datasets("stc3") == ("stc3-cn", "stc3-en")
    assert resolve_datasets("all") == DATASETS
    with pytest.raises(ValueError, match="known"):
        resolve_datasets("nope")


# --- scoring ----------------------------------------------------------------------------------------


def test_banking77_scores_are_exact(data: Path) -> None:
    extractor = ScriptedExtractor({
        "My card stopped working": {"problem_type": "device_fault"},
        "My card payment was declined": {"problem_type": "consult"},
        "How do I activate my card?": {"problem_type": "consult"},
        "What is the exchange rate?": {"problem_type": "complaint"},
    })
    report = evaluate("banking77", data, extractor)
    assert (report.rows, report.evaluated, report.valid, report.errors) == (7, 4, 4, 0)
    assert report.excluded == {"card_arrival": 1, "transaction_charged_twice": 1}
    assert report.unknown_labels == {"brand_new_intent": 1}
    assert report.accuracy == 0.5
    assert report.confusion == {"device_fault": {"device_fault": 1, "consult": 1},
                                "consult": {"consult": 1, "complaint": 1}}
    scores = report.per_class()
    assert (scores["device_fault"].precision, scores["device_fault"].recall) == (1.0, 0.5)
    assert (scores["consult"].precision, scores["consult"].recall) == (0.5, 0.5)
    assert (scores["complaint"].precision, scores["complaint"].recall) == (0.0, None)
    assert scores["device_fault"].f1 == pytest.approx(2 / 3)
    assert report.macro_f1 == pytest.approx((2 / 3 + 0.5) / 2)


def test_bitext_reads_instruction_and_intent(data: Path, rules: RulesExtractor) -> None:
    report = evaluate("bitext", data, rules)
    assert (report.rows, report.evaluated) == (5, 4)
    assert report.excluded == {"get_refund": 1}
    assert report.validity == 1.0
    assert report.accuracy == 1.0
    assert set(report.confusion) == {"device_fault", "consult", "complaint", "other"}


def test_stc3_uses_customer_turns_and_has_no_accuracy(data: Path, rules: RulesExtractor) -> None:
    recorder = ScriptedExtractor({})
    evaluate("stc3-cn", data, recorder)
    assert [c.to_dicts() for c in recorder.seen] == [
        [{"role": "customer", "text": "手机黑屏了，开不了机"},
         {"role": "customer", "text": "型号是小米14 Pro，请尽快处理"}],
        [{"role": "customer", "text": "请问怎么设置闹钟？"}],
        [],
    ]
    report = evaluate("stc3-cn", data, rules)
    assert not report.labelled
    assert report.accuracy is None
    assert report.per_class() == {}
    assert (report.evaluated, report.valid) == (3, 3)
    assert report.distributions["problem_type"] == {"device_fault": 1, "consult": 1, "other": 1}
    assert report.distributions["urgent_level"] == {"high": 1, "normal": 2}
    assert report.filled["device_model"] == 1
    assert report.filled["user_requirements"] == 2
    assert "accuracy" not in format_report(report)
    assert report.to_dict()["accuracy"] is None


def test_agreement_between_languages(data: Path, rules: RulesExtractor) -> None:
    cn = evaluate("stc3-cn", data, rules)
    en = evaluate("stc3-en", data, rules)
    assert agreement(cn, en) == (2, 3)  # 1: both device_fault, 3: both other; 2 differs


def test_invalid_tickets_and_errors_are_counted(data: Path) -> None:
    schema = TicketSchema.load(SCHEMA_PATH)
    extractor = ScriptedExtractor({
        "My card stopped working": RuntimeError("HTTP 503 from the API"),
        "My card payment was declined": None,
        "How do I activate my card?": {"problem_type": "consult", "urgent_level": "extreme"},
        "What is the exchange rate?": {"problem_type": "consult"},
    })
    report = evaluate("banking77", data, extractor, schema=schema)
    assert (report.evaluated, report.valid, report.errors) == (4, 1, 1)
    assert report.error_examples == ["RuntimeError: HTTP 503 from the API"]
    assert report.confusion["device_fault"] == {NO_TICKET: 2}
    assert report.accuracy == 0.5
    assert "errors: 1" in format_report(report)


def test_limit_takes_an_even_spread_and_reports_progress(data: Path) -> None:
    calls: list[tuple[int, int]] = []
    extractor = ScriptedExtractor({})
    report = evaluate("banking77", data, extractor, limit=2, progress=lambda done, total: calls.append((done, total)))
    assert report.evaluated == 2
    assert calls == [(1, 2), (2, 2)]
    assert [c.customer_text() for c in extractor.seen] == ["My card stopped working", "How do I activate my card?"]
    assert spread([1, 2, 3], 10) == [1, 2, 3]


def test_format_and_to_dict(data: Path, rules: RulesExtractor) -> None:
    report = evaluate("banking77", data, rules)
    text = format_report(report)
    for expected in ("dataset: banking77", "accuracy (problem_type)", "precision", "confusion",
                     "schema-valid tickets: 4/4", "excluded as unmappable: 2 rows in 2 labels", "approximations"):
        assert expected in text
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["evaluated"] == 4
    assert as_dict["validity"] == 1.0
    assert set(as_dict["per_class"]) >= {"device_fault", "consult"}
    assert "predictions" not in as_dict


# --- the command ------------------------------------------------------------------------------------


def test_evaluate_command_text_and_json(data: Path, rules: RulesExtractor) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert evaluate_command("stc3", data, out=out, err=err, extractor=rules) == 0
    text = out.getvalue()
    assert "dataset: stc3-cn" in text and "dataset: stc3-en" in text
    assert "stc3 cn/en agreement on problem_type (same dialogues, two languages): 2/3" in text

    out = io.StringIO()
    assert evaluate_command("banking77", data, 2, True, out=out, err=err) == 0  # default: rules extractor
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["dataset"], r["extractor"]) for r in lines] == [("banking77", "rules")]
    assert lines[0]["evaluated"] == 2


def test_evaluate_command_errors(data: Path, tmp_path: Path, rules: RulesExtractor) -> None:
    err = io.StringIO()
    assert evaluate_command("nope", data, out=io.StringIO(), err=err, extractor=rules) == 2
    assert "unknown data set 'nope'" in err.getvalue()
    err = io.StringIO()
    assert evaluate_command("bitext", tmp_path / "empty", out=io.StringIO(), err=err, extractor=rules) == 2
    assert "--data" in err.getvalue()


def _triage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triage", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_the_data_folder_comes_from_data_or_triage_eval_data(data: Path) -> None:
    env = clean_environ()
    missing = _triage("evaluate", "banking77", env=env)
    assert missing.returncode == 2
    assert "give --data DIR or set TRIAGE_EVAL_DATA" in missing.stderr
    from_env = _triage("evaluate", "banking77", "--json", env={**env, "TRIAGE_EVAL_DATA": str(data)})
    assert from_env.returncode == 0, from_env.stderr
    assert json.loads(from_env.stdout.splitlines()[0])["evaluated"] == 4
    from_flag = _triage("evaluate", "banking77", "--json", "--data", str(data),
                        env={**env, "TRIAGE_EVAL_DATA": str(data / "elsewhere")})
    assert from_flag.returncode == 0 and _untimed(from_flag.stdout) == _untimed(from_env.stdout)


def _untimed(report: str) -> list[dict[str, object]]:
    """The reports of ``--json`` output without their timings (which differ run to run)."""
    return [{key: value for key, value in json.loads(line).items() if key != "seconds"} for line in report.splitlines()]


def test_triage_eval_data_in_the_config_file_is_relative_to_it(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "triage.toml"
    config.parent.mkdir()
    config.write_text('[evaluation]\ndata = "../datasets"\n', encoding="utf-8")
    assert load_settings({"TRIAGE_CONFIG": str(config)}).evaluation.data == config.parent / "../datasets"


def test_chart_draws_one_confusion_matrix_per_labelled_set(data: Path, tmp_path: Path, rules: RulesExtractor) -> None:
    chart = tmp_path / "out" / "confusion.png"
    err = io.StringIO()
    assert evaluate_command("all", data, chart=chart, out=io.StringIO(), err=err, extractor=rules) == 0
    assert f"confusion matrix written to {chart}" in err.getvalue()
    pixels = imread(chart)
    panel = round(PANEL_INCHES * DPI)
    assert pixels.shape[:2] == (panel, 2 * panel)  # banking77 and bitext; stc3 has no labels
    assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 10  # drawn, not blank


def test_chart_of_unlabelled_sets_is_refused(data: Path, tmp_path: Path, rules: RulesExtractor) -> None:
    err = io.StringIO()
    chart = tmp_path / "c.png"
    assert evaluate_command("stc3", data, chart=chart, out=io.StringIO(), err=err, extractor=rules) == 2
    assert "has no labels" in err.getvalue() and not chart.exists()


def test_chart_without_matplotlib_names_the_extra(data: Path, tmp_path: Path) -> None:
    without = ("import sys; sys.modules['matplotlib'] = None; from triage.cli.main import main; "
               f"sys.exit(main(['evaluate', 'banking77', '--data', {str(data)!r}, '--chart', 'c.png']))")
    result = subprocess.run([sys.executable, "-c", without], capture_output=True, text=True, cwd=tmp_path,
                            env=clean_environ(), timeout=120, check=False)
    assert result.returncode == 2 and "pip install 'triage[charts]'" in result.stderr
