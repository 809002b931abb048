"""A suggestion confirmed in a real browser: Debian's Chromium driven by Playwright against a running
`triage serve` and worker (SQLite, the embedded broker, the loopback OpenAI server as MiMo, the
loopback Zendesk as the helpdesk).

The route hardware-support is set to ``suggest``: Zendesk's sample webhook comes in, the worker
routes it there and Zendesk gets only the internal note. Alice finds it under "Needs confirmation",
opens it and clicks Confirm; the worker then writes group, priority and tags. Run with
`make browser` (marker ``browser``); without /usr/bin/chromium it skips as the desk's browser test does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from benchmarks.stack import free_port
from tests.factories import TOKENS, TOKENS_ENV
from tests.fakeapi import FakeMiMo, ok
from tests.fakehelpdesks import FakeZendesk
from tests.harness import Stack
from tests.test_desk_browser import CHROMIUM_ARGS, DESKTOP, TIMEOUT_MS, sign_in
from tests.test_desk_browser import chromium as chromium  # the fixture: skips without Chromium
from tests.writeback_cases import AGENT_TAGS, ZENDESK, config_file
from triage.intake.platforms import sample_payloads, signed_request

pytestmark = pytest.mark.browser

SECRET = "browser-webhook-secret"
SUPPORT = {"problem_type": "device_fault", "device_model": "Router AX3000", "urgent_level": "normal",
           "user_requirements": ["refund"]}  # hardware-support, P2
WAIT_SECONDS = 60


def _until(what: str, condition: Callable[[], bool], logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {WAIT_SECONDS}s\n{logs()}")
        time.sleep(0.2)


@pytest.fixture
def zendesk() -> Iterator[FakeZendesk]:
    with FakeZendesk(email="bot@acme.test", token="zd-secret-token-1") as fake:
        fake.ticket(ZENDESK.ticket_id, tags=list(AGENT_TAGS))
        yield fake


def test_confirm_in_chromium_writes_the_suggestion_back_in_full(chromium: Path, tmp_path: Path,
                                                                   zendesk: FakeZendesk) -> None:
    config = config_file(tmp_path, ZENDESK.toml + '[autonomy.routes."hardware-support"]\nlevel = "suggest"\n')
    with FakeMiMo(ok(SUPPORT)) as api:
        env = {"TRIAGE_CONFIG": str(config), "TRIAGE_API_TOKENS": TOKENS_ENV,
               "TRIAGE_SESSION_SECRET": "browser-test-secret-" + "s" * 32, "TRIAGE_WEBHOOK_SECRET_ZENDESK": SECRET,
               **ZENDESK.env(zendesk.base_url)}
        stack = Stack(f"sqlite:///{tmp_path / 'triage.sqlite3'}", f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
                      api.base_url, env)
        stack.migrate()

        def logs() -> str:
            return "\n".join(f"--- {name}\n{text[-3000:]}" for name, text in stack.logs.items())

        there = zendesk.tickets[ZENDESK.ticket_id]
        try:
            with stack.worker("--concurrency", "2"), stack.server(free_port()) as base:
                body, headers = signed_request("zendesk", sample_payloads()["zendesk"], SECRET, time.time())
                answer = httpx.post(f"{base}/webhooks/zendesk", content=body, headers=headers)
                assert answer.status_code == 202, answer.text
                _until("the suggestion's note did not arrive", lambda: bool(there.notes), logs)
                assert (there.group, there.priority, sorted(there.tags)) == (None, None, sorted(AGENT_TAGS))
                assert there.notes[0].body.startswith("triage suggests routing this ticket to hardware-support (P2)")

                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
                    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
                    context.set_default_timeout(TIMEOUT_MS)
                    page = context.new_page()
                    sign_in(page, base, TOKENS["alice"])
                    waiting = page.locator("table.suggestions")
                    expect(page.get_by_role("heading", name="Needs confirmation")).to_contain_text("(1)")
                    expect(waiting.get_by_role("link")).to_have_count(1)
                    waiting.get_by_role("link").click()
                    expect(page.locator("#autonomy")).to_have_text("suggest")
                    expect(page.get_by_role("note")).to_contain_text("A suggestion")
                    page.get_by_role("button", name="Confirm", exact=True).click()
                    expect(page.get_by_role("status")).to_have_text(
                        "Suggestion confirmed: the helpdesk gets the whole decision.")
                    expect(page.get_by_role("button", name="Confirm", exact=True)).to_have_count(0)
                    page.goto(base + "/desk/")
                    expect(page.get_by_text("No suggestion is waiting.")).to_be_visible()
                    browser.close()
                _until("the confirmed decision was not written back",
                       lambda: (there.group, there.priority) == ZENDESK.support_p2, logs)
                assert sorted(there.tags) == sorted([*AGENT_TAGS, "triage_hardware-support", "triage_p2"])
        finally:
            stack.close()
