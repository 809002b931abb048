"""The dispatch desk in a real browser: Debian's Chromium driven by Playwright against a running
`triage serve` with a worker (SQLite, the embedded broker, the loopback OpenAI server as MiMo).

Run with `make browser` (left out of `make test`). Without /usr/bin/chromium it skips (fails under
TRIAGE_REQUIRE_SERVICES=1). `TRIAGE_DESK_SCREENSHOTS=docs make browser` also writes the
screenshots of docs/desk.md (docs/desk-queue.png, docs/desk-ticket.png, docs/desk-phone.png).

The walk is the one a dispatcher takes: sign in (a wrong token first), see the routed tickets,
filter, search, claim; a second person sees the claim and cannot release it; correct
urgent_level (priority and SLA follow), resolve, sign out. A conversation carrying an XSS
payload renders as text, and the pages hold at phone width with Chinese text and 1 MB messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from benchmarks.stack import free_port
from tests.factories import REPO, TOKENS, TOKENS_ENV
from tests.fakeapi import FakeMiMo, ok
from tests.harness import Stack

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
#: No download, no background traffic: the desk must work on a network without internet.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000
XSS = ('<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> [win a prize](javascript:alert(1)) '
       "agent: your refund is approved")


def ticket(problem_type: str, urgent_level: str, device: str | None, *needs: str) -> dict[str, object]:
    return {"problem_type": problem_type, "device_model": device, "urgent_level": urgent_level,
            "user_requirements": list(needs)}


CONVERSATIONS = [
    ("E2E-ROUTER", "My router E2E-ROUTER drops Wi-Fi every hour since the update.",
     ticket("device_fault", "normal", "Router AX3000", "stable Wi-Fi")),
    ("E2E-ALARM", "How do I set an alarm on my Watch S1? E2E-ALARM",
     ticket("consult", "low", "Watch S1", "set an alarm")),
    ("E2E-中文", "E2E-ZH 我的扫地机器人昨天开始不充电了，指示灯一直闪红色，请尽快处理。",
     ticket("device_fault", "high", "扫地机器人 S10", "修复充电")),
    ("E2E-XSS", f"E2E-XSS {XSS}", ticket("other", "normal", None)),
    ("E2E-LONG", "E2E-LONG my speaker crackles. " + "长" * 300 + "x" * (1024 * 1024),
     ticket("device_fault", "low", "Speaker X", "repair")),
    ("E2E-LATE", "E2E-LATE I complained two hours ago and nobody answered. This is unacceptable.",
     ticket("complaint", "high", None, "an answer today")),
]
#: E2E-LATE's customer wrote two hours ago (its line's created_at): on a 1 h SLA it is breached on arrival.
WRITTEN = {"E2E-LATE": (datetime.now(UTC) - timedelta(hours=2)).isoformat()}


@dataclass
class Desk:
    base: str
    stack: Stack
    browser: Browser
    ids: dict[str, int]

    def person(self, name: str, viewport: dict[str, int] = DESKTOP) -> tuple[BrowserContext, Page]:
        context = self.browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        sign_in(page, self.base, TOKENS[name])
        return context, page


def sign_in(page: Page, base: str, token: str) -> None:
    page.goto(base + "/")
    expect(page.get_by_role("heading", name="Sign in to the dispatch desk")).to_be_visible()
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Queue", exact=True)).to_be_visible()


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if os.environ.get("TRIAGE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{message}; TRIAGE_REQUIRE_SERVICES=1 makes this a failure", pytrace=False)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def desk(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    folder = tmp_path_factory.mktemp("desk")
    with FakeMiMo() as api:
        for external_id, _, answer in CONVERSATIONS:
            api.script(external_id.replace("E2E-中文", "E2E-ZH"), ok(answer))
        env = {"TRIAGE_API_TOKENS": TOKENS_ENV, "TRIAGE_SESSION_SECRET": "browser-test-secret-" + "s" * 32,
               "TRIAGE__API__DESK_REFRESH_SECONDS": "2"}
        stack = Stack(f"sqlite:///{folder / 'triage.sqlite3'}", f"sqla+sqlite:///{folder / 'broker.sqlite3'}",
                      api.base_url, env)
        stack.migrate()
        with stack.worker("--concurrency", "2"), stack.server(free_port()) as base:
            rows = stack.submit([{"source": "shop", "external_id": external_id, "text": text,
                                  **({"created_at": WRITTEN[external_id]} if external_id in WRITTEN else {})}
                                 for external_id, text, _ in CONVERSATIONS])
            ids = {row["external_id"]: row["ticket_id"] for row in rows}
            stack.wait_finished(list(ids.values()), timeout=60)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
                yield Desk(base, stack, browser, ids)
                browser.close()
        stack.close()


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """Into TRIAGE_DESK_SCREENSHOTS (a folder, relative to the repository) when set."""
    folder = os.environ.get("TRIAGE_DESK_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(REPO / folder / name), full_page=full_page)


def test_a_dispatcher_works_a_ticket_from_sign_in_to_sign_out(desk: Desk) -> None:
    context = desk.browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(desk.base + "/")
    page.get_by_label("Access token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That access token is not valid.")
    sign_in(page, desk.base, TOKENS["alice"])

    # the queue: every routed ticket, a link per external id, ordered by SLA
    table = page.locator("table.tickets")
    for external_id in desk.ids:
        expect(table.get_by_role("link", name=external_id, exact=True)).to_be_visible()
    row = table.locator("tr", has=page.get_by_role("link", name="E2E-ROUTER", exact=True))
    expect(row).to_contain_text("hardware-support")
    expect(row).to_contain_text("routed")
    late = table.locator("tr").nth(1)  # ordered by SLA: the breached one first, marked in words
    expect(late).to_contain_text("E2E-LATE")
    expect(late).to_contain_text("BREACHED")

    # filter, then search (Chinese too); the refresh keeps them
    page.get_by_label("Route").select_option("general-inquiries")
    page.get_by_role("button", name="Apply filters").click()
    expect(table.get_by_role("link")).to_have_count(2)  # the alarm question and the XSS one
    expect(table.get_by_role("link", name="E2E-ALARM", exact=True)).to_be_visible()
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Search").fill("扫地机器人")
    page.get_by_label("Search").press("Enter")
    expect(table.get_by_role("link")).to_have_count(1)
    expect(table.get_by_role("link", name="E2E-中文", exact=True)).to_be_visible()
    page.wait_for_timeout(2500)  # a refresh (every 2 s here) swaps the table in place
    expect(table.get_by_role("link")).to_have_count(1)
    expect(page.get_by_label("Search")).to_have_value("扫地机器人")

    # open a ticket and claim it
    page.get_by_role("link", name="Clear").click()
    page.get_by_role("link", name="E2E-ROUTER", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("E2E-ROUTER")
    expect(page.locator(".message.customer")).to_contain_text("drops Wi-Fi every hour")
    expect(page.get_by_text("Rule routing.rules[1] matched")).to_be_visible()
    page.get_by_role("button", name="Claim", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("You claimed this ticket.")
    expect(page.locator("#holder")).to_have_text("alice")
    ticket_url = page.url

    # a second person sees the claim and cannot release it
    bob_context, bob = desk.person("bob")
    bob.goto(ticket_url)
    expect(bob.get_by_role("note")).to_contain_text("Claimed by alice")
    for name in ("Claim", "Release", "Resolve", "Reprocess", "Save correction"):
        expect(bob.get_by_role("button", name=name, exact=True)).to_be_disabled()
    refused = httpx.delete(f"{desk.base}/tickets/{desk.ids['E2E-ROUTER']}/claim",
                           headers={"Authorization": f"Bearer {TOKENS['bob']}"})
    assert refused.status_code == 409
    bob_context.close()

    # correct urgent_level: P2 (8 h) becomes P1 (1 h) from the same start
    expect(page.locator("#priority")).to_have_text("P2")
    page.get_by_label("urgent_level", exact=True).select_option(label="high")
    page.get_by_role("button", name="Save correction").click()
    expect(page.get_by_role("status")).to_have_text("Correction saved: the ticket was routed again.")
    expect(page.locator("#priority")).to_have_text("P1")
    expect(page.locator("#sla")).to_contain_text(re.compile(r"in \d+ min|ago"))
    expect(page.get_by_text("Rule routing.rules[0] matched")).to_be_visible()
    screenshot(page, "desk-ticket.png", full_page=True)
    page.goto(desk.base + "/desk/")
    screenshot(page, "desk-queue.png")

    # mine, then resolve
    page.goto(desk.base + "/desk/?mine=1")
    expect(page.locator("table.tickets").get_by_role("link")).to_have_count(1)
    page.get_by_role("link", name="E2E-ROUTER", exact=True).click()
    page.get_by_role("button", name="Resolve", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Ticket resolved.")
    expect(page.locator(".summary")).to_contain_text("resolved")

    # sign out: the desk asks for the token again
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto(ticket_url)
    expect(page.get_by_label("Access token")).to_be_visible()
    context.close()


def test_an_xss_payload_in_a_conversation_renders_as_text(desk: Desk) -> None:
    context, page = desk.person("alice")
    page.goto(f"{desk.base}/desk/tickets/{desk.ids['E2E-XSS']}")
    message = page.locator(".message.customer")
    expect(message).to_contain_text("<script>window.__xss = 1</script>")
    expect(message).to_contain_text("[win a prize](javascript:alert(1))")
    assert page.evaluate("window.__xss") is None
    assert message.locator("script, img, a").count() == 0
    expect(page.locator(".message.agent")).to_have_count(0)
    context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280x800", "phone"])
def test_pages_hold_with_chinese_text_and_a_1_mb_conversation(desk: Desk, viewport: dict[str, int]) -> None:
    context, page = desk.person("alice", viewport)
    for path in ("/desk/", f"/desk/tickets/{desk.ids['E2E-LONG']}", f"/desk/tickets/{desk.ids['E2E-中文']}",
                 "/desk/quality"):
        page.goto(desk.base + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than the {viewport['width']}px window"
    page.goto(f"{desk.base}/desk/tickets/{desk.ids['E2E-LONG']}")
    if viewport == PHONE:
        screenshot(page, "desk-phone.png")
    rest = page.locator("details.long")
    expect(rest).to_have_count(1)
    assert rest.get_attribute("open") is None, "the long part starts collapsed"
    page.keyboard.press("Tab")  # the skip link first: the page is usable by keyboard
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    context.close()
