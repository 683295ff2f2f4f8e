"""Redis down or hung: every endpoint that needs Redis answers 503 within 2 s (never a hang or a
500), /health says ``error``, /health/live stays 200, and everything recovers without a restart."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from event_queue import EventQueue, ExecCommand, NewEvent
from event_queue.redis_server import RedisServer
from tests.management.conftest import ACCOUNTS, API_KEY, make_settings, serving

NEEDS_REDIS = [
    ("GET", "/queue/status"),
    ("GET", "/queue/events"),
    ("GET", "/queue/events/some-id"),
    ("DELETE", "/queue/events/some-id"),
    ("POST", "/queue/events/some-id/retry"),
    ("GET", "/audit"),
]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test's own, which it may stop, restart, freeze and thaw."""
    server = RedisServer(data_dir=str(tmp_path)).start()
    yield server
    if server.process and server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


@pytest.fixture
def url_for(own_redis: RedisServer, accounts_file: Path) -> Iterator[Callable[[], str]]:
    with serving(make_settings(own_redis.url, ACCOUNTS_FILE=str(accounts_file))) as server:
        yield lambda: server.url


async def _requeued_event(redis_url: str) -> None:
    queue = EventQueue.from_url(redis_url, lease_seconds=2.0)
    try:
        await queue.enqueue(NewEvent(account_id=ACCOUNTS[0], exec_command=ExecCommand.REBALANCE))
        await queue.heartbeat("worker-1")
    finally:
        await queue.close()


async def _expect_outage(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEY},
                                 timeout=10) as client:
        started = time.monotonic()
        health = await client.get("/health")
        assert time.monotonic() - started < 2.0
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "error" and body["events_requeued"] is None
        assert body["checks"]["redis:connection"]["status"] == "fail"
        assert "unavailable" in body["checks"]["redis:connection"]["output"]
        for method, path in NEEDS_REDIS:
            started = time.monotonic()
            response = await client.request(method, path)
            assert time.monotonic() - started < 2.0, path
            assert response.status_code == 503, (path, response.text)
            assert "unavailable" in response.json()["detail"]
        added = await client.post("/queue/events",
                                  json={"account_id": ACCOUNTS[1], "exec": "rebalance"})
        assert added.status_code == 503
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "management_redis_up 0.0" in metrics.text
        assert "rebalance_queue_length" not in metrics.text
        assert (await client.get("/health/live")).status_code == 200


async def _expect_recovered(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        health = await client.get("/health")
        assert health.status_code == 200, health.json()
        status = await client.get("/queue/status")
        assert status.status_code == 200 and status.json()["queue_length"] == 1


async def test_redis_stopped_then_restarted(
    own_redis: RedisServer, url_for: Callable[[], str], tmp_path: Path
) -> None:
    await _requeued_event(own_redis.url)
    async with httpx.AsyncClient(base_url=url_for()) as client:
        assert (await client.get("/health")).status_code == 200
    own_redis.kill()
    await _expect_outage(url_for())

    restarted = RedisServer(port=own_redis.port, data_dir=str(tmp_path)).start()
    try:
        await _heartbeat(restarted.url)  # the AOF kept the event; the processor comes back too
        await _expect_recovered(url_for())
    finally:
        restarted.stop()


async def test_redis_hung_answers_503_within_2_s_then_recovers(
    own_redis: RedisServer, url_for: Callable[[], str]
) -> None:
    await _requeued_event(own_redis.url)
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        await _expect_outage(url_for())
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    await asyncio.sleep(0.1)
    await _heartbeat(own_redis.url)
    await _expect_recovered(url_for())


async def _heartbeat(redis_url: str) -> None:
    queue = EventQueue.from_url(redis_url)
    try:
        await queue.heartbeat("worker-1")
    finally:
        await queue.close()


async def test_a_full_redis_refuses_additions_and_still_answers_reads(
    own_redis: RedisServer, url_for: Callable[[], str]
) -> None:
    await _requeued_event(own_redis.url)
    await _heartbeat(own_redis.url)
    redis = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        used = int((await redis.info("memory"))["used_memory"])
        await redis.config_set("maxmemory", used // 2)  # full: noeviction refuses every write
        async with httpx.AsyncClient(base_url=url_for(), headers={"X-API-Key": API_KEY},
                                     timeout=10) as client:
            added = await client.post("/queue/events",
                                      json={"account_id": ACCOUNTS[1], "exec": "rebalance"})
            status = await client.get("/queue/status")
            health = await client.get("/health")
        assert added.status_code == 503, added.text
        assert "out of memory" in added.json()["detail"]
        assert status.status_code == 200 and status.json()["queue_length"] == 1
        assert health.status_code == 503  # monitors learn that webhooks are being refused
        checks = health.json()["checks"]
        assert checks["redis:memory"]["status"] == "fail"
        assert checks["queue:requeued_events"]["status"] == "pass"
    finally:
        await redis.config_set("maxmemory", 0)
        await redis.aclose()
