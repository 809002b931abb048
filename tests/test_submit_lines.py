"""``triage submit``: every line on its own, so one bad line costs that line only, never the rest of the file.

Each case of issue 8 section 1 is a line here: NUL and lone surrogates (repaired, flagged), ids too
long (refused by name), absurd nesting and integers, invalid UTF-8 (only its line), through the
line parser, the store on SQLite and PostgreSQL, and once through the real command.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.factories import EPOCH, build_app, count_statements
from tests.harness import Stack
from triage.app import App
from triage.errors import InputError
from triage.intake.jsonlines import Refused, Stored, parse_line, submit_lines
from triage.store.db import upgrade
from triage.store.models import Conversation, Ticket


def _line(**fields: object) -> bytes:
    """A submit line, serialised with ASCII escapes (so a lone surrogate travels as ``\\ud800``)."""
    return json.dumps({"source": "shop", "text": "My router is broken", **fields}).encode()


#: The lines issue 8 saw kill `triage submit`, each with how it must end.
HOSTILE = [
    (_line(external_id="nul", text="Wi-Fi\x00 down"), "stored"),
    (_line(external_id="surrogate", text="broken \ud800 screen"), "stored"),
    (_line(external_id="x" * 256), '"external_id" is 256 characters long'),
    (_line(external_id="long-source", source="s" * 65), '"source" is 65 characters long'),
    (b'{"source": "shop", "external_id": "deep", "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "nested too deep"),
    (b'{"source": "shop", "external_id": "digits", "text": "hi", "customer": {"n": ' + b"9" * 5000 + b"}}",
     "an integer of more than 4300 digits"),
    (b'{"source": "shop", "external_id": "utf8", "text": "caf\xe9"}', "not UTF-8"),
    (_line(external_id="nan", customer={"score": float("nan")}), "NaN is not a JSON number"),
    (b'{"source": "shop", "external_id": "twice", "text": "hi", "external_id": "other"}',
     'the key "external_id" is given twice'),
]


@pytest.mark.parametrize(("raw", "expected"), HOSTILE, ids=lambda v: v if isinstance(v, str) else "")
def test_each_hostile_line_is_parsed_or_refused_with_its_reason(raw: bytes, expected: str) -> None:
    if expected == "stored":
        done = parse_line(raw)
        assert done.repaired == ("messages[0].text",)
        assert "\x00" not in done.value.conversation.customer_text()
        done.value.conversation.customer_text().encode("utf-8")
    else:
        with pytest.raises(InputError, match=expected):
            parse_line(raw)


@pytest.fixture
def app(migrated_database_url: str) -> Iterator[App]:
    built = build_app(migrated_database_url)
    yield built
    built.close()


def _run(app: App, lines: list[bytes], chunk_lines: int = 3) -> list[Stored | Refused]:
    """Submit ``lines`` in small chunks (so every test crosses chunk boundaries); each chunk's new tickets are
    published once, together, after its commit."""
    published: list[list[int]] = []
    outcomes = list(submit_lines(app.sessions, lines, published.append, lambda: EPOCH, chunk_lines))
    assert all(len(chunk) <= chunk_lines for chunk in published)
    assert [n for chunk in published for n in chunk] == [
        o.received.ticket_id for o in outcomes if isinstance(o, Stored) and o.received.enqueue]
    return outcomes


def test_a_file_of_hostile_lines_keeps_every_good_one(app: App) -> None:
    lines = [_line(external_id="first"), *(raw for raw, _ in HOSTILE), b"   ", _line(external_id="last")]
    outcomes = _run(app, lines)
    stored = {o.external_id: o.number for o in outcomes if isinstance(o, Stored)}
    refused = {o.number: o.reason for o in outcomes if isinstance(o, Refused)}
    assert stored == {"first": 1, "nul": 2, "surrogate": 3, "last": 12}
    assert sorted(refused) == [4, 5, 6, 7, 8, 9, 10]
    for number, (_, expected) in enumerate(HOSTILE, start=2):
        if expected != "stored":
            assert expected in refused[number]
    with app.sessions() as session:
        rows = {c.external_id: (c.messages[0]["text"], c.ticket.flags) for c in session.scalars(select(Conversation))}
    assert rows["nul"] == ("Wi-Fi down", {"text_repaired": {"fields": ["messages[0].text"]}})
    assert rows["surrogate"][0] == "broken \ufffd screen"
    assert rows["first"][1] == {}


def test_the_same_line_twice_is_one_ticket(app: App) -> None:
    first, again = _run(app, [_line(external_id="twice"), _line(external_id="twice")])
    assert isinstance(first, Stored) and isinstance(again, Stored)
    assert again.received.duplicate and again.received.ticket_id == first.received.ticket_id


def test_a_line_seen_before_or_twice_in_one_chunk_is_one_ticket(app: App) -> None:
    first = _run(app, [_line(external_id="a"), _line(external_id="b"), _line(external_id="a")], chunk_lines=10)
    again = _run(app, [_line(external_id="b"), _line(external_id="c")], chunk_lines=10)
    assert [(o.external_id, o.received.duplicate) for o in first + again if isinstance(o, Stored)] == [
        ("a", False), ("b", False), ("a", True), ("b", True), ("c", False)]
    assert first[2].received.ticket_id == first[0].received.ticket_id  # type: ignore[union-attr]
    assert again[0].received.ticket_id == first[1].received.ticket_id  # type: ignore[union-attr]
    with app.sessions() as session:
        assert len(session.scalars(select(Ticket)).all()) == 3


def _refuse_external_id(app: App, external_id: str) -> None:
    """Make the database itself refuse the conversation ``external_id`` (a trigger), as it might a line."""
    with app.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(
                f"CREATE TRIGGER refuse BEFORE INSERT ON conversations WHEN NEW.external_id = '{external_id}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.external_id = '{external_id}' THEN RAISE EXCEPTION 'refused by the test'; END IF; "
                "RETURN NEW; END $$")
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON conversations FOR EACH ROW EXECUTE FUNCTION refuse()")


def test_a_line_the_database_refuses_costs_only_itself_in_its_chunk(app: App) -> None:
    _refuse_external_id(app, "bad")
    outcomes = _run(app, [_line(external_id=name) for name in ("one", "bad", "two", "three")], chunk_lines=10)
    assert [type(o).__name__ for o in outcomes] == ["Stored", "Refused", "Stored", "Stored"]
    assert outcomes[1].number == 2 and "the database refused it" in outcomes[1].reason  # type: ignore[union-attr]
    assert "refused by the test" in outcomes[1].reason  # type: ignore[union-attr]
    with app.sessions() as session:
        assert sorted(c.external_id for c in session.scalars(select(Conversation))) == ["one", "three", "two"]


def test_a_chunk_is_one_transaction_of_a_few_statements_whatever_its_size(app: App) -> None:
    """Storing a chunk costs the same statements for 2 lines as for 50: one read of the ids already stored,
    one multi-row INSERT of conversations, one of tickets (and the transaction's own)."""
    counts = []
    for size, prefix in ((2, "small"), (50, "big")):
        with count_statements(app.engine) as statements:
            _run(app, [_line(external_id=f"{prefix}-{n}") for n in range(size)], chunk_lines=size)
        counts.append(len(statements))
    assert counts[0] == counts[1] <= 5, counts


def test_invalid_utf8_costs_only_its_line_through_the_command(tmp_path: Path) -> None:
    stack = Stack(f"sqlite:///{tmp_path / 'triage.sqlite3'}", f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
                  api_base_url=None, extra_env={"TRIAGE_EXTRACTOR": "rules"})
    stack.migrate()
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([b"\xef\xbb\xbf" + _line(external_id="bom-first"), *(raw for raw, _ in HOSTILE),
                                 _line(external_id="after")]) + b"\n")
    result = stack.cli("submit", str(path))
    assert result.returncode == 1
    assert [json.loads(line)["external_id"] for line in result.stdout.splitlines()] == [
        "bom-first", "nul", "surrogate", "after"]
    errors = result.stderr.splitlines()
    assert [e.split(":")[0] for e in errors] == [f"line {n}" for n in (4, 5, 6, 7, 8, 9, 10)]
    assert "Traceback" not in result.stderr
    assert '"external_id" is 256 characters long' in errors[0] and "not UTF-8" in errors[4]
    assert errors[6] == 'line 10: not usable JSON: the key "external_id" is given twice'
    with stack.sessions() as session:
        assert not session.scalars(select(Conversation).where(Conversation.external_id.in_(["twice", "other"]))).all()
    stack.close()


