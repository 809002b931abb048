"""Measure an extractor against public labelled support data (banking77, bitext, stc3).

The data sets are not shipped: :func:`evaluate` takes the folder that holds them (the layout
of ``../shared/data``: ``banking77/test.csv``, ``bitext/*.csv``, ``stc3/test_data_{cn,en}.json``)
or the data file itself. Any object with ``extract(conversation) -> ExtractionResult`` works,
the rules extractor or the LLM one.

None of these sets is labelled with this project's ``problem_type``. The tables below map their
labels to it; they are approximations, and every figure computed from them rests on them:

* ``device_fault``: something is broken or fails (a card or payment that does not work, a
  payment or sign-up error);
* ``consult``: a question, or a request for help with a procedure ("how do I cancel my order");
* ``complaint``: the customer complains or files a claim;
* ``other``: feedback and requests to reach a person, nothing to diagnose or answer.

Labels that fit two classes depending on the reading are excluded (listed with the reason in
``*_EXCLUDED``) and counted in the report, rather than guessed. stc3 has no labels at all: its
report gives only the distribution of what the extractor produced and the validity rate.

>>> sorted(set(BITEXT_PROBLEM_TYPE.values()))
['complaint', 'consult', 'device_fault', 'other']
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from triage.charts import ChartsUnavailableError, ConfusionMatrix, confusion_matrices_png
from triage.conversation import Conversation, Message
from triage.extraction.types import ExtractionResult
from triage.schema import TicketSchema

#: Data set names :func:`evaluate` knows.
DATASETS: tuple[str, ...] = ("banking77", "bitext", "stc3-cn", "stc3-en")
#: Names that stand for several data sets (for a command line: ``evaluate stc3``).
DATASET_GROUPS: dict[str, tuple[str, ...]] = {"stc3": ("stc3-cn", "stc3-en"), "all": DATASETS}

#: The default schema's classes, in the order reports list them.
PROBLEM_TYPES: tuple[str, ...] = ("device_fault", "consult", "complaint", "other")
#: What a row predicts when the extractor raised or returned no ticket.
NO_TICKET = "<no ticket>"
#: The ticket field the data sets' own labels are mapped to (the tables below); accuracy scores it.
LABEL_FIELD = "problem_type"

# --------------------------------------------------------------------------------------------
# Label mappings (approximations: see the module docstring)
# --------------------------------------------------------------------------------------------

#: banking77 intent -> problem_type. The first five fault intents are the ones the data
#: README names; the other six are the intents whose name says something failed.
BANKING77_PROBLEM_TYPE: dict[str, str] = {
    **dict.fromkeys((
        "card_not_working", "contactless_not_working", "declined_card_payment", "pin_blocked",
        "compromised_card", "virtual_card_not_working", "top_up_failed", "failed_transfer",
        "declined_transfer", "declined_cash_withdrawal", "card_swallowed",
    ), "device_fault"),
    **dict.fromkeys((
        "activate_my_card", "age_limit", "apple_pay_or_google_pay", "atm_support", "automatic_top_up",
        "card_acceptance", "card_delivery_estimate", "card_linking", "change_pin", "country_support",
        "disposable_card_limits", "exchange_charge", "exchange_rate", "exchange_via_app",
        "fiat_currency_support", "get_disposable_virtual_card", "get_physical_card",
        "getting_spare_card", "getting_virtual_card", "order_physical_card", "receiving_money",
        "supported_cards_and_currencies", "top_up_by_bank_transfer_charge", "top_up_by_card_charge",
        "top_up_by_cash_or_cheque", "top_up_limits", "topping_up_by_card", "transfer_into_account",
        "transfer_timing", "verify_my_identity", "verify_top_up", "why_verify_identity",
        "visa_or_mastercard", "edit_personal_details", "verify_source_of_funds",
        "card_about_to_expire", "passcode_forgotten", "terminate_account", "cancel_transfer",
    ), "consult"),
}

_STATUS = "status enquiry about money or a card not there yet: a question or a fault, by reading"
_DISPUTE = "charge or rate dispute: a complaint or a question, by reading"
_UNRECOGNISED = "unrecognised transaction (possible fraud): a fault or a complaint, by reading"
#: banking77 intents left out of the accuracy figure, with the reason.
BANKING77_EXCLUDED: dict[str, str] = {
    **dict.fromkeys((
        "card_arrival", "pending_card_payment", "pending_cash_withdrawal", "pending_top_up",
        "pending_transfer", "balance_not_updated_after_bank_transfer",
        "balance_not_updated_after_cheque_or_cash_deposit", "transfer_not_received_by_recipient",
        "Refund_not_showing_up", "reverted_card_payment?", "top_up_reverted",
    ), _STATUS),
    **dict.fromkeys((
        "card_payment_fee_charged", "cash_withdrawal_charge", "extra_charge_on_statement",
        "transaction_charged_twice", "transfer_fee_charged", "wrong_amount_of_cash_received",
        "card_payment_wrong_exchange_rate", "wrong_exchange_rate_for_cash_withdrawal",
    ), _DISPUTE),
    **dict.fromkeys((
        "card_payment_not_recognised", "cash_withdrawal_not_recognised",
        "direct_debit_payment_not_recognised",
    ), _UNRECOGNISED),
    "lost_or_stolen_card": "loss or theft report: neither a fault nor a question",
    "lost_or_stolen_phone": "loss or theft report: neither a fault nor a question",
    "request_refund": "refund demand: a complaint in this project's rules, not labelled one here",
    "beneficiary_not_allowed": "a refused transfer: a fault or a policy question, by reading",
    "unable_to_verify_identity": "a failed verification or missing documents, by reading",
}

#: bitext intent -> problem_type (``payment_issue``, ``registration_problems`` and
#: ``complaint`` as the data README suggests; the rest by the definitions above).
BITEXT_PROBLEM_TYPE: dict[str, str] = {
    "payment_issue": "device_fault",
    "registration_problems": "device_fault",
    "complaint": "complaint",
    "review": "other",
    "contact_human_agent": "other",
    **dict.fromkeys((
        "cancel_order", "change_order", "change_shipping_address", "check_cancellation_fee",
        "check_invoice", "check_payment_methods", "check_refund_policy", "contact_customer_service",
        "create_account", "delete_account", "delivery_options", "delivery_period", "edit_account",
        "get_invoice", "newsletter_subscription", "place_order", "recover_password",
        "set_up_shipping_address", "switch_account", "track_order", "track_refund",
    ), "consult"),
}
#: bitext intents left out of the accuracy figure, with the reason.
BITEXT_EXCLUDED: dict[str, str] = {
    "get_refund": "refund demand: a complaint in this project's rules, not labelled one here",
}

# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class DatasetNotFoundError(FileNotFoundError):
    """The data set's file is not under the given path."""


