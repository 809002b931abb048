"""The five write-back platforms as test cases: a fake server, credentials, route mappings in the
platform's own terms, and what each route should leave on the ticket.

Settings are built the way production builds them, through :func:`load_settings`: a TOML file
holding the shipped routing rules plus the test's ``[writeback]`` tables, credentials from the
contract's environment variables.
"""

from __future__ import annotations

import base64
import copy
import json
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.fakehelpdesks import (
    FakeChatwoot,
    FakeFreshdesk,
    FakeHelpdesk,
    FakeIntercom,
    FakeTicket,
    FakeZammad,
    FakeZendesk,
)
from tests.harness import REPO
from triage.delivery import PlatformRef, Write, build_adapter
from triage.delivery.adapter import WritebackAdapter
from triage.intake.platforms import signed_request
from triage.settings import Settings, load_settings

AGENT_TAGS = ["vip", "billing", "triage_manual"]
TRIAGE_URL = "https://triage.example.com"
FIELDS = {"problem_type": "device_fault", "device_model": "Watch S1", "urgent_level": "high",
          "user_requirements": ["replacement"]}
#: Client timeout in the tests; a "hang" answers later than this.
TIMEOUT = 0.3
HANG = 0.6


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + " }"
    return json.dumps(value, ensure_ascii=False)  # JSON strings, numbers and lists are TOML too


def _routing_toml() -> str:
    routing = tomllib.loads((REPO / "config" / "triage.toml").read_text(encoding="utf-8"))["routing"]
    lines: list[str] = []
    for rule in routing["rules"]:
        lines += ["[[routing.rules]]", *(f"{key} = {_toml_value(value)}" for key, value in rule.items())]
    lines += ["[routing.fallback]", *(f"{key} = {_toml_value(value)}" for key, value in routing["fallback"].items())]
    return "\n".join(lines) + "\n"


#: The shipped ``[routing]`` as TOML: write-back mappings are checked against its routes and priorities.
ROUTING_TOML = _routing_toml()


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Case:
    platform: str
    ticket_id: str
    account_id: str | None
    #: The ``[writeback.<platform>...]`` tables.
    toml: str
    #: Credential variables for a fake at ``base_url``.
    env: Callable[[str], dict[str, str]]
    token_variable: str
    fake: Callable[[], FakeHelpdesk]
    #: (group, priority) as the fake holds them.
    state: Callable[[FakeTicket], tuple[Any, Any]]
    escalation_p1: tuple[Any, Any]
    support_p2: tuple[Any, Any]
    support_p3: tuple[Any, Any]
    #: The note's request: method, path pattern, and how many matching requests come before it.
    note_call: tuple[str, str, int]

    def __str__(self) -> str:
        return self.platform


def _group_priority(ticket: FakeTicket) -> tuple[Any, Any]:
    return ticket.group, ticket.priority


ZENDESK = Case(
    platform="zendesk", ticket_id="35436", account_id="22129848",
    toml='''
[writeback.zendesk.routes."hardware-escalation"]
group_id = 360001
priority = "urgent"
tags = ["triage-hw"]
[writeback.zendesk.routes."hardware-support"]
group_id = 360002
[writeback.zendesk.priorities]
P2 = "high"
P3 = "normal"
''',
    env=lambda url: {"TRIAGE_WRITEBACK_ZENDESK_URL": url, "TRIAGE_WRITEBACK_ZENDESK_EMAIL": "bot@acme.test",
                     "TRIAGE_WRITEBACK_ZENDESK_TOKEN": "zd-secret-token-1"},
    token_variable="TRIAGE_WRITEBACK_ZENDESK_TOKEN",
    fake=lambda: FakeZendesk(email="bot@acme.test", token="zd-secret-token-1"),
    state=_group_priority, escalation_p1=(360001, "urgent"), support_p2=(360002, "high"),
    support_p3=(360002, "normal"), note_call=("PUT", r"^/api/v2/tickets/\d+$", 1),
)

INTERCOM = Case(
    platform="intercom", ticket_id="147", account_id="a86dr8yl",
    toml='''
[writeback.intercom]
priority_via = "custom_attribute"
[writeback.intercom.routes."hardware-escalation"]
team_id = 5001
priority = "urgent"
tags = ["triage-hw"]
[writeback.intercom.routes."hardware-support"]
team_id = "5002"
[writeback.intercom.priorities]
P2 = "high"
P3 = "low"
''',
    env=lambda url: {"TRIAGE_WRITEBACK_INTERCOM_URL": url, "TRIAGE_WRITEBACK_INTERCOM_TOKEN": "ic-secret-token-1",
                     "TRIAGE_WRITEBACK_INTERCOM_ADMIN_ID": "991"},
    token_variable="TRIAGE_WRITEBACK_INTERCOM_TOKEN",
    fake=lambda: FakeIntercom(token="ic-secret-token-1", admin_id="991"),
    state=lambda ticket: (ticket.group, ticket.attributes.get("triage_priority")),
    escalation_p1=("5001", "urgent"), support_p2=("5002", "high"), support_p3=("5002", "low"),
    note_call=("POST", r"/reply$", 0),
)

