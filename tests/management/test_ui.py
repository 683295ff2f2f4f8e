"""The web dashboard over HTTP: pages, sign-in, and actions guarded by the key and a CSRF token.
(tests/management/test_ui_browser.py drives the same pages in a real browser.)"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx

from event_queue import EventQueue, EventState, ExecCommand
from management_service.ui.routes import HISTORY_PAGE
from tests.management.conftest import ACCOUNTS, API_KEY, REBALANCE_RESULT, add, claim, requeue

READ_KEY = "a-read-only-key-for-the-ui-tests"


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no CSRF token"
    return found.group(1)


async def signed_in(url: str, key: str = API_KEY) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=url, timeout=10)
    answer = await client.post("/ui/login", data={"api_key": key, "next": "/ui"})
    assert answer.status_code == 303, answer.text
    return client


async def test_the_overview_shows_the_queue_the_checks_and_the_processors(
    http: httpx.AsyncClient, queue: EventQueue
) -> None:
    await add(queue, ACCOUNTS[0])
    failed = await requeue(queue, error="IBKR unavailable after 4 attempts")
    await add(queue, ACCOUNTS[1])
    await queue.heartbeat("worker-7", {"host": "proc-host", "in_flight": 0})
    page = await http.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert re.search(r'<span class="count">1</span> <span class="label">queued</span>', text)
    assert re.search(r'<span class="count">1</span> <span class="label">waiting to retry</span>',
                     text)
    assert "Health: <strong>unhealthy</strong>" in text
    assert "queue:requeued_events" in text and "1 event(s) have been requeued" in text
    assert "worker-7" in text and "proc-host" in text
    assert f"/ui/events/{failed.event_id}" in text and "IBKR unavailable after 4 attempts" in text
    assert "Add an event" not in text  # actions only for a signed-in operator
    body = await http.get("/ui/overview-body")
    assert body.status_code == 200 and "<html" not in body.text and "worker-7" in body.text


def table(page: str, title: str) -> list[list[str]]:
    """The body rows of the table labelled by the heading ``title``, as lists of cell texts."""
    heading = re.search(r'<h2 id="([\w-]+)">' + re.escape(title) + "</h2>", page)
    assert heading, f"no table {title!r}"
    found = re.search(r'<table[^>]*aria-labelledby="' + heading.group(1) + r'"[^>]*>(.*?)</table>',
                      page, re.S)
    assert found, f"no table {title!r}"
    body = found.group(1).split("<tbody>")[1]
    return [[re.sub(r"<[^>]+>", "", cell).strip()
             for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


async def test_a_finished_rebalance_shows_each_symbol_its_orders_and_its_timeline(
    http: httpx.AsyncClient, queue: EventQueue
) -> None:
    await add(queue, ACCOUNTS[0])
    first = await claim(queue, "worker-1")
    await queue.fail(first, "worker-1", "IBKRUnavailable: gateway down", requeue_delay=0)
    await queue.promote_due_retries()
    event = await claim(queue, "worker-2")
    await queue.complete(event, "worker-2", REBALANCE_RESULT)

    page = await http.get(f"/ui/events/{event.event_id}")
    assert page.status_code == 200
    assert table(page.text, "Per symbol") == [
        ["SPY", "60 %", "510", "117.6471", "105", "12", "12", ""],
        ["AGG", "38 %", "98.5", "385.7868", "416", "-30", "-30", ""],
        ["GLD", "2 %", "180.25", "11.0957", "11", "0", "0",
         "within the drift band: 1 share is worth less than the 100 USD minimum order"],
    ]
    assert table(page.text, "Orders") == [
        ["AGG", "SELL", "30", "MKT", "Filled", "30", "98.49"],
        ["SPY", "BUY", "12", "MKT", "Filled", "12", "510.02"],
    ]
    steps = [(row[1], row[2]) for row in table(page.text, "Timeline")]
    assert steps == [("Received", ""), ("Queued", ""), ("Attempt 1: failed", "worker-1"),
                     ("Attempt 2: completed", "worker-2"), ("Completed", "worker-2")]
    failed = table(page.text, "Timeline")[2]
    assert failed[4].startswith("IBKRUnavailable: gateway down; next attempt 20")
    assert re.search(r'<dd class="state-completed">completed</dd>', page.text)
    missing = await http.get("/ui/events/no-such-event")
    assert missing.status_code == 404


async def test_results_without_symbols_and_plans_still_render(
    http: httpx.AsyncClient, queue: EventQueue
) -> None:
    await add(queue, ACCOUNTS[0])
    old = await claim(queue)
    await queue.complete(old, "worker-1", {"orders": REBALANCE_RESULT["orders"]})
    page = (await http.get(f"/ui/events/{old.event_id}")).text
    assert "Per symbol" not in page and len(table(page, "Orders")) == 2

    await add(queue, ACCOUNTS[1], ExecCommand.PRINT_REBALANCE)
    planned = await claim(queue)
    await queue.complete(planned, "worker-1", {"plan": {"symbols": [
        {"symbol": "SPY", "target_weight": 60, "price": 510.0, "target_shares": 117.6471,
         "current": 105, "planned": 117, "order": {"action": "BUY", "quantity": 12},
         "reason": None},
        {"symbol": "AGG", "target_weight": 38, "price": 98.5, "target_shares": 385.7868,
         "current": 416, "planned": 386, "order": {"action": "SELL", "quantity": 30},
         "reason": None}]}})
    page = (await http.get(f"/ui/events/{planned.event_id}")).text
    assert table(page, "Plan per symbol") == [
        ["SPY", "60 %", "510", "117.6471", "105", "12", ""],
        ["AGG", "38 %", "98.5", "385.7868", "416", "-30", ""]]
    assert "<h2 id=\"orders-title\">" not in page


async def test_a_live_event_shows_its_running_attempt_and_an_operator_retry(
    service_url: str, queue: EventQueue
) -> None:
    await add(queue, ACCOUNTS[0])
    waiting = await requeue(queue, error="IBKR unavailable after 4 attempts")
    operator = await signed_in(service_url)
    try:
        token = csrf_of((await operator.get(f"/ui/events/{waiting.event_id}")).text)
        await operator.post(f"/ui/events/{waiting.event_id}/retry", data={"csrf": token})
        await claim(queue, "worker-9")
        page = (await operator.get(f"/ui/events/{waiting.event_id}")).text
    finally:
        await operator.aclose()
    rows = table(page, "Timeline")
    assert [(r[1], r[2]) for r in rows] == [
        ("Received", ""), ("Queued", ""), ("Attempt 1: failed", "worker-1"),
        ("Retried now", "operator 127.0.0.1"), ("Attempt 2: running", "worker-9")]


async def test_retry_and_delete_need_an_operator_session_and_its_csrf_token(
    service_url: str, queue: EventQueue, http: httpx.AsyncClient
) -> None:
    await add(queue, ACCOUNTS[0])
    waiting = await requeue(queue)
    anonymous = await http.post(f"/ui/events/{waiting.event_id}/retry", data={"csrf": "x"})
    assert anonymous.status_code == 403

    operator = await signed_in(service_url)
    try:
        page = (await operator.get(f"/ui/events/{waiting.event_id}")).text
        token = csrf_of(page)
        no_token = await operator.post(f"/ui/events/{waiting.event_id}/retry")
        forged = await operator.post(f"/ui/events/{waiting.event_id}/retry", data={"csrf": "0" * 64})
        cross_site = await operator.post(f"/ui/events/{waiting.event_id}/retry",
                                         data={"csrf": token},
                                         headers={"Origin": "https://evil.example"})
        assert [r.status_code for r in (no_token, forged, cross_site)] == [403, 403, 403]
        assert (await queue.get(waiting.event_id)).state is EventState.RETRY_WAIT

        retried = await operator.post(f"/ui/events/{waiting.event_id}/retry", data={"csrf": token})
        assert retried.status_code == 303
        assert retried.headers["location"] == f"/ui/events/{waiting.event_id}?done=retried"
        assert (await queue.get(waiting.event_id)).state is EventState.QUEUED

        deleted = await operator.post(f"/ui/events/{waiting.event_id}/delete", data={"csrf": token})
        assert deleted.status_code == 303
        audit = (await operator.get("/audit", headers={"X-API-Key": API_KEY})).json()["entries"]
        assert [(a["action"], a["outcome"]) for a in audit[:2]] == [
            ("delete", "deleted"), ("retry", "queued")]
    finally:
        await operator.aclose()


async def test_adding_an_event_is_validated_like_a_webhook(service_url: str, queue: EventQueue) -> None:
    operator = await signed_in(service_url)
    try:
        token = csrf_of((await operator.get("/ui")).text)
        unknown = await operator.post("/ui/events", data={
            "csrf": token, "account_id": "DU0000001", "exec_command": "print-positions"})
        bad_json = await operator.post("/ui/events", data={
            "csrf": token, "account_id": ACCOUNTS[0], "exec_command": "rebalance", "data": "{"})
        assert (unknown.status_code, bad_json.status_code) == (422, 422)
        assert "not in the accounts file" in unknown.text
        assert (await queue.stats()).total_events == 0

        added = await operator.post("/ui/events", data={
            "csrf": token, "account_id": ACCOUNTS[0], "exec_command": "print-positions"})
        assert added.status_code == 303
        event_id = added.headers["location"].split("/ui/events/")[1].split("?")[0]
        assert (await queue.get(event_id)).exec_command == "print-positions"
    finally:
        await operator.aclose()


async def test_with_a_read_key_pages_need_a_session_and_readers_cannot_act(
    start_service: Callable[..., str], queue: EventQueue
) -> None:
    url = start_service(MANAGEMENT_READ_API_KEY=READ_KEY)
    await add(queue, ACCOUNTS[0])
    waiting = await requeue(queue)
    async with httpx.AsyncClient(base_url=url, timeout=10) as anonymous:
        page = await anonymous.get("/ui")
        assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=/ui"
        wrong = await anonymous.post("/ui/login", data={"api_key": "not-a-key-of-this-service"})
        assert wrong.status_code == 401
        forged = await anonymous.get("/ui", headers={
            "Cookie": "rebalancer_ui=operator.9999999999.nonce." + "0" * 64})
        assert forged.status_code == 303
    reader = await signed_in(url, READ_KEY)
    try:
        page = await reader.get(f"/ui/events/{waiting.event_id}")
        assert page.status_code == 200 and "Retry now" not in page.text
        refused = await reader.post(f"/ui/events/{waiting.event_id}/retry", data={"csrf": "0" * 64})
        assert refused.status_code == 403
        assert (await queue.get(waiting.event_id)).state is EventState.RETRY_WAIT
    finally:
        await reader.aclose()


async def test_sign_in_never_redirects_off_site_and_the_cookie_is_strict(service_url: str) -> None:
    async with httpx.AsyncClient(base_url=service_url, timeout=10) as client:
        answer = await client.post("/ui/login", data={"api_key": API_KEY,
                                                      "next": "https://evil.example/x"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui?done=signed-in"
        cookie = answer.headers["set-cookie"]
        for attribute in ("HttpOnly", "Path=/ui", "SameSite=strict"):
            assert attribute.lower() in cookie.lower(), cookie
        assert API_KEY not in cookie


def history_ids(page: str) -> list[str]:
    return re.findall(r'<th scope="row"><a href="/ui/events/([^"]+)">', page)


async def test_history_filters_include_and_exclude_the_right_events(
    http: httpx.AsyncClient, admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    await add(queue, ACCOUNTS[0])
    early = (await claim(queue)).event_id
    await queue.complete(await queue.get(early), "worker-1", {"ok": True})
    await asyncio.sleep(1.1)  # the form's times are to the second
    middle = (await queue.stats()).redis_time.replace(microsecond=0)
    await asyncio.sleep(0.05)
    await add(queue, ACCOUNTS[1], ExecCommand.PRINT_EQUITY)
    late = (await claim(queue)).event_id
    await queue.complete(await queue.get(late), "worker-1", {"ok": True})
    deleted = await add(queue, ACCOUNTS[0], ExecCommand.CANCEL_ORDERS)
    assert (await admin.delete(f"/queue/events/{deleted}")).status_code == 200

    async def shown(**params: str) -> list[str]:
        page = await http.get("/ui/history", params=params)
        assert page.status_code == 200, page.text
        return history_ids(page.text)

    stamp = middle.strftime("%Y-%m-%dT%H:%M:%S")  # as the datetime-local input sends it
    assert await shown() == [deleted, late, early]
    assert await shown(account_id=ACCOUNTS[0]) == [deleted, early]
    assert await shown(exec_command="print-equity") == [late]
    assert await shown(outcome="deleted") == [deleted]
    assert await shown(outcome="completed", account_id=ACCOUNTS[0]) == [early]
    assert await shown(since=stamp) == [deleted, late]
    assert await shown(until=stamp) == [early]
    assert await shown(account_id=ACCOUNTS[2]) == []
    page = (await http.get("/ui/history", params={"since": stamp})).text
    assert f'value="{stamp}"' in page  # the form shows the filter back


async def test_history_pages_link_to_older_and_newer(
    http: httpx.AsyncClient, queue: EventQueue
) -> None:
    done = []
    for _ in range(HISTORY_PAGE + 3):
        await add(queue, ACCOUNTS[0], ExecCommand.PRINT_EQUITY)
        event = await claim(queue)
        await queue.complete(event, "worker-1")
        done.append(event.event_id)
    first = (await http.get("/ui/history", params={"account_id": ACCOUNTS[0]})).text
    assert history_ids(first) == done[::-1][:HISTORY_PAGE]
    assert "Newer</a>" not in first
    older = re.search(r'<a href="(/ui/history\?[^"]+)" rel="next">Older</a>', first)
    assert older and "account_id=" in older.group(1)
    second = (await http.get(older.group(1).replace("&amp;", "&"))).text
    assert history_ids(second) == done[::-1][HISTORY_PAGE:]
    assert 'rel="next"' not in second
    newer = re.search(r'<a href="(/ui/history\?[^"]+)" rel="prev">Newer</a>', second)
    assert newer
    back = (await http.get(newer.group(1).replace("&amp;", "&"))).text
    assert history_ids(back) == done[::-1][:HISTORY_PAGE]


async def test_history_filters_are_validated(http: httpx.AsyncClient) -> None:
    bad = await http.get("/ui/history", params={"account_id": "<script>"})
    assert bad.status_code == 422 and "<script>" not in bad.text
    backwards = await http.get("/ui/history", params={"since": "2026-11-28T15:00",
                                                      "until": "2026-11-28T14:00"})
    assert backwards.status_code == 422 and "From must be earlier than Until." in backwards.text
    stale = await http.get("/ui/history", params={"before": "bm90LWEtY3Vyc29y"})
    assert stale.status_code == 422 and "no longer valid" in stale.text