class Extractor(Protocol):
    def extract(self, conversation: Conversation) -> ExtractionResult: ...


@dataclass(frozen=True)
class Sample:
    """One item to extract from: its conversation, the source label and the mapped class.

    ``key`` names the item in its file (the stc3 dialogue id, or the CSV data row number).
    """

    conversation: Conversation
    label: str | None = None
    gold: str | None = None
    key: str = ""


@dataclass
class LoadedDataset:
    """A data set's samples plus what was read but not evaluated."""

    name: str
    source: Path
    samples: list[Sample]
    rows: int
    excluded: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    labelled: bool = True


def find_dataset_file(dataset: str, path: Path) -> Path:
    """The data file of ``dataset`` at ``path`` (the file, its folder, or the data root).

    >>> find_dataset_file("nope", Path("."))
    Traceback (most recent call last):
    ...
    ValueError: unknown data set 'nope'; known: banking77, bitext, stc3-cn, stc3-en
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
    if path.is_file():
        return path
    folder, pattern = {
        "banking77": ("banking77", "test.csv"),
        "bitext": ("bitext", "*.csv"),
        "stc3-cn": ("stc3", "test_data_cn.json"),
        "stc3-en": ("stc3", "test_data_en.json"),
    }[dataset]
    for directory in (path / folder, path):
        matches = sorted(directory.glob(pattern)) if directory.is_dir() else []
        if matches:
            return matches[0]
    raise DatasetNotFoundError(f"{dataset}: no {folder}/{pattern} under {path}")


def _labelled(name: str, source: Path, rows: list[tuple[str, str]], mapping: Mapping[str, str],
              excluded: Mapping[str, str]) -> LoadedDataset:
    loaded = LoadedDataset(name, source, [], rows=len(rows))
    for number, (text, label) in enumerate(rows, 1):
        if label in mapping:
            loaded.samples.append(Sample(Conversation.from_text(text), label, mapping[label], str(number)))
        elif label in excluded:
            loaded.excluded[label] += 1
        else:
            loaded.unknown[label] += 1
    return loaded


def _read_csv(source: Path) -> Iterator[dict[str, str]]:
    with source.open(encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def load_banking77(source: Path) -> LoadedDataset:
    """banking77 ``test.csv`` (``text,category``), mapped by :data:`BANKING77_PROBLEM_TYPE`."""
    rows = [(row["text"], row["category"]) for row in _read_csv(source)]
    return _labelled("banking77", source, rows, BANKING77_PROBLEM_TYPE, BANKING77_EXCLUDED)


def load_bitext(source: Path) -> LoadedDataset:
    """bitext CSV (``instruction`` is the customer's text, ``intent`` the label)."""
    rows = [(row["instruction"], row["intent"]) for row in _read_csv(source)]
    return _labelled("bitext", source, rows, BITEXT_PROBLEM_TYPE, BITEXT_EXCLUDED)


def stc3_conversation(dialogue: Mapping[str, Any]) -> Conversation:
    """The customer's turns of an stc3 dialogue, one message per turn, empty ones dropped.

    >>> stc3_conversation({"turns": [{"sender": "customer", "utterances": ["a", "", "b"]},
    ...                              {"sender": "helpdesk", "utterances": ["hi"]}]}).to_dicts()
    [{'role': 'customer', 'text': 'a\\nb'}]
    """
    messages = []
    for turn in dialogue.get("turns", []):
        if turn.get("sender") != "customer":
            continue
        text = "\n".join(u.strip() for u in turn.get("utterances", []) if u and u.strip())
        if text:
            messages.append(Message("customer", text))
    return Conversation(tuple(messages))


def load_stc3(source: Path, name: str = "stc3") -> LoadedDataset:
    """An stc3 JSON file (``[{"id", "turns": [{"sender", "utterances"}]}]``); no labels."""
    dialogues = json.loads(source.read_text(encoding="utf-8"))
    samples = [Sample(stc3_conversation(d), key=str(d.get("id", i))) for i, d in enumerate(dialogues)]
    return LoadedDataset(name, source, samples, rows=len(dialogues), labelled=False)


def load_dataset(dataset: str, path: Path) -> LoadedDataset:
    """Find and read ``dataset`` under ``path``."""
    source = find_dataset_file(dataset, path)
    if dataset == "banking77":
        return load_banking77(source)
    if dataset == "bitext":
        return load_bitext(source)
    return load_stc3(source, dataset)


def resolve_datasets(name: str) -> tuple[str, ...]:
    """A data set name or group name -> data set names.

    >>> resolve_datasets("stc3"), resolve_datasets("bitext")
    (('stc3-cn', 'stc3-en'), ('bitext',))
    """
    if name in DATASET_GROUPS:
        return DATASET_GROUPS[name]
    if name in DATASETS:
        return (name,)
    raise ValueError(f"unknown data set {name!r}; known: {', '.join((*DATASETS, *DATASET_GROUPS))}")


def spread(items: list[Any], limit: int | None) -> list[Any]:
    """At most ``limit`` items, evenly spaced (the files are sorted by label; a head would not be).

    >>> spread(list(range(10)), 3), spread([1, 2], None)
    ([0, 3, 6], [1, 2])
    """
    if limit is None or limit >= len(items):
        return list(items)
    return [items[i * len(items) // limit] for i in range(max(limit, 0))]


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassScore:
    """Precision and recall of one class (``None`` when undefined: nothing predicted or gold)."""

    precision: float | None
    recall: float | None
    support: int
    predicted: int

    @property
    def f1(self) -> float | None:
        if not self.precision or not self.recall:
            return None if self.precision is None or self.recall is None else 0.0
        return 2 * self.precision * self.recall / (self.precision + self.recall)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass
class EvaluationReport:
    """Figures for one data set; labelled ones add accuracy, per-class scores and a confusion matrix."""

    dataset: str
    source: str
    labelled: bool
    rows: int
    evaluated: int
    valid: int
    errors: int
    excluded: dict[str, int]
    unknown_labels: dict[str, int]
    confusion: dict[str, dict[str, int]]
    #: Predicted values per enum field of the schema.
    distributions: dict[str, dict[str, int]]
    #: How many tickets had each other field filled (not null, not empty).
    filled: dict[str, int]
    seconds: float
    limit: int | None = None
    error_examples: list[str] = field(default_factory=list)
    #: Predicted ``problem_type`` per sample key (for :func:`agreement`; not in ``to_dict``).
    predictions: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def validity(self) -> float | None:
        return _ratio(self.valid, self.evaluated)

    @property
    def correct(self) -> int:
        return sum(row.get(gold, 0) for gold, row in self.confusion.items())

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.correct, self.evaluated) if self.labelled else None

    @property
    def classes(self) -> list[str]:
        """Gold and predicted classes, the schema's order first."""
        seen = set(self.confusion) | {p for row in self.confusion.values() for p in row}
        return [c for c in PROBLEM_TYPES if c in seen] + sorted(seen - set(PROBLEM_TYPES))

    def per_class(self) -> dict[str, ClassScore]:
        scores = {}
        for name in self.classes:
            true_positive = self.confusion.get(name, {}).get(name, 0)
            support = sum(self.confusion.get(name, {}).values())
            predicted = sum(row.get(name, 0) for row in self.confusion.values())
            scores[name] = ClassScore(
                _ratio(true_positive, predicted), _ratio(true_positive, support), support, predicted,
            )
        return scores

    @property
    def macro_f1(self) -> float | None:
        """Mean F1 over the classes that have gold examples (an undefined F1 counts as 0)."""
        gold = [score for score in self.per_class().values() if score.support]
        return sum(score.f1 or 0.0 for score in gold) / len(gold) if gold else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (ratios as floats, ``None`` where undefined)."""
        return {
            "dataset": self.dataset, "source": self.source, "labelled": self.labelled,
            "rows": self.rows, "evaluated": self.evaluated, "limit": self.limit,
            "excluded": dict(self.excluded), "unknown_labels": dict(self.unknown_labels),
            "valid": self.valid, "validity": self.validity, "errors": self.errors,
            "error_examples": list(self.error_examples),
            "accuracy": self.accuracy, "correct": self.correct if self.labelled else None,
            "macro_f1": self.macro_f1 if self.labelled else None,
            "per_class": {
                name: {"precision": s.precision, "recall": s.recall, "f1": s.f1,
                       "support": s.support, "predicted": s.predicted}
                for name, s in self.per_class().items()
            } if self.labelled else {},
            "confusion": {gold: dict(row) for gold, row in self.confusion.items()} if self.labelled else {},
            "distributions": {name: dict(counts) for name, counts in self.distributions.items()},
            "filled": dict(self.filled),
            "seconds": round(self.seconds, 3),
        }

    def format(self) -> str:
        """A readable plain-text report."""
        lines = [f"dataset: {self.dataset}  ({self.source})"]
        sampled = f" (evenly spaced sample, --limit {self.limit})" if self.limit is not None else ""
        lines.append(f"rows read: {self.rows}; evaluated: {self.evaluated}{sampled}")
        if self.excluded:
            lines.append(f"excluded as unmappable: {sum(self.excluded.values())} rows in "
                         f"{len(self.excluded)} labels ({', '.join(sorted(self.excluded))})")
        if self.unknown_labels:
            lines.append(f"unknown labels (not in the mapping tables): {dict(self.unknown_labels)}")
        lines.append(f"schema-valid tickets: {self.valid}/{self.evaluated} ({_pct(self.validity)}); "
                     f"extractor errors: {self.errors}")
        lines.extend(f"  error: {message}" for message in self.error_examples)
        if self.labelled:
            lines += self._format_scores()
        for name, counts in self.distributions.items():
            shown = ", ".join(f"{value} {count} ({_pct(_ratio(count, self.evaluated))})"
                              for value, count in counts.items())
            lines.append(f"predicted {name}: {shown}")
        if self.filled:
            lines.append("filled: " + "; ".join(f"{name} {count} ({_pct(_ratio(count, self.evaluated))})"
                                                for name, count in self.filled.items()))
        per_item = f"{1000 * self.seconds / self.evaluated:.2f} ms per item" if self.evaluated else "-"
        lines.append(f"time: {self.seconds:.2f} s ({per_item})")
        if self.labelled:
            lines.append("note: gold problem_type comes from mapping the data set's own labels "
                         "(triage.evaluation tables); the figures are approximations.")
        return "\n".join(lines)

    def _format_scores(self) -> list[str]:
        lines = [f"accuracy (problem_type): {_pct(self.accuracy)} ({self.correct}/{self.evaluated}); "
                 f"macro F1: {_num(self.macro_f1)}", ""]
        lines.append(f"{'class':<14}{'precision':>10}{'recall':>8}{'f1':>7}{'support':>9}{'predicted':>11}")
        for name, s in self.per_class().items():
            lines.append(f"{name:<14}{_num(s.precision):>10}{_num(s.recall):>8}{_num(s.f1):>7}"
                         f"{s.support:>9}{s.predicted:>11}")
        classes = self.classes
        width = max(12, *(len(c) + 1 for c in classes))
        lines += ["", "confusion (rows: gold, columns: predicted)",
                  f"{'':<14}" + "".join(f"{c:>{width}}" for c in classes)]
        for gold in classes:
            row = self.confusion.get(gold, {})
            if row:
                lines.append(f"{gold:<14}" + "".join(f"{row.get(c, 0):>{width}}" for c in classes))
        lines.append("")
        return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def _schema_of(extractor: object, schema: TicketSchema | None) -> TicketSchema | None:
    found = schema if schema is not None else getattr(extractor, "schema", None)
    return found if isinstance(found, TicketSchema) else None


def _is_valid(ticket: dict[str, Any] | None, schema: TicketSchema | None) -> bool:
    return ticket is not None and (schema is None or not schema.validate(ticket))


def evaluate(dataset: str, path: Path, extractor: Extractor, *, limit: int | None = None,
             progress: Callable[[int, int], None] | None = None,
             schema: TicketSchema | None = None) -> EvaluationReport:
    """Run ``extractor`` over ``dataset`` found under ``path`` and score it.

    ``limit`` takes that many evenly spaced samples; ``progress(done, total)`` is called after
    each one. Validity is checked against ``schema`` (default: ``extractor.schema`` if it has
    one; otherwise a returned ticket counts as valid). An extractor exception counts as an
    error (and a wrong answer) instead of ending the run.
    """
    loaded = load_dataset(dataset, path)
    samples = spread(loaded.samples, limit)
    schema = _schema_of(extractor, schema)
    confusion: dict[str, Counter[str]] = {}
    enums = [name for name, node in (schema.properties if schema else {}).items() if "enum" in node]
    distributions: dict[str, Counter[str]] = {name: Counter() for name in enums or [LABEL_FIELD]}
    filled: Counter[str] = Counter()
    valid = errors = 0
    error_examples: list[str] = []
    predictions: dict[str, str] = {}
    started = time.perf_counter()
    for done, sample in enumerate(samples, 1):
        try:
            ticket = extractor.extract(sample.conversation).ticket
        except Exception as exc:  # an LLM extractor may raise per item; keep measuring the rest
            ticket = None
            errors += 1
            if len(error_examples) < 5:
                error_examples.append(f"{type(exc).__name__}: {exc}"[:300])
        valid += _is_valid(ticket, schema)
        predicted = str(ticket.get(LABEL_FIELD, NO_TICKET)) if ticket is not None else NO_TICKET
        if ticket is not None:
            for name, value in ticket.items():
                if name in distributions:
                    distributions[name][str(value)] += 1
                elif value not in (None, "", [], {}):
                    filled[name] += 1
        predictions[sample.key] = predicted
        if sample.gold is not None:
            confusion.setdefault(sample.gold, Counter())[predicted] += 1
        if progress is not None:
            progress(done, len(samples))
    seconds = time.perf_counter() - started
    return EvaluationReport(
        dataset=dataset, source=str(loaded.source), labelled=loaded.labelled, rows=loaded.rows,
        evaluated=len(samples), valid=valid, errors=errors, excluded=dict(loaded.excluded),
        unknown_labels=dict(loaded.unknown),
        confusion={gold: dict(row) for gold, row in confusion.items()},
        distributions={name: _ordered(counts) for name, counts in distributions.items() if counts},
        filled=dict(filled), seconds=seconds, limit=limit,
        error_examples=error_examples, predictions=predictions,
    )


def _ordered(counts: Counter[str]) -> dict[str, int]:
    order = {value: i for i, value in enumerate((*PROBLEM_TYPES, "high", "normal", "low"))}
    return dict(sorted(counts.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def agreement(first: EvaluationReport, second: EvaluationReport) -> tuple[int, int]:
    """(same ``problem_type``, items in both) over the sample keys two reports share.

    For stc3, whose cn and en files are the same dialogues, it measures how consistently an
    extractor reads the two languages; for two extractors on one data set, how often they agree.

    >>> def report(predictions):
    ...     return EvaluationReport("x", "", False, 2, 2, 2, 0, {}, {}, {}, {}, 0, 0, 0.0,
    ...                             predictions=predictions)
    >>> agreement(report({"1": "consult", "2": "other"}), report({"1": "consult", "2": "complaint"}))
    (1, 2)
    """
    shared = first.predictions.keys() & second.predictions.keys()
    return sum(first.predictions[k] == second.predictions[k] for k in shared), len(shared)


# --------------------------------------------------------------------------------------------
# Command line (``triage evaluate``)
# --------------------------------------------------------------------------------------------


def _progress_printer(name: str, stream: IO[str]) -> Callable[[int, int], None] | None:
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        if done == total or done % 100 == 0:
            stream.write(f"\r{name}: {done}/{total}" + ("\n" if done == total else ""))
            stream.flush()

    return show


def confusion_matrix(report: EvaluationReport) -> ConfusionMatrix:
    """A labelled report's confusion matrix, classes in the report's order."""
    classes = report.classes
    counts = [[report.confusion.get(gold, {}).get(predicted, 0) for predicted in classes] for gold in classes]
    return ConfusionMatrix(f"{report.dataset}: problem_type", classes, classes, counts)


def write_chart(reports: Mapping[str, EvaluationReport], path: Path) -> None:
    """The confusion matrices of the labelled ``reports`` as one PNG (needs the ``charts`` extra)."""
    labelled = [report for report in reports.values() if report.labelled]
    if not labelled:
        raise ValueError(f"--chart: {', '.join(reports)} has no labels, so no confusion matrix; "
                         "use banking77 or bitext")
    confusion_matrices_png([confusion_matrix(report) for report in labelled], path)


def _data_from_settings() -> Path | None:
    from triage.settings import load_settings

    return load_settings().evaluation.data


def evaluate_command(dataset: str, data: Path | None, limit: int | None = None, as_json: bool = False, *,
                     chart: Path | None = None, extractor: Extractor | None = None,
                     out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """``triage evaluate DATASET``: run the rules extractor (default) and print the report(s).

    ``dataset`` may be a group (``stc3``, ``all``); with both stc3 files the cn/en agreement is
    printed too. ``data`` is the folder holding the sets (default: ``TRIAGE_EVAL_DATA``);
    ``chart`` a PNG file for the confusion matrices. Returns the exit status: 0, or 2 for an
    unknown name, no data folder, a missing file or a chart that cannot be drawn.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        names = resolve_datasets(dataset)
    except ValueError as exc:
        print(f"triage evaluate: {exc}", file=err)
        return 2
    data = data or _data_from_settings()
    if data is None:
        print("triage evaluate: no data folder: give --data DIR or set TRIAGE_EVAL_DATA to the folder holding "
              "banking77/, bitext/ and stc3/", file=err)
        return 2
    if extractor is None:
        from triage.extraction.rules import RulesExtractor
        from triage.settings import load_settings

        extractor = RulesExtractor(TicketSchema.load(load_settings().schema_path))
    reports: dict[str, EvaluationReport] = {}
    for name in names:
        try:
            reports[name] = evaluate(name, data, extractor, limit=limit, progress=_progress_printer(name, err))
        except (FileNotFoundError, json.JSONDecodeError, KeyError, csv.Error) as exc:
            print(f"triage evaluate: {name}: cannot read the data set: {exc} (point --data or "
                  "TRIAGE_EVAL_DATA at the folder holding banking77/, bitext/ and stc3/)", file=err)
            return 2
    if chart is not None:
        try:
            write_chart(reports, chart)
        except (ValueError, ChartsUnavailableError) as exc:
            print(f"triage evaluate: {exc}", file=err)
            return 2
        print(f"triage evaluate: confusion matrix written to {chart}", file=err)
    pair = ("stc3-cn", "stc3-en")
    same, shared = agreement(reports[pair[0]], reports[pair[1]]) if set(pair) <= set(reports) else (0, 0)
    if as_json:
        document: dict[str, Any] = {"reports": [r.to_dict() for r in reports.values()]}
        if shared:
            document["stc3_cn_en_agreement"] = {"same": same, "shared": shared, "rate": same / shared}
        print(json.dumps(document, ensure_ascii=False, indent=2), file=out)
        return 0
    print("\n\n".join(report.format() for report in reports.values()), file=out)
    if shared:
        print(f"\nstc3 cn/en agreement on problem_type (same dialogues, two languages): {same}/{shared} "
              f"({_pct(same / shared)})", file=out)
    return 0
