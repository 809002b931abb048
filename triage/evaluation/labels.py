"""Labelled data in: the public sets mapped to the ticket schema, and a team's own JSON Lines.

A data set is a public set's name (``banking77``, ``bitext``, ``stc3-cn``, ``stc3-en``), found under
a data folder (the layout of ``../shared/data``: ``banking77/test.csv``, ``bitext/*.csv``,
``stc3/test_data_{cn,en}.json``), or a JSON Lines file, one conversation a line::

    {"text": "My card was declined", "labels": {"problem_type": "device_fault", "urgent_level": "high"}}
    {"source": "zendesk", "external_id": "4711", "messages": [{"role": "customer", "text": "..."}],
     "labels": {"problem_type": "consult"}}

``labels`` may name any field of the ticket schema; ``source`` and ``external_id`` are optional (the
row's key is then a hash of its text). A bad line costs only that line: it is counted in
:attr:`LoadedDataset.problems` with its number and the reason.

None of the public sets is labelled with this project's ``problem_type``. The tables below map their
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
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.conversation import Conversation, Message
from triage.errors import TriageError
from triage.intake.jsonbody import load_object
from triage.intake.messages import parse_messages
from triage.schema import TicketSchema

#: Data set names :func:`load_dataset` knows.
DATASETS: tuple[str, ...] = ("banking77", "bitext", "stc3-cn", "stc3-en")
#: Names that stand for several data sets (for a command line: ``evaluate stc3``).
DATASET_GROUPS: dict[str, tuple[str, ...]] = {"stc3": ("stc3-cn", "stc3-en"), "all": DATASETS}
#: File name endings read as JSON Lines (any existing file is, too).
JSONL_SUFFIXES = (".jsonl", ".ndjson")

#: The default schema's classes, in the order reports list them.
PROBLEM_TYPES: tuple[str, ...] = ("device_fault", "consult", "complaint", "other")
#: What a row predicts when the extractor raised or returned no ticket.
NO_TICKET = "<no ticket>"
#: The ticket field the public sets' own labels are mapped to (the tables below).
LABEL_FIELD = "problem_type"
#: A label value JSON Lines may carry for a field.
LabelValue = str | int | float | bool | None

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


class LabelsError(TriageError):
    """A JSON Lines row is not a labelled conversation; the message says why."""


@dataclass(frozen=True)
class Sample:
    """One item to extract from: its conversation, its gold field values and the source's own label.

    ``key`` names the item in its file (the stc3 dialogue id, the CSV data row number, a JSON Lines
    row's ``source:external_id`` or the hash of its text).
    """

    conversation: Conversation
    labels: Mapping[str, LabelValue] = field(default_factory=dict)
    label: str | None = None
    key: str = ""

    @property
    def gold(self) -> str | None:
        """The gold ``problem_type``, when the row has one."""
        value = self.labels.get(LABEL_FIELD)
        return None if value is None else str(value)


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
    #: JSON Lines rows that were not read, as ``line N: reason``.
    problems: list[str] = field(default_factory=list)

    @property
    def fields(self) -> list[str]:
        """The fields some sample has a label for, in first-seen order."""
        seen: dict[str, None] = {}
        for sample in self.samples:
            seen.update(dict.fromkeys(sample.labels))
        return list(seen)


def conversation_hash(conversation: Conversation) -> str:
    """A content hash of the conversation (roles and texts): what the LLM answer cache is keyed by.

    >>> conversation_hash(Conversation.from_text("hi")) == conversation_hash(Conversation.from_text("hi"))
    True
    """
    canonical = json.dumps(conversation.to_dicts(), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


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
            loaded.samples.append(Sample(Conversation.from_text(text), {LABEL_FIELD: mapping[label]}, label,
                                         str(number)))
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


def _labels(data: Mapping[str, Any], schema: TicketSchema | None) -> dict[str, LabelValue]:
    labels = data.get("labels", {})
    if not isinstance(labels, dict):
        raise LabelsError('"labels" must be an object of field -> value')
    checked: dict[str, LabelValue] = {}
    for name, value in labels.items():
        if isinstance(value, dict | list):
            raise LabelsError(f"labels.{name}: must be a single value (a string, number, boolean or null)")
        if schema is not None:
            if name not in schema.properties:
                raise LabelsError(f"labels.{name}: not a field of the ticket schema "
                                  f"(its fields: {', '.join(schema.properties)})")
            issues = schema.field_issues(name, value)
            if issues:
                raise LabelsError(f"labels.{name}: {issues[0]}")
        checked[name] = value.strip() if isinstance(value, str) else value
    return checked


def parse_labelled_line(raw: bytes, schema: TicketSchema | None = None) -> Sample:
    """One JSON Lines row as a :class:`Sample`, else :class:`LabelsError` saying why.

    >>> sample = parse_labelled_line(b'{"text": "hi", "labels": {"problem_type": "other"}}')
    >>> sample.gold, len(sample.key)
    ('other', 16)
    >>> parse_labelled_line(b'{"text": "hi", "labels": ["other"]}')
    Traceback (most recent call last):
    ...
    triage.evaluation.labels.LabelsError: "labels" must be an object of field -> value
    """
    data = load_object(raw, LabelsError)
    conversation = Conversation(parse_messages(data, LabelsError))
    source, external_id = data.get("source"), data.get("external_id")
    for name, value in (("source", source), ("external_id", external_id)):
        if value is not None and not isinstance(value, str | int):
            raise LabelsError(f'"{name}" must be a string')
    key = f"{source or 'jsonl'}:{external_id}" if external_id is not None else conversation_hash(conversation)[:16]
    return Sample(conversation, _labels(data, schema), key=key)


def load_jsonl(source: Path, schema: TicketSchema | None = None) -> LoadedDataset:
    """A JSON Lines file of labelled conversations; every bad line is a problem, the rest are read."""
    try:
        lines = source.read_bytes().splitlines()
    except OSError as exc:
        raise DatasetNotFoundError(f"{source}: cannot read it: {exc.strerror or exc}") from exc
    loaded = LoadedDataset(str(source), source, [], rows=0)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        loaded.rows += 1
        try:
            loaded.samples.append(parse_labelled_line(raw, schema))
        except TriageError as exc:
            loaded.problems.append(f"line {number}: {exc}")
    loaded.labelled = any(sample.labels for sample in loaded.samples)
    return loaded


def is_jsonl(dataset: str) -> bool:
    """Whether ``dataset`` names a JSON Lines file rather than a public set.

    >>> is_jsonl("tickets.jsonl"), is_jsonl("banking77")
    (True, False)
    """
    return dataset not in DATASETS and (dataset.endswith(JSONL_SUFFIXES) or Path(dataset).is_file())


def load_dataset(dataset: str, path: Path | None, schema: TicketSchema | None = None) -> LoadedDataset:
    """Read ``dataset``: a public set found under ``path``, or a JSON Lines file (``schema`` checks its labels)."""
    if is_jsonl(dataset):
        return load_jsonl(Path(dataset), schema)
    if path is None:
        raise DatasetNotFoundError(f"{dataset}: no data folder given")
    source = find_dataset_file(dataset, path)
    if dataset == "banking77":
        return load_banking77(source)
    if dataset == "bitext":
        return load_bitext(source)
    return load_stc3(source, dataset)


def resolve_datasets(name: str) -> tuple[str, ...]:
    """A data set name, group name or JSON Lines file -> data set names.

    >>> resolve_datasets("stc3"), resolve_datasets("bitext"), resolve_datasets("mine.jsonl")
    (('stc3-cn', 'stc3-en'), ('bitext',), ('mine.jsonl',))
    """
    if name in DATASET_GROUPS:
        return DATASET_GROUPS[name]
    if name in DATASETS or is_jsonl(name):
        return (name,)
    raise ValueError(f"unknown data set {name!r}; known: {', '.join((*DATASETS, *DATASET_GROUPS))}, "
                     "or a JSON Lines file (.jsonl)")


def needs_data_folder(names: tuple[str, ...] | list[str]) -> bool:
    """Whether any of ``names`` is a public set (read from the data folder)."""
    return any(name in DATASETS for name in names)


def spread(items: list[Any], limit: int | None) -> list[Any]:
    """At most ``limit`` items, evenly spaced (the files are sorted by label; a head would not be).

    >>> spread(list(range(10)), 3), spread([1, 2], None)
    ([0, 3, 6], [1, 2])
    """
    if limit is None or limit >= len(items):
        return list(items)
    return [items[i * len(items) // limit] for i in range(max(limit, 0))]


class LabelledDataError(ValueError):
    """A named labelled data set cannot be used (no data folder, a file that cannot be read); the message says
    what to do."""


def load_named(names: Sequence[str], data: Path | None, schema: TicketSchema | None,
               say: Callable[[str], None]) -> Iterator[tuple[str, LoadedDataset]]:
    """Each named data set (groups expanded) loaded, as ``triage learn`` and ``triage calibrate`` take them;
    ``data`` is the public sets' folder; every row that could not be read is ``say``-ed."""
    expanded = [n for name in names for n in resolve_datasets(name)]
    if data is None and needs_data_folder(expanded):
        raise LabelledDataError("no data folder: give --data DIR or set TRIAGE_EVAL_DATA to the folder holding "
                                "banking77/, bitext/ and stc3/")
    for name in expanded:
        try:
            loaded = load_dataset(name, data, schema)
        except (FileNotFoundError, ValueError) as exc:
            raise LabelledDataError(f"{name}: cannot read the data set: {exc}") from exc
        for problem in loaded.problems:
            say(f"{name}: {problem}")
        yield name, loaded