CHATWOOT = Case(
    platform="chatwoot", ticket_id="12", account_id="1",
    toml='''
[writeback.chatwoot.routes."hardware-escalation"]
team_id = 5
priority = "urgent"
tags = ["triage-hw"]
[writeback.chatwoot.routes."hardware-support"]
team_id = 6
[writeback.chatwoot.priorities]
P2 = "high"
P3 = "low"
''',
    env=lambda url: {"TRIAGE_WRITEBACK_CHATWOOT_URL": url, "TRIAGE_WRITEBACK_CHATWOOT_TOKEN": "cw-secret-token-1",
                     "TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID": "1"},
    token_variable="TRIAGE_WRITEBACK_CHATWOOT_TOKEN",
    fake=lambda: FakeChatwoot(token="cw-secret-token-1", account_id=1, teams={5, 6}),
    state=_group_priority, escalation_p1=(5, "urgent"), support_p2=(6, "high"), support_p3=(6, "low"),
    note_call=("POST", r"/messages$", 0),
)

ZAMMAD = Case(
    platform="zammad", ticket_id="5", account_id=None,
    toml='''
[writeback.zammad.routes."hardware-escalation"]
group_id = 3
priority_id = 3
tags = ["triage-hw"]
[writeback.zammad.routes."hardware-support"]
group = "Users"
[writeback.zammad.priorities]
P2 = 2
P3 = 1
''',
    env=lambda url: {"TRIAGE_WRITEBACK_ZAMMAD_URL": url, "TRIAGE_WRITEBACK_ZAMMAD_TOKEN": "zm-secret-token-1"},
    token_variable="TRIAGE_WRITEBACK_ZAMMAD_TOKEN",
    fake=lambda: FakeZammad(token="zm-secret-token-1", groups={1: "Users", 3: "Escalations"},
                            priorities={1: "1 low", 2: "2 normal", 3: "3 high"}),
    state=_group_priority, escalation_p1=(3, 3), support_p2=(1, 2), support_p3=(1, 1),
    note_call=("POST", r"/ticket_articles$", 0),
)

FRESHDESK = Case(
    platform="freshdesk", ticket_id="5123", account_id=None,
    toml='''
[writeback.freshdesk.routes."hardware-escalation"]
group_id = 9001
priority = 4
tags = ["triage-hw"]
[writeback.freshdesk.routes."hardware-support"]
group_id = 9002
[writeback.freshdesk.priorities]
P2 = 3
P3 = 2
''',
    env=lambda url: {"TRIAGE_WRITEBACK_FRESHDESK_URL": url, "TRIAGE_WRITEBACK_FRESHDESK_TOKEN": "fd-secret-key-1"},
    token_variable="TRIAGE_WRITEBACK_FRESHDESK_TOKEN",
    fake=lambda: FakeFreshdesk(api_key="fd-secret-key-1"),
    state=_group_priority, escalation_p1=(9001, 4), support_p2=(9002, 3), support_p3=(9002, 2),
    note_call=("POST", r"/notes$", 0),
)

CASES = [ZENDESK, INTERCOM, CHATWOOT, ZAMMAD, FRESHDESK]


#: An events receiver's secret in the tests (``whsec_`` + base64 of 24 bytes).
EVENTS_SECRET = "whsec_" + base64.b64encode(b"triage-events-test-key-1").decode()


@dataclass(frozen=True)
class Endpoint:
    """An ``[[events.endpoints]]`` entry."""

    url: str
    events: tuple[str, ...]
    secret: str = EVENTS_SECRET


def config_file(tmp_path: Path, tables: str, *, note: bool = True, endpoints: Sequence[Endpoint] = (),
                name: str = "triage.toml") -> Path:
    """A config file: the shipped routing, ``[writeback]`` (``note``, links, the tests' timeout) with the
    platforms' ``tables``, and ``endpoints``."""
    head = f'[writeback]\nnote = {str(note).lower()}\ntriage_url = "{TRIAGE_URL}"\ntimeout_seconds = {TIMEOUT}\n'
    events = "".join(f'[[events.endpoints]]\nurl = "{e.url}"\nsecret = "{e.secret}"\nevents = {json.dumps(e.events)}\n'
                     for e in endpoints)
    config = tmp_path / name
    config.write_text(ROUTING_TOML + head + tables + events, encoding="utf-8")
    return config


