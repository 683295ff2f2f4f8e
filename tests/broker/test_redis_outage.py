"""Redis going away: 503 with Retry-After within 2 s, never a hang or a 500, and recovery without a
restart of the broker."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from event_queue import keys
from event_queue.invariants import assert_consistent
from event_queue.redis_server import RedisServer
from tests.broker.conftest import BrokerServer, bearer, event_body


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private server this test may stop and start (the session server is left alone)."""
    data_dir = tmp_path / "redis"
    data_dir.mkdir()
    server = RedisServer(data_dir=str(data_dir)).start()
    yield server
    if server.process and server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


async def timed_post(http: httpx.AsyncClient, body: bytes) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await http.post("/events", content=body, headers=bearer())
    return response, time.monotonic() - started


async def test_stopped_redis_gives_503_then_recovers(
    own_redis: RedisServer, start_broker: Callable[..., BrokerServer]
) -> None:
    server = start_broker(redis_url=own_redis.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        before, _ = await timed_post(http, event_body(command="rebalance"))
        own_redis.stop()
        down, elapsed = await timed_post(http, event_body(command="print-positions"))
        live = await http.get("/health/live")
        ready = await http.get("/health/ready")
        own_redis.start()
        after, _ = await timed_post(http, event_body(command="print-positions"))
        kept, _ = await timed_post(http, event_body(command="rebalance"))

    assert before.status_code == 202
    assert down.status_code == 503
    assert elapsed < 2.0
    assert int(down.headers["retry-after"]) > 0
    assert "send it again" in down.json()["detail"]
    assert live.status_code == 200
    assert ready.status_code == 503
    assert after.status_code == 202
    assert kept.status_code == 200  # the AOF kept the first event and its dedup key
    assert kept.json()["event_id"] == before.json()["event_id"]


@pytest.mark.parametrize("before", ["nothing", "ready", "webhooks"])
async def test_hung_redis_gives_503_within_2_s_for_every_waiting_request(
    own_redis: RedisServer, start_broker: Callable[..., BrokerServer], before: str
) -> None:
    # Before Redis hangs, the broker has talked to it not at all (no connection), once (one
    # connection), or through concurrent webhooks (enqueue calls in flight side by side, with
    # the default BATCH_CONCURRENCY): the 2 s hold in each case.
    server = start_broker(redis_url=own_redis.url)
    body = event_body(command="cancel-orders")
    warmed: list[str] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        if before == "ready":
            await http.get("/health/ready")
        elif before == "webhooks":
            warm = await asyncio.gather(*(
                http.post("/events", content=event_body(command=c), headers=bearer())
                for c in ("rebalance", "print-positions", "print-equity", "print-orders")))
            assert [r.status_code for r in warm] == [202] * 4
            warmed = [r.json()["event_id"] for r in warm]
        assert own_redis.process is not None
        own_redis.process.send_signal(signal.SIGSTOP)
        try:
            answers = await asyncio.gather(*(timed_post(http, body) for _ in range(10)))
        finally:
            own_redis.process.send_signal(signal.SIGCONT)
        resent, _ = await timed_post(http, body)

    assert [r.status_code for r, _ in answers] == [503] * 10
    assert max(elapsed for _, elapsed in answers) < 2.0
    # A 503 means "not known to be queued": the resend is queued, or answered as a duplicate of
    # the attempt that reached Redis after all. Either way exactly one event exists.
    assert resent.status_code in (200, 202)
    redis = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        queued = await redis.lrange(keys.QUEUE, 0, -1)
        assert sorted(queued[:-1]) == sorted(warmed)
        assert queued[-1] == resent.json()["event_id"]
        await assert_consistent(redis)
    finally:
        await redis.aclose()
