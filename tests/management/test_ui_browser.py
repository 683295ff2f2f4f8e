"""The web dashboard in a real browser: Debian's Chromium, driven by Playwright (no browser is
downloaded). Screenshots of each page are written to test-artifacts/ui/ for review."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from event_queue import EventQueue, EventState
from tests.management.conftest import ACCOUNTS, API_KEY, add, claim, requeue

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


async def shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


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


async def test_a_completed_rebalance_renders_its_orders(
    browser: Browser, service_url: str, queue: EventQueue
) -> None:
    await add(queue, ACCOUNTS[0])
    event = await claim(queue)
    await queue.complete(event, "worker-1", {"orders": [
        {"symbol": "SPY", "action": "BUY", "quantity": 12, "order_type": "MKT",
         "status": "Filled", "filled": 12, "avg_price": 510.02},
        {"symbol": "AGG", "action": "SELL", "quantity": 30, "order_type": "MKT",
         "status": "Filled", "filled": 30, "avg_price": 98.49}]})
    page = await open_page(browser, service_url)
    await page.goto(f"/ui/events/{event.event_id}")
    orders = page.get_by_role("table", name="Orders of this rebalance (orderRef = the event id)")
    await expect(orders.get_by_role("row")).to_have_count(3)
    await expect(orders.get_by_role("row").nth(1)).to_contain_text("SPY BUY 12 MKT Filled 12 510.02",
                                                                   use_inner_text=True)
    await shoot(page, "event-rebalance")


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
