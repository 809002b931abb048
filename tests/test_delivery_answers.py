"""What each helpdesk's answer other than 2xx means, against the loopback platforms answering as the real
ones do (status, body, headers): a 404 is gone only when the platform says the record does not exist
(else the delivery fails naming the setting most likely wrong); Zendesk's 409 ``DatabaseConflict`` is
transient, its closed-ticket 422 a skip, its assignee-not-in-group 422 re-sent unassigned; a Chatwoot
agent-bot token is caught before the first write; the Freshdesk and Zammad note checks read every page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakehelpdesks import FakeChatwoot, FakeIntercom
from tests.writeback_cases import AGENT_TAGS, CHATWOOT, FRESHDESK, INTERCOM, ZAMMAD, ZENDESK, Case, Rig, rig
from triage.delivery import (
    FailedDeliveryError,
    GoneDeliveryError,
    SkippedDeliveryError,
    TransientDeliveryError,
    deliver,
)
from triage.delivery.chatwoot import BOT_TOKEN


def _done(done: list[str]):  # type: ignore[no-untyped-def]
    return lambda step, remarks: done.append(step)


# ---- 404: gone, or misaddressed -----------------------------------------------------------------------

@pytest.mark.parametrize(("case", "base_path", "setting"), [
    (ZENDESK, "/api/v2", "TRIAGE_WRITEBACK_ZENDESK_URL"),
    (INTERCOM, "/v2", "TRIAGE_WRITEBACK_INTERCOM_URL"),
    (CHATWOOT, "/api/v1", "TRIAGE_WRITEBACK_CHATWOOT_URL"),
    (ZAMMAD, "/api/v1", "TRIAGE_WRITEBACK_ZAMMAD_URL"),
    (FRESHDESK, "/api/v2", "TRIAGE_WRITEBACK_FRESHDESK_URL"),
], ids=str)
def test_a_base_url_with_the_api_path_doubled_fails_naming_the_url_setting(
        case: Case, base_path: str, setting: str, tmp_path: Path) -> None:
    with rig(case, tmp_path, base_path=base_path) as r:
        r.ticket()
        with pytest.raises(FailedDeliveryError, match=f"check {setting}") as caught:
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert not isinstance(caught.value, GoneDeliveryError) and r.tags == sorted(AGENT_TAGS)


def test_zendesk_says_which_404_is_gone_and_which_is_a_wrong_path(tmp_path: Path) -> None:
    with rig(ZENDESK, tmp_path) as r, pytest.raises(GoneDeliveryError, match="RecordNotFound: Not found"):
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
    with rig(ZENDESK, tmp_path, base_path="/api/v2") as r:
        r.ticket()
        with pytest.raises(FailedDeliveryError, match=r"InvalidEndpoint: Not found \(Zendesk knows no such API path"):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert [call.path for call in r.fake.calls()] == ["/api/v2/api/v2/tickets/35436"]  # no probe needed


def test_intercom_names_the_wrong_admin_or_team_and_calls_a_missing_conversation_gone(tmp_path: Path) -> None:
    with rig(INTERCOM, tmp_path, env={"TRIAGE_WRITEBACK_INTERCOM_ADMIN_ID": "992"}) as r:
        r.ticket()
        with pytest.raises(FailedDeliveryError, match="admin 992 does not: check TRIAGE_WRITEBACK_INTERCOM_ADMIN_ID"):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert r.fake.tickets["147"].group is None
    fake = FakeIntercom(token="ic-secret-token-1", admin_id="991", teams={"5002"})
    with rig(INTERCOM, tmp_path, fake=fake) as r:
        r.ticket()
        with pytest.raises(FailedDeliveryError, match=r"team 5001 does not: check "
                                                      r"writeback.intercom.routes.hardware-escalation.team_id"):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        deliver(r.adapter, r.write("d-2", "hardware-support", "P2"))  # team 5002 exists: this one lands
        assert r.fake.tickets["147"].group == "5002"
        with pytest.raises(GoneDeliveryError, match="not_found"):
            deliver(r.adapter, r.write("d-3", "hardware-support", "P2", ticket_id="148"))


@pytest.mark.parametrize(("case", "probe"), [(CHATWOOT, "/api/v1/accounts/1/teams"), (ZAMMAD, "/api/v1/users/me"),
                                             (FRESHDESK, "/api/v2/agents/me")], ids=str)
def test_where_the_body_cannot_tell_a_probe_decides_and_its_answer_is_kept(case: Case, probe: str,
                                                                         tmp_path: Path) -> None:
    with rig(case, tmp_path) as r:
        for n in range(3):
            with pytest.raises(GoneDeliveryError):
                deliver(r.adapter, r.write(f"d-{n}", "hardware-escalation", "P1", ticket_id=f"99{n}"))
        assert len(r.fake.calls("GET", f"^{probe}$")) == 1  # cached...
        r.clock.now += r.adapter.settings.probe_cache_seconds  # type: ignore[attr-defined]
        with pytest.raises(GoneDeliveryError):
            deliver(r.adapter, r.write("d-9", "hardware-escalation", "P1", ticket_id="999"))
        assert len(r.fake.calls("GET", f"^{probe}$")) == 2  # ...for writeback.probe_cache_seconds


def test_chatwoot_an_account_that_does_not_exist_fails_naming_the_account_setting(tmp_path: Path) -> None:
    with rig(CHATWOOT, tmp_path, env={"TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID": "7"}) as r:
        r.ticket()
        write = r.write("d-1", "hardware-escalation", "P1")
        write = type(write)(**{**write.__dict__, "ref": type(write.ref)("chatwoot", "12", None)})
        with pytest.raises(FailedDeliveryError, match=r"check TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID \(account 7"):
            deliver(r.adapter, write)


def test_a_probe_that_meets_an_outage_caches_nothing_and_retries(tmp_path: Path) -> None:
    with rig(FRESHDESK, tmp_path) as r:
        r.fake.answer_next(503, method="GET", path="/agents/me$", message="maintenance")
        with pytest.raises(TransientDeliveryError, match="probe: 503"):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        with pytest.raises(GoneDeliveryError):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))


# ---- Zendesk: 409, 422 ------------------------------------------------------------------------------------

def test_zendesk_database_conflict_is_transient_and_keeps_its_retry_after(tmp_path: Path) -> None:
    with rig(ZENDESK, tmp_path) as r:
        r.ticket()
        r.fake.answer_next(409, method="PUT", message="Database collision", headers={"Retry-After": "3"})
        with pytest.raises(TransientDeliveryError, match="409 DatabaseConflict: Database collision") as caught:
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert caught.value.wait == 3.0
        r.fake.answer_next(409, method="PUT", body={"error": "RecordNotUnique", "description": "Duplicate"})
        with pytest.raises(FailedDeliveryError) as other:  # any other 409 is a refusal
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert type(other.value) is FailedDeliveryError


def _assigned(r: Rig) -> None:
    r.fake.members = {360001: {11}, 360002: {7, 11}}
    r.fake.agents = {7: "Ada Lovelace", 11: "Grace Hopper"}
    r.ticket(group=360002, assignee=7)


def test_zendesk_group_change_on_an_assigned_ticket_unassigns_and_the_note_names_the_agent(tmp_path: Path) -> None:
    with rig(ZENDESK, tmp_path) as r:
        _assigned(r)
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        ticket = r.fake.tickets["35436"]
        assert (ticket.group, ticket.priority, ticket.assignee) == (360001, "urgent", None)
        first, read, again = [(c.method, c.body) for c in r.fake.calls(path=r"/35436$")][:3]
        assert first == ("PUT", {"ticket": {"group_id": 360001, "priority": "urgent"}})
        assert read == ("GET", None) and r.fake.calls("GET", r"/35436$")[0].query == {"include": ["users"]}
        assert again == ("PUT", {"ticket": {"group_id": 360001, "priority": "urgent", "assignee_id": None}})
        [note] = ticket.notes
        assert "triage unassigned Ada Lovelace (agent 7): not a member of group 360001" in note.body
        deliver(r.adapter, r.write("d-2", "hardware-support", "P2", previous=("hardware-escalation", "P1")))
        assert "unassigned" not in ticket.notes[-1].body  # nobody assigned now: nothing to say


def test_zendesk_an_assignee_in_the_new_group_stays(tmp_path: Path) -> None:
    with rig(ZENDESK, tmp_path) as r:
        _assigned(r)
        r.fake.tickets["35436"].assignee = 11
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert r.fake.tickets["35436"].assignee == 11 and len(r.fake.calls("PUT", r"/35436$")) == 2  # ticket, note


def test_zendesk_with_clear_assignee_off_the_delivery_fails_naming_the_conflict(tmp_path: Path) -> None:
    toml = ZENDESK.toml + "[writeback.zendesk]\nclear_assignee_on_group_change = false\n"
    with rig(ZENDESK, tmp_path, toml=toml) as r:
        _assigned(r)
        with pytest.raises(FailedDeliveryError, match=r"Assignee: is not a member of the group .*"
                                                      r"clear_assignee_on_group_change is false") as caught:
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert caught.value.status == 422 and r.fake.tickets["35436"].assignee == 7
        assert r.fake.tickets["35436"].group == 360002


def test_zendesk_a_closed_ticket_is_skipped_at_any_step(tmp_path: Path) -> None:
    with rig(ZENDESK, tmp_path) as r:
        r.ticket(closed=True)
        for route, step in (("hardware-escalation", "ticket"), ("general-inquiries", "tags")):
            with pytest.raises(SkippedDeliveryError, match="ticket closed") as caught:
                deliver(r.adapter, r.write("d-1", route, "P1"))
            assert (caught.value.step, caught.value.status) == (step, 422)


# ---- Chatwoot: the token ------------------------------------------------------------------------------

def test_chatwoot_an_agent_bot_token_fails_before_anything_is_written(tmp_path: Path) -> None:
    fake = FakeChatwoot(token="cw-user-token-0", account_id=1, teams={5, 6}, bot_token="cw-secret-token-1")
    with rig(CHATWOOT, tmp_path, fake=fake) as r:
        r.ticket()
        for _ in range(2):
            with pytest.raises(FailedDeliveryError, match=BOT_TOKEN) as caught:
                deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert caught.value.step == "team"
        assert [(c.method, c.path) for c in r.fake.calls()] == [("GET", "/api/v1/profile")]  # checked once
        assert r.fake.tickets["12"].group is None and r.tags == sorted(AGENT_TAGS)


def test_chatwoot_a_user_token_is_checked_once(tmp_path: Path) -> None:
    with rig(CHATWOOT, tmp_path) as r:
        r.ticket()
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        deliver(r.adapter, r.write("d-2", "hardware-support", "P2", previous=("hardware-escalation", "P1")))
        assert len(r.fake.calls("GET", "/profile$")) == 1


# ---- Freshdesk, Zammad: every page of the conversation -------------------------------------------------

def _long_ticket(r: Rig, notes: int, delivery_id: str) -> None:
    from tests.fakehelpdesks import Note

    ticket = r.ticket()
    ticket.notes += [Note(f"reply {n}", private=False) for n in range(notes)]
    ticket.notes.insert(notes // 2 + 5, Note(f"<p>triage delivery {delivery_id}</p>", private=True))


def test_freshdesk_reads_every_page_of_the_conversation_before_posting(tmp_path: Path) -> None:
    with rig(FRESHDESK, tmp_path) as r:
        _long_ticket(r, 240, "d-1")  # the marker on page 2 of 100
        write = r.write("d-1", "hardware-escalation", "P1")
        assert deliver(r.adapter, write, done=["ticket"], resumed=True) == ("note",)
        pages = [c.query for c in r.fake.calls("GET", "/conversations$")]
        assert pages == [{"page": [str(n)], "per_page": ["100"]} for n in (1, 2, 3)]
        assert len(r.fake.tickets["5123"].notes) == 241  # nothing posted: the note was there


@pytest.mark.parametrize("pages_articles", [False, True], ids=["by_ticket-whole", "by_ticket-paged"])
def test_zammad_reads_every_page_of_the_articles_before_posting(pages_articles: bool, tmp_path: Path) -> None:
    with rig(ZAMMAD, tmp_path) as r:
        r.fake.pages_articles = pages_articles
        _long_ticket(r, 240, "d-1")
        write = r.write("d-1", "hardware-escalation", "P1")
        assert deliver(r.adapter, write, done=["ticket", "tags"], resumed=True) == ("note",)
        reads = len(r.fake.calls("GET", "/by_ticket/"))
        assert reads == (3 if pages_articles else 2)  # paged: 100, 100, 41 (short); whole: page 2 adds nothing
        assert len(r.fake.tickets["5"].notes) == 241
        deliver(r.adapter, r.write("d-2", "hardware-support", "P2"), done=["ticket", "tags"], resumed=True)
        assert len(r.fake.tickets["5"].notes) == 242  # d-2 was not there: posted
