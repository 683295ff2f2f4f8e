"""The API-key matrix: no key configured / missing / wrong / right, for every mutation and audit;
reads protected only when MANAGEMENT_READ_API_KEY is set; every mutation audited without the key."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import httpx
import pytest

from event_queue import EventQueue
from tests.management.conftest import ACCOUNTS, API_KEY, READ_KEY, add, requeue

MUTATIONS = ["add", "delete", "retry", "audit"]


async def _call(client: httpx.AsyncClient, what: str, event_id: str) -> httpx.Response:
    if what == "add":
        return await client.post("/queue/events",
                                 json={"account_id": ACCOUNTS[1], "exec": "rebalance"})
    if what == "delete":
        return await client.delete(f"/queue/events/{event_id}")
    if what == "retry":
        return await client.post(f"/queue/events/{event_id}/retry")
    return await client.get("/audit")


@pytest.mark.parametrize("what", MUTATIONS)
@pytest.mark.parametrize(
    ("configured", "sent", "expected"),
    [
        (None, None, 403),
        (None, API_KEY, 403),
        (API_KEY, None, 401),
        (API_KEY, "wrong-key-but-long-enough", 401),
        (API_KEY, API_KEY[:-1], 401),
        (API_KEY, API_KEY, "ok"),
    ],
    ids=["unset-none", "unset-sent", "missing", "wrong", "prefix", "right"],
)
async def test_mutation_key_matrix(
    start_service: Callable[..., str], queue: EventQueue, what: str,
    configured: str | None, sent: str | None, expected: int | str,
) -> None:
    url = start_service(MANAGEMENT_API_KEY=configured)
    event_id = await add(queue)
    await requeue(queue)
    before = await queue.stats()
    headers = {"X-API-Key": sent} if sent is not None else {}
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        response = await _call(client, what, event_id)
    if expected == "ok":
        assert response.status_code in (200, 201), response.json()
        return
    assert response.status_code == expected
    if expected == 403:
        assert response.json()["detail"] == "mutations disabled: MANAGEMENT_API_KEY is not set"
    after = await queue.stats()
    assert (after.total_events, after.queue_length, after.retry_waiting) == (
        before.total_events, before.queue_length, before.retry_waiting)
    assert await queue.audit_log() == []


async def test_header_name_is_configurable(
    start_service: Callable[..., str], queue: EventQueue
) -> None:
    url = start_service(api_key_header="X-Ops-Token")
    event_id = await add(queue)
    async with httpx.AsyncClient(base_url=url) as client:
        old = await client.delete(f"/queue/events/{event_id}", headers={"X-API-Key": API_KEY})
        new = await client.delete(f"/queue/events/{event_id}", headers={"X-Ops-Token": API_KEY})
    assert old.status_code == 401 and "X-Ops-Token" in old.json()["detail"]
    assert new.status_code == 200


async def test_reads_are_open_without_a_read_key(http: httpx.AsyncClient) -> None:
    for path in ("/queue/status", "/queue/events", "/health", "/metrics", "/openapi.json"):
        assert (await http.get(path)).status_code == 200, path


async def test_read_key_protects_reads_but_not_health(
    start_service: Callable[..., str], queue: EventQueue
) -> None:
    url = start_service(MANAGEMENT_READ_API_KEY=READ_KEY)
    event_id = await add(queue)
    await queue.heartbeat("worker-1")
    reads = ["/queue/status", "/queue/events", f"/queue/events/{event_id}"]
    async with httpx.AsyncClient(base_url=url) as client:
        for path in reads:
            assert (await client.get(path)).status_code == 401, path
            assert (await client.get(path, headers={"X-API-Key": "nope"})).status_code == 401
            assert (await client.get(path, headers={"X-API-Key": READ_KEY})).status_code == 200
            assert (await client.get(path, headers={"X-API-Key": API_KEY})).status_code == 200
        for path in ("/health", "/health/live", "/metrics"):
            assert (await client.get(path)).status_code == 200, path
        read_only = await client.delete(f"/queue/events/{event_id}",
                                        headers={"X-API-Key": READ_KEY})
        assert read_only.status_code == 401  # the read key never mutates
        assert (await client.get("/audit", headers={"X-API-Key": READ_KEY})).status_code == 401


async def test_openapi_marks_exactly_the_mutations_as_needing_the_key(
    http: httpx.AsyncClient,
) -> None:
    schema = (await http.get("/openapi.json")).json()
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    secured = {(method.upper(), path) for path, ops in schema["paths"].items()
               for method, op in ops.items() if op.get("security")}
    assert secured == {
        ("POST", "/queue/events"), ("DELETE", "/queue/events/{event_id}"),
        ("POST", "/queue/events/{event_id}/retry"), ("GET", "/audit"), ("POST", "/queue/repair"),
    }


async def test_every_mutation_is_audited_and_logged_without_the_key(
    admin: httpx.AsyncClient, queue: EventQueue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="management_service")
    created = (await admin.post("/queue/events", json={"account_id": ACCOUNTS[0],
                                                       "exec": "rebalance"})).json()
    event_id = created["event_id"]
    await admin.post("/queue/events", json={"account_id": ACCOUNTS[0], "exec": "rebalance"})
    await admin.post(f"/queue/events/{event_id}/retry")
    await admin.delete(f"/queue/events/{event_id}")
    await admin.delete(f"/queue/events/{event_id}")

    entries = (await admin.get("/audit")).json()["entries"]
    seen = [(e["action"], e["outcome"]) for e in reversed(entries)]
    assert seen == [("add", "queued"), ("add", "duplicate"), ("retry", "event_not_waiting"),
                    ("delete", "deleted"), ("delete", "event_finished")]
    deleted = entries[1]
    assert deleted["event_id"] == event_id and deleted["account_id"] == ACCOUNTS[0]
    assert deleted["exec_command"] == "rebalance" and deleted["client"] == "127.0.0.1"
    assert deleted["at"]

    lines = [r for r in caplog.records if getattr(r, "fields", {}).get("audit")]
    assert len(lines) == 5
    assert lines[3].fields["action"] == "delete"  # type: ignore[attr-defined]
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in json.dumps(getattr(record, "fields", {}), default=str)
    assert all(API_KEY not in json.dumps(e) for e in entries)


async def test_refused_requests_are_logged_without_the_key(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, queue: EventQueue
) -> None:
    caplog.set_level(logging.INFO, logger="management_service")
    event_id = await add(queue)
    wrong = API_KEY + "x"
    response = await http.delete(f"/queue/events/{event_id}", headers={"X-API-Key": wrong})
    assert response.status_code == 401
    refused = [r for r in caplog.records if r.getMessage() == "request refused"]
    assert len(refused) == 1
    assert refused[0].fields["path"] == f"/queue/events/{event_id}"  # type: ignore[attr-defined]
    assert all(wrong not in json.dumps(getattr(r, "fields", {})) for r in caplog.records)
    assert await queue.audit_log() == []  # unauthenticated callers cannot flood the audit list
