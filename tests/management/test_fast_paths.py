"""The fast paths (GET /health, /queue/status, /queue/events answered before FastAPI's stack)
answer exactly as the routes they stand in for: the same status, headers and body for every query,
valid or not. The reference is the same app served through FastAPI alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from event_queue import EventQueue, ExecCommand
from management_service.app import create_app
from tests.management.conftest import (
    ACCOUNTS,
    READ_KEY,
    ServerThread,
    add,
    make_settings,
    requeue,
)

QUERIES = [
    "", "limit=2", "limit=2&offset=1", "offset=2", "state=queued", "state=retry_wait",
    f"account_id={ACCOUNTS[1]}", "exec_command=print-equity", f"account_id={ACCOUNTS[0]}&limit=1",
    "state=queued&exec_command=rebalance", "limit=1000", "unknown=1", "limit=%32",
    "account_id=DU1111111%0A",
    # refused, or read by FastAPI itself: each goes the long way
    "limit=0", "limit=1001", "limit=x", "offset=-1", "state=done", "exec_command=health",
    "account_id=bad%20id", "limit=", "state=", "limit=1&limit=2", "limit=1.5", "limit= 3",
]


@pytest.fixture
def two_ways(redis_url: str, accounts_file: Path) -> Iterator[tuple[str, str]]:
    """The service as shipped, and the same service with every request through FastAPI."""
    settings = make_settings(redis_url, ACCOUNTS_FILE=str(accounts_file),
                             MANAGEMENT_READ_API_KEY=READ_KEY)
    app = create_app(settings)

    async def framework_only(scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    servers = [ServerThread(settings).start(), ServerThread(settings, app=framework_only).start()]
    try:
        yield servers[0].url, servers[1].url
    finally:
        for server in servers:
            server.stop()


async def answers(url: str, path: str, key: str | None) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        return await http.get(path, headers=headers)


async def test_the_listing_answers_every_query_as_the_route_does(
    two_ways: tuple[str, str], queue: EventQueue
) -> None:
    await add(queue)
    await requeue(queue)  # that event now waits for a retry
    for account in ACCOUNTS:
        await add(queue, account, ExecCommand.PRINT_EQUITY)
    await add(queue, ACCOUNTS[1], ExecCommand.REBALANCE)
    fast_url, framework_url = two_ways
    listed = 0
    for query in QUERIES:
        for key in (READ_KEY, None, "wrong-key"):
            fast = await answers(fast_url, f"/queue/events?{query}", key)
            framework = await answers(framework_url, f"/queue/events?{query}", key)
            assert (fast.status_code, fast.headers.get("content-type"), fast.content) == (
                framework.status_code, framework.headers.get("content-type"),
                framework.content), (query, key)
            listed += fast.status_code == 200 and bool(fast.json()["events"])
    assert listed >= 10  # the comparison covered real pages, not only refusals


async def test_status_and_health_answer_as_their_routes_do(two_ways: tuple[str, str]) -> None:
    fast_url, framework_url = two_ways
    for path, key in (("/queue/status", READ_KEY), ("/queue/status", None), ("/health", None)):
        fast = await answers(fast_url, path, key)
        framework = await answers(framework_url, path, key)
        assert fast.status_code == framework.status_code, path
        assert fast.headers.get("content-type") == framework.headers.get("content-type")
        assert fast.headers.get("cache-control") == framework.headers.get("cache-control")
        if fast.status_code in (200, 503) and path == "/health":
            assert set(fast.json()["checks"]) == set(framework.json()["checks"])
        elif fast.status_code == 200:
            assert set(fast.json()) == set(framework.json())
        else:
            assert fast.content == framework.content