# ---- properties ----------------------------------------------------------------------------------

HOSTILE_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)
FIELD_VALUES = HOSTILE_TEXT | st.text(min_size=60, max_size=300) | st.integers() | st.none() | st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["customer", "agent", "bot"]), "text": HOSTILE_TEXT}), max_size=3)
SUBMISSIONS = st.fixed_dictionaries({"external_id": HOSTILE_TEXT | st.text(min_size=250, max_size=300)},
                                    optional={"source": FIELD_VALUES, "text": FIELD_VALUES,
                                              "messages": FIELD_VALUES, "customer": st.none() | st.dictionaries(
                                                  HOSTILE_TEXT, HOSTILE_TEXT, max_size=2)})
LINES = st.lists(st.one_of(
    SUBMISSIONS.map(lambda data: json.dumps({"source": "shop", **data}).encode()),  # type: ignore[dict-item]
    st.binary(max_size=60),
    SUBMISSIONS.map(lambda data: json.dumps(data).encode()[:-3]),  # cut short
), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200), SUBMISSIONS.map(lambda data: json.dumps(data).encode())))
def test_any_line_parses_or_is_refused_as_input(raw: bytes) -> None:
    try:
        done = parse_line(raw)
    except InputError:
        return
    value = done.value
    for text in (value.source, value.external_id, *(m.text for m in value.conversation.messages)):
        assert "\x00" not in text
        text.encode("utf-8")


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    url = f"sqlite:///{tmp_path_factory.mktemp('lines') / 'triage.sqlite3'}"
    upgrade(url)
    built = build_app(url)
    yield built
    built.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=LINES)
def test_any_file_stores_each_good_line_and_reports_each_bad_one(shared_app: App, lines: list[bytes]) -> None:
    numbered = [n for n, raw in enumerate(lines, start=1) if raw.strip()]
    outcomes = _run(shared_app, lines)
    assert [o.number for o in outcomes] == numbered, "one outcome per non-blank line, in order"
    for outcome in outcomes:
        if isinstance(outcome, Refused):
            assert outcome.reason and "Traceback" not in outcome.reason
            with pytest.raises(InputError):
                parse_line(lines[outcome.number - 1])
            continue
        with shared_app.sessions() as session:
            ticket = session.get_one(Ticket, outcome.received.ticket_id)
            assert ticket.conversation.external_id == outcome.external_id
