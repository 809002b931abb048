"""Every status is a name, and each has one writer: checked on the source, not on behaviour.

1. Outside the enum modules (``triage/states/``), the migrations and the tests, no string literal equal
   to a status or an attempt's outcome is compared with, or assigned to, a status or an outcome (Python
   and the desk's Jinja templates): they use the enums (``Status.RESOLVED``), so renaming a value is
   one edit and a typo is an AttributeError instead of a silent mismatch.
2. Only the ticket lifecycle (``triage/tickets/lifecycle.py``) writes a ticket's status, and only the
   outbox (``triage/outbox/outbox.py``) a delivery's: no other module assigns ``<row>.status``,
   passes ``status=`` to an UPDATE or INSERT's ``values``, or builds a ticket or delivery row with a
   status. Intake stores a new ticket from :func:`triage.tickets.lifecycle.new_ticket`'s values.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
from jinja2 import nodes

from triage.states.deliveries import DeliveryStatus
from triage.states.tickets import AttemptOutcome, Status

PACKAGE = Path(__file__).resolve().parent.parent / "triage"
ENUM_MODULES = PACKAGE / "states"
TEMPLATES = PACKAGE / "api" / "desk" / "templates"
#: What a status or an outcome is called where it is compared or assigned.
STATUS_NAME = re.compile(r"(^|_)(status|outcome)$")
VALUES = {str(v) for enum in (Status, DeliveryStatus, AttemptOutcome) for v in enum}
STATUS_WRITERS = {PACKAGE / "tickets" / "lifecycle.py", PACKAGE / "outbox" / "outbox.py"}
ROW_CLASSES = {"Ticket", "Delivery"}


def _modules() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if ENUM_MODULES not in path.parents and not path.name.startswith("test_"):
            yield path


def _name(node: ast.AST) -> str | None:
    """The identifier a node ends in: ``status`` for ``status``, ``row.status`` and ``row["status"]``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return node.slice.value
    return None


def _is_status(node: ast.AST) -> bool:
    name = _name(node)
    return name is not None and STATUS_NAME.search(name) is not None


