"""Write-back, what each platform does its own way: the exact REST calls and bodies, the auth
headers, and each platform's gotchas (Zendesk's replacing tag calls, Intercom's tag ids and
reset header, Chatwoot's replacing labels and silent team clearing, Zammad's lookups,
Freshdesk's 400s and whole-list tags)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.writeback_cases import AGENT_TAGS, CHATWOOT, FRESHDESK, INTERCOM, ZAMMAD, ZENDESK, Case, rig
from triage.delivery import (
    FailedDeliveryError,
    GoneDeliveryError,
    RetryableDeliveryError,
    SkippedDeliveryError,
    deliver,
)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---- Zendesk -----------------------------------------------------------------------------------

def test_zendesk_calls_api_token_auth_and_never_sends_tags_on_the_ticket(tmp_path: Path) -> None:
    with rig(ZENDESK, tmp_path) as r:
        r.ticket()
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        calls = r.fake.calls()
        assert [(c.method, c.path) for c in calls] == [
            ("PUT", "/api/v2/tickets/35436"), ("PUT", "/api/v2/tickets/35436/tags"), ("PUT", "/api/v2/tickets/35436")]
        assert {c.headers["Authorization"] for c in calls} == {_basic("bot@acme.test/token", "zd-secret-token-1")}
        assert calls[0].body == {"ticket": {"group_id": 360001, "priority": "urgent"}}
        assert calls[1].body == {"tags": ["triage_hardware-escalation", "triage_p1", "triage-hw"]}
        assert calls[2].body["ticket"]["comment"]["public"] is False and set(calls[2].body["ticket"]) == {"comment"}
        assert not any("tags" in (c.body or {}).get("ticket", {}) for c in calls)


def test_zendesk_reroute_deletes_only_the_old_triage_tags(tmp_path: Path) -> None:
    with rig(ZENDESK, tmp_path, note=False) as r:
        r.ticket()
        deliver(r.adapter, r.write("d-2", "hardware-support", "P2", previous=("hardware-escalation", "P1")))
        delete, add = r.fake.calls(path="/tags$")
        assert (delete.method, delete.body) == ("DELETE", {"tags": ["triage_hardware-escalation", "triage-hw",
                                                                    "triage_p1"]})
        assert (add.method, add.body) == ("PUT", {"tags": ["triage_hardware-support", "triage_p2"]})
        assert r.fake.calls(method="POST") == []  # POST .../tags would replace the agents' tags


def test_zendesk_retry_reads_the_newest_comments_first(tmp_path: Path) -> None:
    with rig(ZENDESK, tmp_path) as r:
        r.ticket()
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"), resumed=True)
        [read] = r.fake.calls(method="GET")
        assert (read.path, read.query) == ("/api/v2/tickets/35436/comments", {"sort_order": ["desc"]})


def test_zendesk_closed_ticket_is_skipped_with_zendesk_words(tmp_path: Path) -> None:
    with rig(ZENDESK, tmp_path) as r:
        r.ticket(closed=True)
        with pytest.raises(SkippedDeliveryError, match=r"ticket closed: .*closed prevents ticket update") as caught:
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert (caught.value.step, caught.value.status) == ("ticket", 422)
        r.fake.tickets["35436"].closed = False
        done: list[str] = []
        deliver(r.adapter, r.write("d-2", "general-inquiries", "P4"), record=lambda step, remarks: done.append(step))
        r.fake.tickets["35436"].closed = True  # closed between two steps: the tags endpoints refuse it alike
        with pytest.raises(SkippedDeliveryError) as tags:
            deliver(r.adapter, r.write("d-3", "general-inquiries", "P4"))
        assert (tags.value.step, tags.value.status) == ("tags", 422)


def test_zendesk_route_without_group_or_priority_has_no_ticket_step(tmp_path: Path) -> None:
    with rig(ZENDESK, tmp_path, note=False) as r:
        assert r.adapter.steps(r.write("d-1", "general-inquiries", "P4")) == ("tags",)


# ---- Intercom ----------------------------------------------------------------------------------

def test_intercom_tags_by_id_assigns_the_team_and_sends_version_and_bearer(tmp_path: Path) -> None:
    with rig(INTERCOM, tmp_path) as r:
        r.ticket()
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        calls = r.fake.calls()
        assert {(c.headers["Authorization"], c.headers["Intercom-Version"]) for c in calls} == {
            ("Bearer ic-secret-token-1", "2.14")}
        [assign] = r.fake.calls(path="/parts$")
        assert assign.body == {"message_type": "assignment", "type": "team", "admin_id": "991", "assignee_id": "5001"}
        created = [c.body["name"] for c in r.fake.calls(method="POST", path="^/tags$")]
        assert created == ["triage_hardware-escalation", "triage_p1", "triage-hw"]
        attached = [c.body for c in r.fake.calls(method="POST", path="/conversations/147/tags$")]
        assert all(body["admin_id"] == "991" and body["id"] in r.fake.tag_ids for body in attached)
        [update] = r.fake.calls(method="PUT")
        assert update.body == {"custom_attributes": {"triage_priority": "urgent"}}
        [note] = r.fake.calls(path="/reply$")
        assert note.body["message_type"] == "note" and note.body["body"].startswith("<p>")


def test_intercom_tag_ids_are_looked_up_once_per_name(tmp_path: Path) -> None:
    with rig(INTERCOM, tmp_path, note=False) as r:
        r.ticket()
        r.fake.ticket("148", tags=["vip"])
        deliver(r.adapter, r.write("d-1", "hardware-support", "P3"))
        deliver(r.adapter, r.write("d-2", "hardware-support", "P3", ticket_id="148"))
        deliver(r.adapter, r.write("d-3", "hardware-support", "P2", previous=("hardware-support", "P3")))
        names = [c.body["name"] for c in r.fake.calls(method="POST", path="^/tags$")]
        assert names == ["triage_hardware-support", "triage_p3", "triage_p2"]
        assert sorted(r.fake.tickets["148"].tags) == ["triage_hardware-support", "triage_p3", "vip"]
        [detach] = r.fake.calls(method="DELETE")
        assert r.fake.tag_ids[detach.path.rsplit("/", 1)[1]] == "triage_p3" and detach.body == {"admin_id": "991"}


def test_intercom_a_tag_deleted_in_the_workspace_is_looked_up_again(tmp_path: Path) -> None:
    with rig(INTERCOM, tmp_path, note=False) as r:
        r.ticket()
        r.fake.ticket("148")
        deliver(r.adapter, r.write("d-1", "hardware-support", "P3"))
        old_id = next(i for i, name in r.fake.tag_ids.items() if name == "triage_p3")
        del r.fake.tag_ids[old_id]
        r.fake.tickets["147"].tags.remove("triage_p3")
        deliver(r.adapter, r.write("d-2", "hardware-support", "P3", ticket_id="148"))
        assert "triage_p3" in r.fake.tickets["148"].tags and old_id not in r.fake.tag_ids


def test_intercom_rate_limit_waits_until_the_reset_header(tmp_path: Path) -> None:
    with rig(INTERCOM, tmp_path) as r:
        r.ticket()
        reset = str(int(r.clock.now) + 12)
        r.fake.answer_next(429, headers={"X-RateLimit-Limit": "10000", "X-RateLimit-Remaining": "0",
                                         "X-RateLimit-Reset": reset})
        with pytest.raises(RetryableDeliveryError) as caught:
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert (caught.value.status, caught.value.wait) == (429, 12.0)
        r.fake.answer_next(429)
        with pytest.raises(RetryableDeliveryError) as bare:
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert bare.value.wait == 10.0  # writeback.intercom.rate_limited_wait_seconds


def test_intercom_a_tag_someone_else_detached_first_is_fine_but_a_gone_conversation_is_not(tmp_path: Path) -> None:
    with rig(INTERCOM, tmp_path, note=False) as r:
        r.ticket(tags=[*AGENT_TAGS, "triage_p1"])
        r.fake.answer_next(404, method="DELETE", body={"type": "error.list", "errors": [
            {"code": "tag_not_found", "message": "Tag not found"}]})
        deliver(r.adapter, r.write("d-1", "hardware-support", "P2", previous=("hardware-support", "P1")))
        assert "triage_p2" in r.tags
        r.fake.tickets["147"].tags.append("triage_p2")
        # the conversation is deleted between the tags step's read and its DELETE: both answer not_found
        r.fake.answer_next(404, method="DELETE", message="Resource Not Found")
        r.fake.answer_next(404, method="GET", path="^/conversations/147$", after=1, message="Resource Not Found")
        with pytest.raises(GoneDeliveryError, match="not_found: Resource Not Found"):
            deliver(r.adapter, r.write("d-2", "hardware-support", "P3", previous=("hardware-support", "P2")))


def test_intercom_version_is_a_setting_and_a_mismatch_fails_with_intercoms_code(tmp_path: Path) -> None:
    toml = INTERCOM.toml.replace("[writeback.intercom]", '[writeback.intercom]\nversion = "2.16"')
    with rig(INTERCOM, tmp_path, toml=toml) as r:
        r.ticket()
        with pytest.raises(FailedDeliveryError, match="intercom_version_invalid"):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert r.fake.calls()[0].headers["Intercom-Version"] == "2.16"


@pytest.mark.parametrize(("via", "version", "body"), [
    ("priority_field", "Preview", {"priority": "urgent", "admin_id": "991"}), ("none", "2.14", None)])
def test_intercom_priority_is_written_as_configured(tmp_path: Path, via: str, version: str,
                                                    body: dict[str, str] | None) -> None:
    toml = INTERCOM.toml.replace('"custom_attribute"', f'"{via}"\nversion = "{version}"')
    with rig(INTERCOM, tmp_path, toml=toml, note=False) as r:
        r.fake.version = version
        r.ticket()
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert [c.body for c in r.fake.calls(method="PUT")] == ([body] if body else [])
        assert "triage_p1" in r.tags


# ---- Chatwoot ----------------------------------------------------------------------------------

def test_chatwoot_merges_labels_because_post_replaces_them(tmp_path: Path) -> None:
    with rig(CHATWOOT, tmp_path) as r:
        r.ticket(tags=["vip", "triage_hardware-support", "triage_p2"])
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1", previous=("hardware-support", "P2")))
        base = "/api/v1/accounts/1/conversations/12/"
        assert [(c.method, c.path.removeprefix(base)) for c in r.fake.calls()] == [
            ("GET", "/api/v1/profile"), ("POST", "assignments"), ("POST", "toggle_priority"), ("GET", "labels"),
            ("POST", "labels"), ("POST", "messages")]
        assert {c.headers["api_access_token"] for c in r.fake.calls()} == {"cw-secret-token-1"}
        [labels] = r.fake.calls(method="POST", path="labels$")
        assert labels.body == {"labels": ["vip", "triage_hardware-escalation", "triage_p1", "triage-hw"]}
        [note] = r.fake.calls(path="messages$")
        assert (note.body["message_type"], note.body["private"]) == ("outgoing", True)


@pytest.mark.parametrize(("case", "read", "write"), [
    (CHATWOOT, ("GET", "labels$"), ("POST", "labels$")), (FRESHDESK, ("GET", "5123$"), ("PUT", "5123$"))], ids=str)
def test_a_read_without_the_tag_list_writes_no_list(tmp_path: Path, case: Case, read: tuple[str, str],
                                                    write: tuple[str, str]) -> None:
    with rig(case, tmp_path) as r:
        r.ticket()
        r.fake.answer_next(200, method=read[0], path=read[1], body={"id": 12})
        with pytest.raises(RetryableDeliveryError, match="answered without the"):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
        assert r.tags == sorted(AGENT_TAGS) and r.fake.calls(method=write[0], path=write[1]) == []


def test_chatwoot_labels_already_right_are_not_posted_again(tmp_path: Path) -> None:
    with rig(CHATWOOT, tmp_path, note=False) as r:
        r.ticket()
        write = r.write("d-1", "hardware-escalation", "P1")
        deliver(r.adapter, write)
        deliver(r.adapter, write, resumed=True)
        assert len(r.fake.calls(method="POST", path="labels$")) == 1


def test_chatwoot_undefined_labels_fail_naming_them(tmp_path: Path) -> None:
    with rig(CHATWOOT, tmp_path) as r:
        r.fake.labels = {"vip", "billing", "triage_manual", "triage_hardware-escalation", "triage_p1"}
        r.ticket()
        with pytest.raises(FailedDeliveryError, match=r"labels not defined in account 1: triage-hw \(create them"):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))


def test_chatwoot_unknown_team_fails_instead_of_silently_clearing(tmp_path: Path) -> None:
    with rig(CHATWOOT, tmp_path) as r:
        r.fake.teams = {6}
        r.ticket(group=6)
        with pytest.raises(FailedDeliveryError, match="team 5 is not a team of account 1"):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))


def test_chatwoot_conversation_of_another_account_is_never_written(tmp_path: Path) -> None:
    with rig(CHATWOOT, tmp_path) as r:
        write = r.write("d-1", "hardware-escalation", "P1")
        write = type(write)(**{**write.__dict__, "ref": type(write.ref)("chatwoot", "12", "2")})
        with pytest.raises(FailedDeliveryError, match="in account '2', write-back is configured for account 1"):
            deliver(r.adapter, write)
        assert r.fake.requests == []


# ---- Zammad ------------------------------------------------------------------------------------

def test_zammad_token_auth_group_by_id_or_name_and_per_tag_calls(tmp_path: Path) -> None:
    with rig(ZAMMAD, tmp_path) as r:
        r.ticket(tags=[*AGENT_TAGS, "triage_hardware-escalation", "triage_p1", "triage-hw"])
        deliver(r.adapter, r.write("d-2", "hardware-support", "P2", previous=("hardware-escalation", "P1")))
        assert {c.headers["Authorization"] for c in r.fake.calls()} == {"Token token=zm-secret-token-1"}
        [update] = r.fake.calls(method="PUT")
        assert update.body == {"group": "Users", "priority_id": 2}
        removed = sorted(c.body["item"] for c in r.fake.calls(method="DELETE"))
        added = sorted(c.body["item"] for c in r.fake.calls(method="POST", path="/tags/add$"))
        assert removed == ["triage-hw", "triage_hardware-escalation", "triage_p1"]
        assert added == ["triage_hardware-support", "triage_p2"]
        assert {c.body["o_id"] for c in r.fake.calls(path="/tags/")} == {5}
        [note] = r.fake.calls(path="/ticket_articles$")
        assert (note.body["type"], note.body["internal"], note.body["ticket_id"]) == ("note", True, 5)


def test_zammad_unknown_priority_fails_with_zammads_lookup_error(tmp_path: Path) -> None:
    toml = ZAMMAD.toml.replace("priority_id = 3", "priority_id = 9")
    with rig(ZAMMAD, tmp_path, toml=toml) as r:
        r.ticket()
        with pytest.raises(FailedDeliveryError, match="No lookup value found for 'priority_id'"):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))


# ---- Freshdesk ---------------------------------------------------------------------------------

def test_freshdesk_one_update_with_merged_tags_and_api_key_auth(tmp_path: Path) -> None:
    with rig(FRESHDESK, tmp_path) as r:
        r.ticket(tags=["vip", "triage_hardware-support"])
        deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1", previous=("hardware-support", "P2")))
        assert [(c.method, c.path) for c in r.fake.calls()] == [
            ("GET", "/api/v2/tickets/5123"), ("PUT", "/api/v2/tickets/5123"), ("POST", "/api/v2/tickets/5123/notes")]
        assert {c.headers["Authorization"] for c in r.fake.calls()} == {_basic("fd-secret-key-1", "X")}
        assert r.fake.calls(method="PUT")[0].body == {
            "group_id": 9001, "priority": 4, "tags": ["vip", "triage_hardware-escalation", "triage_p1", "triage-hw"]}
        [note] = r.fake.calls(method="POST")
        assert note.body["private"] is True and note.body["body"].startswith("<p>")


def test_freshdesk_nothing_to_change_means_no_update(tmp_path: Path) -> None:
    with rig(FRESHDESK, tmp_path, note=False) as r:
        r.ticket(tags=["triage_general-inquiries", "triage_p4"])
        deliver(r.adapter, r.write("d-1", "general-inquiries", "P4"))
        assert r.fake.calls(method="PUT") == []


def test_freshdesk_validation_400_fails_with_the_field_and_message(tmp_path: Path) -> None:
    with rig(FRESHDESK, tmp_path) as r:
        r.ticket()
        r.fake.answer_next(400, method="PUT", body={"description": "Validation failed", "errors": [
            {"field": "group_id", "message": "There is no group matching the given group_id",
             "code": "invalid_value"}]})
        with pytest.raises(FailedDeliveryError, match="group_id: invalid_value: There is no group matching"):
            deliver(r.adapter, r.write("d-1", "hardware-escalation", "P1"))
