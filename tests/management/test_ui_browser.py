"""The web dashboard in a real browser: Debian's Chromium, driven by Playwright (no browser is
downloaded). Screenshots of each page are written to test-artifacts/ui/ for review."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from event_queue import EventQueue, EventState, ExecCommand
from management_service.ui.routes import HISTORY_PAGE
from tests.management.conftest import ACCOUNTS, API_KEY, REBALANCE_RESULT, add, claim, requeue

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "ui"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "no Chromium (apt install chromium; .ci/run installs it)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def open_page(browser: Browser, url: str, **options: Any) -> Page:
    context = await browser.new_context(base_url=url, **options)
    return await context.new_page()


async def shoot(page: Page, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


async def sign_in(page: Page, key: str = API_KEY) -> None:
    await page.goto("/ui/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("status")).to_have_text("Signed in.")


async def test_the_overview_reflects_the_queue_and_refreshes_by_itself(
    browser: Browser, service_url: str, queue: EventQueue
) -> None:
    await add(queue, ACCOUNTS[0])
    failed = await requeue(queue, error="IBKR unavailable after 4 attempts")
    await queue.heartbeat("worker-3", {"host": "proc-a", "in_flight": 1})
    page = await open_page(browser, service_url)
    await page.goto("/ui")
    await expect(page.locator(".status")).to_contain_text("unhealthy")
    waiting = page.get_by_role("table", name="Waiting to retry")
    await expect(waiting).to_contain_text(failed.event_id)
    await expect(waiting).to_contain_text("IBKR unavailable after 4 attempts")
    await expect(page.get_by_role("table", name="Processors")).to_contain_text("worker-3")
    await shoot(page, "overview")

    await add(queue, ACCOUNTS[1])  # the page shows it without a reload
    queued = page.locator(".counts li").filter(has_text="queued").first
    await expect(queued.locator(".count")).to_have_text("1", timeout=15_000)


async def cells(page: Page, table: str) -> list[list[str]]:
    """The body rows of a table, found by its accessible name, as the browser shows them."""
    rows = page.get_by_role("table", name=table, exact=True).locator("tbody tr")
    return [[text.strip() for text in await rows.nth(i).locator("th, td").all_inner_texts()]
            for i in range(await rows.count())]


async def test_a_completed_rebalance_renders_each_symbol_its_orders_and_its_timeline(
    browser: Browser, service_url: str, queue: EventQueue
) -> None:
    await add(queue, ACCOUNTS[0])
    first = await claim(queue, "proc-a:4121:9f3e2c")
    await queue.fail(first, "proc-a:4121:9f3e2c",
                     "IBKRUnavailable: IBKR unavailable after 4 attempts", requeue_delay=0)
    await queue.promote_due_retries()
    event = await claim(queue, "proc-b:977:1c0d4a")
    await queue.complete(event, "proc-b:977:1c0d4a", REBALANCE_RESULT)
    page = await open_page(browser, service_url)
    await page.goto(f"/ui/events/{event.event_id}")
    await expect(page.get_by_role("table", name="Per symbol")).to_be_visible()
    assert await cells(page, "Per symbol") == [
        ["SPY", "60 %", "510", "117.6471", "105", "12", "12", ""],
        ["AGG", "38 %", "98.5", "385.7868", "416", "-30", "-30", ""],
        ["GLD", "2 %", "180.25", "11.0957", "11", "0", "0",
         "within the drift band: 1 share is worth less than the 100 USD minimum order"],
    ]
    assert await cells(page, "Orders") == [
        ["AGG", "SELL", "30", "MKT", "Filled", "30", "98.49"],
        ["SPY", "BUY", "12", "MKT", "Filled", "12", "510.02"],
    ]
    timeline = await cells(page, "Timeline")
    assert [(row[1], row[2]) for row in timeline] == [
        ("Received", ""), ("Queued", ""), ("Attempt 1: failed", "proc-a:4121:9f3e2c"),
        ("Attempt 2: completed", "proc-b:977:1c0d4a"), ("Completed", "proc-b:977:1c0d4a")]
    assert timeline[2][4].startswith("IBKRUnavailable: IBKR unavailable after 4 attempts")
    await shoot(page, "event-rebalance")


async def test_history_filters_by_time_and_pages_in_the_browser(
    browser: Browser, service_url: str, queue: EventQueue
) -> None:
    await add(queue, ACCOUNTS[1], ExecCommand.PRINT_POSITIONS)
    early = await claim(queue)
    await queue.complete(early, "proc-a:4121:9f3e2c", {"positions": []})
    await asyncio.sleep(1.1)  # the form's times are to the second
    middle = (await queue.stats()).redis_time.replace(microsecond=0)
    later = []
    for i in range(HISTORY_PAGE + 2):
        await add(queue, ACCOUNTS[i % 2], ExecCommand.REBALANCE)
        event = await claim(queue)
        await queue.complete(event, "proc-b:977:1c0d4a", REBALANCE_RESULT)
        later.append(event.event_id)
    page = await open_page(browser, service_url)
    await page.goto("/ui/history")
    await page.get_by_label("Command").select_option("rebalance")
    await page.get_by_label("From (UTC)").fill(middle.strftime("%Y-%m-%dT%H:%M:%S"))
    await page.get_by_role("button", name="Filter").click()
    rows = page.get_by_role("table", name="Finished events").locator("tbody tr")
    await expect(rows).to_have_count(HISTORY_PAGE)
    await expect(rows.first).to_contain_text(later[-1])
    await shoot(page, "history", full_page=False)
    await page.get_by_role("link", name="Older").click()
    await expect(rows).to_have_count(2)
    assert early.event_id not in await page.content()  # finished before "From"
    await page.get_by_label("Command").select_option("print-positions")
    await page.get_by_label("From (UTC)").fill("")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(early.event_id)


async def test_retry_and_delete_work_with_the_key_and_are_refused_without(
    browser: Browser, service_url: str, queue: EventQueue
) -> None:
    await add(queue, ACCOUNTS[0])
    waiting = await requeue(queue)
    anonymous = await open_page(browser, service_url)
    await anonymous.goto(f"/ui/events/{waiting.event_id}")
    await expect(anonymous.get_by_role("button", name="Retry now")).to_have_count(0)

    page = await open_page(browser, service_url)
    await sign_in(page)
    await page.goto(f"/ui/events/{waiting.event_id}")
    await shoot(page, "event-retry-wait")
    await page.get_by_role("button", name="Retry now").click()
    await expect(page.get_by_role("status")).to_contain_text("sent to the queue")
    assert (await queue.get(waiting.event_id)).state is EventState.QUEUED

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("status")).to_contain_text("deleted")
    assert (await queue.stats()).total_events == 0

    refused = await anonymous.request.post(f"/ui/events/{waiting.event_id}/delete",
                                           form={"csrf": "0" * 64})
    assert refused.status == 403


async def test_readable_without_javascript_and_every_field_labelled(
    browser: Browser, service_url: str, queue: EventQueue
) -> None:
    await add(queue, ACCOUNTS[0])
    page = await open_page(browser, service_url, java_script_enabled=False)
    await sign_in(page)
    await page.goto("/ui")
    await expect(page.get_by_role("heading", name="Health checks")).to_be_visible()
    await expect(page.get_by_label("Account")).to_be_visible()
    assert await page.get_attribute("html", "lang") == "en"
    unlabelled = await page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')].filter(
        el => !el.labels || el.labels.length === 0).map(el => el.name)""")
    assert unlabelled == []
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await shoot(page, "overview-no-javascript")
