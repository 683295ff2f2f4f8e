"""Finished events over HTTP: GET /queue/events/{id} answers for them with their result and
timeline, GET /queue/history filters and pages them, the retention bounds them, and the OpenAPI
document describes every field."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from event_queue import EventQueue, ExecCommand
from tests.management.conftest import ACCOUNTS, API_KEY, add, claim


async def complete(queue: EventQueue, account: str, command: ExecCommand,
                   result: Any = None, consumer: str = "worker-1") -> str:
    event_id = await add(queue, account, command)
    await queue.complete(await claim(queue, consumer), consumer, result)
    return event_id


async def test_a_completed_event_answers_with_its_result_and_timeline(
    http: httpx.AsyncClient, queue: EventQueue
) -> None:
    event_id = await add(queue, ACCOUNTS[0])
    first = await claim(queue, "worker-1")
    await queue.fail(first, "worker-1", "IBKRUnavailable: gateway down", requeue_delay=0)
    await queue.promote_due_retries()
    await queue.complete(await claim(queue, "worker-2"), "worker-2", {"orders": []})

    response = await http.get(f"/queue/events/{event_id}")
    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["times_queued"], body["attempts"]) == ("completed", 2, 2)
    assert (body["finished_by"], body["result"]) == ("worker-2", {"orders": []})
    assert body["dedup_key"] == f"{ACCOUNTS[0]}:rebalance" and body["consumer"] is None
    steps = [(s["step"], s["attempt"], s["consumer"], s["outcome"], s["error"], s["by"])
             for s in body["timeline"]]
    assert steps == [
        ("received", None, None, None, None, None),
        ("queued", None, None, None, None, None),
        ("attempt", 1, "worker-1", "failed", "IBKRUnavailable: gateway down", None),
        ("attempt", 2, "worker-2", "completed", None, None),
        ("completed", None, None, None, None, "worker-2"),
    ]
    times = [datetime.fromisoformat(s["at"]) for s in body["timeline"]]
    assert times == sorted(times) and times[-1] == datetime.fromisoformat(body["finished_at"])
    assert body["timeline"][2]["next_attempt_at"] is not None
    assert isinstance(body["timeline"][2]["duration_ms"], int)


async def test_operator_actions_are_in_the_timeline_with_their_address(
    admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    added = await admin.post("/queue/events", json={"account_id": ACCOUNTS[0],
                                                    "exec_command": "print-equity"})
    event_id = added.json()["event_id"]
    await queue.fail(await claim(queue), "worker-1", "boom", requeue_delay=600)
    assert (await admin.post(f"/queue/events/{event_id}/retry")).status_code == 200
    live = (await admin.get(f"/queue/events/{event_id}")).json()
    assert [(s["step"], s["by"]) for s in live["timeline"]][-2:] == [
        ("attempt", None), ("retried", "127.0.0.1")]
    assert (live["timeline"][1]["step"], live["timeline"][1]["by"]) == ("queued", "127.0.0.1")
    assert (await admin.delete(f"/queue/events/{event_id}")).status_code == 200

    body = (await admin.get(f"/queue/events/{event_id}")).json()
    assert (body["state"], body["finished_by"]) == ("deleted", "127.0.0.1")
    assert [s["step"] for s in body["timeline"]] == [
        "received", "queued", "attempt", "retried", "deleted"]
    assert body["timeline"][-1]["by"] == "127.0.0.1"
    retried = await admin.post(f"/queue/events/{event_id}/retry")
    assert retried.status_code == 409 and retried.json()["state"] == "deleted"


async def test_history_filters_include_and_exclude_the_right_events(
    http: httpx.AsyncClient, admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    a_rebalance = await complete(queue, ACCOUNTS[0], ExecCommand.REBALANCE, {"orders": []})
    b_positions = await complete(queue, ACCOUNTS[1], ExecCommand.PRINT_POSITIONS)
    await asyncio.sleep(0.05)
    middle = (await queue.stats()).redis_time
    await asyncio.sleep(0.05)
    a_positions = await complete(queue, ACCOUNTS[0], ExecCommand.PRINT_POSITIONS)
    deleted = await add(queue, ACCOUNTS[1], ExecCommand.REBALANCE)
    assert (await admin.delete(f"/queue/events/{deleted}")).status_code == 200

    async def ids(**params: Any) -> list[str]:
        response = await http.get("/queue/history", params=params)
        assert response.status_code == 200, response.text
        return [e["event_id"] for e in response.json()["entries"]]

    assert await ids() == [deleted, a_positions, b_positions, a_rebalance]
    assert await ids(account_id=ACCOUNTS[0]) == [a_positions, a_rebalance]
    assert await ids(exec_command="print-positions") == [a_positions, b_positions]
    assert await ids(outcome="deleted") == [deleted]
    assert await ids(outcome="completed", account_id=ACCOUNTS[1]) == [b_positions]
    assert await ids(account_id=ACCOUNTS[0], exec_command="rebalance") == [a_rebalance]
    assert await ids(since=middle.isoformat()) == [deleted, a_positions]
    assert await ids(until=middle.isoformat()) == [b_positions, a_rebalance]
    naive_utc = middle.replace(tzinfo=None).isoformat()  # without a zone: UTC
    assert await ids(since=naive_utc, exec_command="print-positions") == [a_positions]
    assert await ids(account_id=ACCOUNTS[2]) == []
    entry = (await http.get("/queue/history", params={"outcome": "deleted"})).json()["entries"][0]
    assert (entry["finished_by"], entry["account_id"], entry["result"]) == (
        "127.0.0.1", ACCOUNTS[1], None)


async def test_history_pages_follow_each_other_both_ways(
    http: httpx.AsyncClient, queue: EventQueue
) -> None:
    done = [await complete(queue, ACCOUNTS[i % 3], ExecCommand.PRINT_EQUITY) for i in range(5)]
    newest_first = done[::-1]
    seen: list[str] = []
    page = (await http.get("/queue/history", params={"limit": 2})).json()
    pages = [page]
    assert page["newer"] is None
    while True:
        seen += [e["event_id"] for e in page["entries"]]
        if page["older"] is None:
            break
        page = (await http.get("/queue/history",
                               params={"limit": 2, "before": page["older"]})).json()
        pages.append(page)
    assert seen == newest_first and [len(p["entries"]) for p in pages] == [2, 2, 1]
    back = (await http.get("/queue/history",
                           params={"limit": 2, "after": pages[-1]["newer"]})).json()
    assert [e["event_id"] for e in back["entries"]] == newest_first[2:4]
    assert back["retention"] == {"max_events": 5000, "max_age_days": 30}


async def test_bad_history_queries_are_422_naming_the_parameter(http: httpx.AsyncClient) -> None:
    now = datetime.now().astimezone()
    cases: list[tuple[dict[str, str], str]] = [
        ({"before": "not-a-cursor"}, "query"),
        ({"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()}, "until"),
        ({"before": "a", "after": "b"}, "after"),
        ({"outcome": "failed"}, "outcome"),
        ({"since": "yesterday"}, "since"),
        ({"account_id": "DU1 OR 1=1"}, "account_id"),
    ]
    for params, where in cases:
        response = await http.get("/queue/history", params=params)
        assert response.status_code == 422, (params, response.text)
        locations = [e["loc"] for e in response.json()["detail"]]
        assert any(where in loc for loc in locations), (params, locations)


async def test_the_retention_setting_bounds_what_deletes_keep(
    start_service: Callable[..., str], queue: EventQueue
) -> None:
    url = start_service(HISTORY_MAX_EVENTS="2")
    ids = [await add(queue, account) for account in ACCOUNTS]
    async with httpx.AsyncClient(base_url=url, timeout=10,
                                 headers={"X-API-Key": API_KEY}) as admin:
        for event_id in ids:
            assert (await admin.delete(f"/queue/events/{event_id}")).status_code == 200
        kept = [e["event_id"] for e in (await admin.get("/queue/history")).json()["entries"]]
        assert kept == ids[:0:-1]
        assert (await admin.get(f"/queue/events/{ids[0]}")).status_code == 404
        status = (await admin.get("/queue/status")).json()
    assert status["finished_events"] == 2
    assert status["retention"] == {"max_events": 2, "max_age_days": 30}


async def test_the_openapi_document_describes_finished_events(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    history = spec["paths"]["/queue/history"]["get"]
    assert {p["name"] for p in history["parameters"]} == {
        "account_id", "exec_command", "outcome", "since", "until", "limit", "before", "after"}
    ok = history["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.endswith("/HistoryOut")
    assert {"entries", "older", "newer", "retention"} <= set(schemas["HistoryOut"]["properties"])
    assert {"outcome", "finished_at", "finished_by", "result"} <= set(
        schemas["HistoryEntryOut"]["properties"])
    detail = schemas["EventDetail"]["properties"]
    assert {"timeline", "finished_at", "finished_by", "attempts"} <= set(detail)
    assert set(detail["state"]["enum"]) == {
        "queued", "processing", "retry_wait", "completed", "deleted"}
    step = schemas["TimelineStepOut"]["properties"]
    assert {"at", "step", "attempt", "consumer", "duration_ms", "outcome", "error", "by"} <= set(
        step)