def _literals(node: ast.AST) -> list[str]:
    """The status values written as literals in ``node``: a string, or a tuple, list or set of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value in VALUES else []
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [found for element in node.elts for found in _literals(element)]
    return []


def raw_statuses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, literal) for each status literal compared with or assigned to a status in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_status(side) for side in sides):
                yield from ((node.lineno, found) for side in sides for found in _literals(side))
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_is_status(target) for target in targets):
                yield from ((node.lineno, found) for found in _literals(node.value))
        elif isinstance(node, ast.keyword) and node.arg and STATUS_NAME.search(node.arg):
            yield from ((node.value.lineno, found) for found in _literals(node.value))
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if key is not None and _is_status(ast.Subscript(slice=key)):
                    yield from ((value.lineno, found) for found in _literals(value))


def _template_literals(node: nodes.Node) -> list[str]:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return [node.value] if node.value in VALUES else []
    if isinstance(node, nodes.Tuple | nodes.List):
        return [found for item in node.items for found in _template_literals(item)]
    return []


def template_raw_statuses(source: str) -> Iterator[tuple[int, str]]:
    """(line, literal) for each status literal a template compares with something."""
    tree = jinja2.Environment().parse(source)
    for compare in tree.find_all(nodes.Compare):
        for side in [compare.expr, *(operand.expr for operand in compare.ops)]:
            yield from ((compare.lineno, found) for found in _template_literals(side))


def status_writes(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for each write of a ticket's or delivery's status in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            flat = [t for target in targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
            for target in flat:
                owner = target.value if isinstance(target, ast.Attribute) else None
                if target is not None and _name(target) == "status" and isinstance(target, ast.Attribute) \
                        and not (isinstance(owner, ast.Name) and owner.id == "self"):
                    yield node.lineno, f"assigns {ast.unparse(target)}"
        elif isinstance(node, ast.Call):
            keywords = {k.arg for k in node.keywords}
            dict_keys = {k.value for arg in node.args if isinstance(arg, ast.Dict)
                         for k in arg.keys if isinstance(k, ast.Constant)}
            writes_status = "status" in keywords or "status" in dict_keys
            if not writes_status:
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "values" and _statement(func.value) is not None:
                yield node.lineno, f"{_statement(func.value)}(...).values(status=...)"
            elif isinstance(func, ast.Name) and func.id in ROW_CLASSES:
                yield node.lineno, f"{func.id}(status=...)"


def _statement(node: ast.AST) -> str | None:
    """``update`` or ``insert`` when ``node`` is (a method chain on) such a call."""
    while isinstance(node, ast.Call | ast.Attribute):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("update", "insert"):
            return node.func.id
        node = node.func if isinstance(node, ast.Call) else node.value
    return None


def test_no_status_is_written_as_a_string_literal() -> None:
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {literal!r}"
             for path in _modules() for line, literal in raw_statuses(ast.parse(path.read_text(), str(path)))]
    found += [f"{path.relative_to(PACKAGE.parent)}:{line}: {literal!r}"
              for path in sorted(TEMPLATES.glob("*.html")) for line, literal in template_raw_statuses(path.read_text())]
    assert found == [], "use the enum member, not its value:\n" + "\n".join(found)


def test_only_the_lifecycle_and_the_outbox_write_a_status() -> None:
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
             for path in _modules() if path not in STATUS_WRITERS
             for line, what in status_writes(ast.parse(path.read_text(), str(path)))]
    assert found == [], "a ticket's status changes in triage.tickets.lifecycle, a delivery's in the outbox:\n" \
        + "\n".join(found)


@pytest.mark.parametrize(("source", "expected"), [
    ('if ticket.status == "resolved": pass', [(1, "resolved")]),
    ('ok = row["status"] in ("failed", "gone")', [(1, "failed"), (1, "gone")]),
    ('status = "queued"', [(1, "queued")]),
    ('answer = {"ticket_id": 1, "status": "queued"}', [(1, "queued")]),
    ('View(status="routed")', [(1, "routed")]),
    ('if attempt.outcome != "api_error": pass', [(1, "api_error")]),
    ('if ticket.status == Status.RESOLVED: pass', []),
    ('kind = "resolved"', []),
    ('if route == "billing": pass', []),
])
def test_the_literal_check_sees_what_it_should(source: str, expected: list[tuple[int, str]]) -> None:
    assert list(raw_statuses(ast.parse(source))) == expected


@pytest.mark.parametrize(("source", "expected"), [
    ('{% if t.status == "resolved" %}x{% endif %}', [(1, "resolved")]),
    ('{% if d.status in ("failed", "gone") %}x{% endif %}', [(1, "failed"), (1, "gone")]),
    ("{% if t.status == Status.RESOLVED %}x{% endif %}", []),
])
def test_the_template_check_sees_what_it_should(source: str, expected: list[tuple[int, str]]) -> None:
    assert list(template_raw_statuses(source)) == expected


@pytest.mark.parametrize(("source", "expected"), [
    ("ticket.status = Status.ROUTED", [(1, "assigns ticket.status")]),
    ("row.status, row.updated_at = DeliveryStatus.PENDING, now", [(1, "assigns row.status")]),
    ("session.execute(update(Ticket).where(Ticket.id == 1).values(status=Status.QUEUED))",
     [(1, "update(...).values(status=...)")]),
    ('session.execute(insert(TICKETS).values({"status": Status.QUEUED}))', [(1, "insert(...).values(status=...)")]),
    ("Delivery(id='x', status=DeliveryStatus.PENDING)", [(1, "Delivery(status=...)")]),
    ("self.status = status", []),
    ("session.execute(insert(TICKETS).values(**new_ticket(external_id, messages, now)))", []),
    ("TicketFilter(status=Status.ROUTED)", []),
])
def test_the_writer_check_sees_what_it_should(source: str, expected: list[tuple[int, str]]) -> None:
    assert list(status_writes(ast.parse(source))) == expected
