"""The web dashboard over HTTP: pages, sign-in, and actions guarded by the key and a CSRF token.
(tests/management/test_ui_browser.py drives the same pages in a real browser.)"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from event_queue import EventQueue, EventState
from tests.management.conftest import ACCOUNTS, API_KEY, add, claim, requeue

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


async def test_a_finished_rebalance_shows_its_orders(http: httpx.AsyncClient, queue: EventQueue) -> None:
    await add(queue, ACCOUNTS[0])
    event = await claim(queue)
    await queue.complete(event, "worker-1", {"orders": [
        {"symbol": "SPY", "action": "BUY", "quantity": 12, "order_type": "MKT",
         "status": "Filled", "filled": 12, "avg_price": 510.02}]})
    page = await http.get(f"/ui/events/{event.event_id}")
    assert page.status_code == 200
    row = re.search(r'<tr><th scope="row">SPY</th>(.*?)</tr>', page.text, re.S)
    assert row and [cell for cell in re.findall(r"<td>(.*?)</td>", row.group(1))] == [
        "BUY", "12", "MKT", "Filled", "12", "510.02"]
    assert "completed" in page.text
    missing = await http.get("/ui/events/no-such-event")
    assert missing.status_code == 404


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


async def test_history_filters_are_validated(http: httpx.AsyncClient, queue: EventQueue) -> None:
    await add(queue, ACCOUNTS[0])
    await queue.complete(await claim(queue), "worker-1", {"ok": True})
    shown = await http.get("/ui/history", params={"account_id": ACCOUNTS[0],
                                                  "outcome": "completed"})
    other = await http.get("/ui/history", params={"account_id": ACCOUNTS[1]})
    bad = await http.get("/ui/history", params={"account_id": "<script>"})
    assert shown.status_code == 200 and ACCOUNTS[0] in shown.text and "/ui/events/" in shown.text
    assert "No finished event matches." in other.text
    assert bad.status_code == 422 and "<script>" not in bad.text
