"""Write-back, the same behaviour on all five platforms, each against its loopback server: a
routed ticket, a re-route and a correction (only triage's old tags go), idempotency (a delivery
applied twice leaves the same state and one note, even when the note's answer was lost), and
every error class (404 gone; 401/403/409/422 failed with the platform's words, never our token;
429 with its wait, 5xx and hangs retried)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.writeback_cases import AGENT_TAGS, CASES, HANG, TRIAGE_URL, Case, Rig, make_write, rig, settings_for
from triage.delivery import (
    DeliveryError,
    FailedDeliveryError,
    GoneDeliveryError,
    RetryableDeliveryError,
    TransientDeliveryError,
    build_adapter,
    build_adapters,
    deliver,
)

ESCALATION_TAGS = ["triage-hw", "triage_hardware-escalation", "triage_p1"]


@pytest.fixture(params=CASES, ids=str)
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    with rig(request.param, tmp_path) as r:
        yield r


def _writes(r: Rig) -> list[str]:
    return [f"{c.method} {c.path}" for c in r.fake.calls() if c.method != "GET"]


# ---- what a delivery leaves on the ticket ------------------------------------------------------

def test_routed_ticket_gets_group_priority_tags_and_one_private_note(platform: Rig) -> None:
    platform.ticket()
    write = platform.write("d-1", "hardware-escalation", "P1")
    done: list[str] = []
    ran = deliver(platform.adapter, write, record=lambda step, remarks: done.append(step))
    assert ran == tuple(done) == platform.adapter.steps(write) and ran[-1] == "note"
    assert platform.state == platform.case.escalation_p1
    assert platform.tags == sorted(AGENT_TAGS + ESCALATION_TAGS)
    [note] = platform.fake.tickets[platform.case.ticket_id].notes
    assert note.private
    for line in ("hardware-escalation (P1)", "problem_type: device_fault", "device_model: Watch S1",
                 "user_requirements: replacement", f"{TRIAGE_URL}/tickets/42", "triage delivery d-1"):
        assert line in note.body


def test_reroute_removes_only_triage_old_tags(platform: Rig) -> None:
    platform.ticket()
    deliver(platform.adapter, platform.write("d-1", "hardware-escalation", "P1"))
    platform.fake.tickets[platform.case.ticket_id].tags.append("escalated-by-agent")
    deliver(platform.adapter, platform.write("d-2", "hardware-support", "P2", previous=("hardware-escalation", "P1")))
    assert platform.state == platform.case.support_p2
    assert platform.tags == sorted([*AGENT_TAGS, "escalated-by-agent", "triage_hardware-support", "triage_p2"])
    assert len(platform.fake.tickets[platform.case.ticket_id].notes) == 2


def test_correction_of_the_priority_swaps_only_the_priority_tag(platform: Rig) -> None:
    platform.ticket()
    deliver(platform.adapter, platform.write("d-1", "hardware-support", "P3"))
    assert platform.state == platform.case.support_p3
    deliver(platform.adapter, platform.write("d-2", "hardware-support", "P2", previous=("hardware-support", "P3")))
    assert platform.state == platform.case.support_p2
    assert platform.tags == sorted([*AGENT_TAGS, "triage_hardware-support", "triage_p2"])


def test_a_resolve_adds_its_tag_moves_nothing_and_the_write_after_a_reopen_removes_it(platform: Rig) -> None:
    platform.ticket()
    deliver(platform.adapter, platform.write("d-1", "hardware-escalation", "P1"))
    routed = platform.state
    resolve = replace(platform.write("d-2", "hardware-escalation", "P1", previous=("hardware-escalation", "P1")),
                      resolved=True)
    platform.fake.tickets[platform.case.ticket_id].group = 777  # an agent moved it meanwhile
    before = len(platform.fake.calls())
    deliver(platform.adapter, resolve)
    assert platform.state == (777, routed[1])
    assert platform.tags == sorted([*AGENT_TAGS, *ESCALATION_TAGS, "triage_resolved"])
    sent = [call.path + json.dumps(call.body) for call in platform.fake.calls()[before:] if call.method != "GET"]
    assert sent and not [text for text in sent for word in ("group", "team", "priority", "assignments", "/parts")
                         if word in text]
    notes = platform.fake.tickets[platform.case.ticket_id].notes
    assert len(notes) == 2 and "this ticket was resolved (hardware-escalation, P1)" in notes[-1].body

    reopened = replace(platform.write("d-3", "hardware-support", "P2", previous=("hardware-escalation", "P1")),
                       previous_resolved=True)
    deliver(platform.adapter, reopened)
    assert platform.state == platform.case.support_p2
    assert platform.tags == sorted([*AGENT_TAGS, "triage_hardware-support", "triage_p2"])


def test_a_delivery_applied_twice_leaves_the_same_state_and_one_note(platform: Rig) -> None:
    platform.ticket()
    write = platform.write("d-1", "hardware-escalation", "P1")
    deliver(platform.adapter, write)
    first = (platform.state, platform.tags)
    deliver(platform.adapter, write, resumed=True)  # as if the outbox had lost which steps were done
    assert (platform.state, platform.tags) == first
    assert len(platform.fake.tickets[platform.case.ticket_id].notes) == 1


def test_recorded_steps_are_not_run_again(platform: Rig) -> None:
    platform.ticket()
    write = platform.write("d-1", "hardware-escalation", "P1")
    done: list[str] = []
    deliver(platform.adapter, write, record=lambda step, remarks: done.append(step))
    calls = len(platform.fake.requests)
    assert deliver(platform.adapter, write, done=done, resumed=True) == ()
    assert len(platform.fake.requests) == calls


def test_a_retry_after_a_failed_note_runs_only_the_note(platform: Rig) -> None:
    platform.ticket()
    method, path, after = platform.case.note_call
    platform.fake.answer_next(503, method=method, path=path, after=after, message="maintenance")
    write = platform.write("d-1", "hardware-escalation", "P1")
    done: list[str] = []
    with pytest.raises(RetryableDeliveryError) as caught:
        deliver(platform.adapter, write, record=lambda step, remarks: done.append(step))
    assert (caught.value.step, caught.value.status, caught.value.wait) == ("note", 503, None)
    assert done == [step for step in platform.adapter.steps(write) if step != "note"]
    writes_before = _writes(platform)
    assert deliver(platform.adapter, write, done=done, resumed=True) == ("note",)
    assert len(_writes(platform)) == len(writes_before) + 1  # the note, nothing else again
    assert len(platform.fake.tickets[platform.case.ticket_id].notes) == 1


def test_a_note_whose_answer_was_lost_is_not_posted_again(platform: Rig) -> None:
    platform.ticket()
    method, path, after = platform.case.note_call
    platform.fake.answer_late(HANG, method=method, path=path, after=after)  # posted, answered too late
    write = platform.write("d-1", "hardware-escalation", "P1")
    done: list[str] = []
    with pytest.raises(RetryableDeliveryError, match="no answer within"):
        deliver(platform.adapter, write, record=lambda step, remarks: done.append(step))
    assert len(platform.fake.tickets[platform.case.ticket_id].notes) == 1
    assert deliver(platform.adapter, write, done=done, resumed=True) == ("note",)
    assert len(platform.fake.tickets[platform.case.ticket_id].notes) == 1


def test_without_notes_there_is_no_note_step(tmp_path: Path) -> None:
    for case in CASES:
        with rig(case, tmp_path, note=False) as r:
            r.ticket()
            write = r.write("d-1", "hardware-escalation", "P1")
            assert "note" not in r.adapter.steps(write)
            deliver(r.adapter, write)
            assert r.fake.tickets[case.ticket_id].notes == [] and r.tags == sorted(AGENT_TAGS + ESCALATION_TAGS)


# ---- errors ----------------------------------------------------------------------------------

#: The request that tells a missing ticket from a misconfiguration where the 404's body cannot.
PROBES = {"chatwoot": "/api/v1/accounts/1/teams", "zammad": "/api/v1/users/me", "freshdesk": "/api/v2/agents/me",
          "intercom": "/me"}


def test_a_deleted_ticket_ends_the_delivery(platform: Rig) -> None:
    with pytest.raises(GoneDeliveryError) as caught:
        deliver(platform.adapter, platform.write("d-1", "hardware-escalation", "P1"))
    assert caught.value.status == 404
    probe = PROBES.get(platform.case.platform)
    assert [call.path for call in platform.fake.calls("GET", "^(/me|.*/teams|.*/users/me|.*/agents/me)$")] == (
        [probe] if probe else [])


@pytest.mark.parametrize("case", CASES, ids=str)
def test_wrong_credentials_fail_at_once_without_echoing_any_token(case: Case, tmp_path: Path) -> None:
    with case.fake() as fake:
        settings = settings_for(case, fake.base_url, tmp_path, env={case.token_variable: "wrong-token-123"})
        adapter = build_adapter(case.platform, settings.writeback)
        fake.ticket(case.ticket_id)
        write = make_write(case, "d-1", "hardware-escalation", "P1")
        with pytest.raises(FailedDeliveryError) as caught:
            deliver(adapter, write)
        adapter.close()
    assert caught.value.status == 401
    assert "wrong-token-123" not in str(caught.value) and "secret" not in str(caught.value)


@pytest.mark.parametrize("status", [403, 422])
def test_refusals_fail_at_once_with_the_platform_message(platform: Rig, status: int) -> None:
    platform.ticket()
    platform.fake.answer_next(status, message="Ticket is locked by an automation rule")
    with pytest.raises(FailedDeliveryError) as caught:
        deliver(platform.adapter, platform.write("d-1", "hardware-escalation", "P1"))
    assert caught.value.status == status and "Ticket is locked by an automation rule" in str(caught.value)


def test_a_409_fails_at_once_except_zendesks_database_conflict(platform: Rig) -> None:
    platform.ticket()
    platform.fake.answer_next(409, message="Database collision")  # each platform's own 409 body
    expected = TransientDeliveryError if platform.case.platform == "zendesk" else FailedDeliveryError
    with pytest.raises(DeliveryError) as caught:
        deliver(platform.adapter, platform.write("d-1", "hardware-escalation", "P1"))
    assert type(caught.value) is expected and caught.value.status == 409


def test_a_platform_echoing_our_token_has_it_scrubbed(platform: Rig) -> None:
    platform.ticket()
    token = platform.case.env("")[platform.case.token_variable]
    platform.fake.answer_next(422, message=f"token {token} may not do this")
    with pytest.raises(FailedDeliveryError) as caught:
        deliver(platform.adapter, platform.write("d-1", "hardware-escalation", "P1"))
    assert token not in str(caught.value) and "<redacted> may not do this" in str(caught.value)


def test_rate_limit_waits_for_retry_after(platform: Rig) -> None:
    platform.ticket()
    platform.fake.answer_next(429, headers={"Retry-After": "7"}, message="Rate limit exceeded")
    with pytest.raises(RetryableDeliveryError) as caught:
        deliver(platform.adapter, platform.write("d-1", "hardware-escalation", "P1"))
    assert (caught.value.status, caught.value.wait) == (429, 7.0)


def test_a_retry_after_beyond_the_cap_is_clamped(platform: Rig) -> None:
    platform.ticket()
    platform.fake.answer_next(429, headers={"Retry-After": "86400"})
    with pytest.raises(RetryableDeliveryError) as caught:
        deliver(platform.adapter, platform.write("d-1", "hardware-escalation", "P1"))
    assert caught.value.wait == 900.0


def test_server_errors_and_hangs_are_retried_with_backoff(platform: Rig) -> None:
    platform.ticket()
    write = platform.write("d-1", "hardware-escalation", "P1")
    platform.fake.answer_next(500, message="Internal Server Error")
    with pytest.raises(RetryableDeliveryError) as caught:
        deliver(platform.adapter, write)
    assert (caught.value.status, caught.value.wait) == (500, None)
    platform.fake.answer_next(200, late=HANG)
    with pytest.raises(RetryableDeliveryError, match=r"no answer within 0\.3 s") as hung:
        deliver(platform.adapter, write)
    assert hung.value.status is None


def test_an_unreachable_platform_is_retried(tmp_path: Path) -> None:
    for case in CASES:
        with case.fake() as fake:
            url = fake.base_url
        settings = settings_for(case, url, tmp_path)  # the fake is closed: nothing listens there any more
        adapter = build_adapter(case.platform, settings.writeback)
        with pytest.raises(RetryableDeliveryError, match="could not reach it"):
            deliver(adapter, make_write(case, "d-1", "hardware-escalation", "P1"))
        adapter.close()


# ---- outbound URLs come from configuration only -------------------------------------------------

@pytest.mark.parametrize("ticket_id", ["1/../../admin", "12?x=1", "", "a" * 65, "%2e%2e", "12\n", "12 "])
def test_a_platform_id_unfit_for_a_url_path_is_refused_before_any_request(platform: Rig, ticket_id: str) -> None:
    with pytest.raises(FailedDeliveryError, match="is not a"):
        deliver(platform.adapter, platform.write("d-1", "hardware-escalation", "P1", ticket_id=ticket_id))
    assert platform.fake.requests == []


def test_a_conversation_from_another_platform_is_refused(platform: Rig) -> None:
    other = "zammad" if platform.case.platform != "zammad" else "zendesk"
    with pytest.raises(FailedDeliveryError, match=f"came from {other}"):
        deliver(platform.adapter, platform.write("d-1", "hardware-escalation", "P1", platform=other))
    assert platform.fake.requests == []


def test_adapters_are_built_for_the_platforms_that_are_on(tmp_path: Path) -> None:
    settings = settings_for(CASES[0], "https://acme.zendesk.com", tmp_path)
    assert sorted(build_adapters(settings.writeback)) == ["zendesk"]
    with pytest.raises(ValueError, match="write-back to freshdesk is off"):
        build_adapter("freshdesk", settings.writeback)