def settings_for(case: Case, base_url: str, tmp_path: Path, *, note: bool = True, toml: str | None = None,
                 env: dict[str, str] | None = None) -> Settings:
    """The shipped routing plus ``[writeback]`` for ``case``, credentials from the contract's variables."""
    config = config_file(tmp_path, case.toml if toml is None else toml, note=note)
    return load_settings({"TRIAGE_CONFIG": str(config), **case.env(base_url), **(env or {})})


def make_write(case: Case, delivery_id: str, route: str, priority: str,
               previous: tuple[str | None, str | None] = (None, None), *, ticket_id: str | None = None,
               platform: str | None = None) -> Write:
    """A write-back of triage ticket 42 to ``case``'s ticket (``ticket_id`` / ``platform`` override the ref)."""
    ref = PlatformRef(platform or case.platform, case.ticket_id if ticket_id is None else ticket_id, case.account_id)
    return Write(delivery_id, ref, ticket_id=42, route=route, priority=priority, previous_route=previous[0],
                 previous_priority=previous[1], fields=FIELDS)


@dataclass
class Rig:
    """One platform under test: its fake, an adapter on the fake, the adapter's clock."""

    case: Case
    fake: Any
    adapter: WritebackAdapter
    clock: Clock

    def write(self, delivery_id: str, route: str, priority: str, previous: tuple[str | None, str | None] = (None, None),
              ticket_id: str | None = None, platform: str | None = None) -> Write:
        return make_write(self.case, delivery_id, route, priority, previous, ticket_id=ticket_id, platform=platform)

    def ticket(self, **state: Any) -> FakeTicket:
        ticket: FakeTicket = self.fake.ticket(self.case.ticket_id, **{"tags": list(AGENT_TAGS), **state})
        return ticket

    @property
    def state(self) -> tuple[Any, Any]:
        return self.case.state(self.fake.tickets[self.case.ticket_id])

    @property
    def tags(self) -> list[str]:
        return sorted(self.fake.tickets[self.case.ticket_id].tags)


@contextmanager
def rig(case: Case, tmp_path: Path, *, base_path: str = "", fake: FakeHelpdesk | None = None,
        **options: Any) -> Iterator[Rig]:
    """``case``'s fake (or ``fake``) and an adapter on it; ``base_path`` is appended to the configured URL
    (a misconfiguration, e.g. ``/api/v2`` on Zendesk's)."""
    with fake or case.fake() as fake:
        settings = settings_for(case, fake.base_url + base_path, tmp_path, **options)
        clock = Clock()
        adapter = build_adapter(case.platform, settings.writeback, clock=clock)
        try:
            yield Rig(case, fake, adapter, clock)
        finally:
            adapter.close()


# ---- the helpdesk's answer: Zendesk's signed change events -----------------------------------------------

ZENDESK_EVENTS = Path(__file__).parent / "fixtures" / "zendesk"
#: triage's own Zendesk user (writeback.zendesk.user_id) and an agent.
ZENDESK_BOT, ZENDESK_AGENT = "900000000001", "8537190099001"


def zendesk_fixture(name: str) -> dict[str, Any]:
    """A Zendesk event of tests/fixtures/zendesk, in the shape Zendesk documents."""
    payload: dict[str, Any] = json.loads((ZENDESK_EVENTS / f"ticket.{name}.json").read_text(encoding="utf-8"))
    return payload


def zendesk_change(name: str, *, actor: str = ZENDESK_AGENT, ticket: str = ZENDESK.ticket_id,
                   event_id: str | None = None, **event: Any) -> dict[str, Any]:
    """A fixture's event with its actor, ticket, id and ``event`` values replaced."""
    payload = copy.deepcopy(zendesk_fixture(name))
    payload["detail"].update(actor_id=actor, id=ticket)
    payload["subject"] = f"zen:ticket:{ticket}"
    payload["event"].update(event)
    if event_id is not None:
        payload["id"] = event_id
    return payload


def post_signed(client: TestClient, platform: str, payload: dict[str, Any], secret: str) -> Any:
    """``payload`` posted to ``platform``'s webhook, signed with ``secret`` as the platform signs it now."""
    body, headers = signed_request(platform, payload, secret, now=time.time())
    return client.post(f"/webhooks/{platform}", content=body, headers=headers)
