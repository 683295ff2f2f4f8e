"""Concurrent webhooks: dedup is atomic, and micro-batching gives each request its own answer."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import redis.asyncio as aioredis

from event_queue import EventQueue, keys
from tests.broker.conftest import BULK_ACCOUNTS, BrokerServer, bearer, event_body, sign


async def test_100_identical_webhooks_queue_exactly_one(
    broker: BrokerServer, redis_client: aioredis.Redis
) -> None:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=broker.url, limits=limits, timeout=10) as http:
        answers = await asyncio.gather(*(
            http.post("/events", content=event_body(), headers=bearer()) for _ in range(100)
        ))

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {202: 1, 200: 99}
    event_ids = {a.json()["event_id"] for a in answers}
    assert len(event_ids) == 1
    assert await redis_client.lrange(keys.QUEUE, 0, -1) == list(event_ids)


async def test_100_redeliveries_of_one_signed_webhook_queue_exactly_one(
    broker: BrokerServer, redis_client: aioredis.Redis
) -> None:
    body = event_body(command="print-orders")
    headers = sign(body, msg_id="msg_storm")
    async with httpx.AsyncClient(base_url=broker.url, timeout=10) as http:
        answers = await asyncio.gather(*(
            http.post("/events", content=body, headers=headers) for _ in range(100)
        ))

    assert Counter(a.status_code for a in answers) == {202: 1, 200: 99}
    assert await redis_client.llen(keys.QUEUE) == 1


async def test_each_concurrent_request_gets_its_own_answer(
    broker: BrokerServer, queue: EventQueue
) -> None:
    commands = ["rebalance", "print-positions"]
    bodies = [event_body(a, c) for a in BULK_ACCOUNTS for c in commands]  # 120 distinct keys
    bodies += bodies[:30]  # and 30 duplicates among them
    async with httpx.AsyncClient(base_url=broker.url, timeout=10) as http:
        answers = await asyncio.gather(*(
            http.post("/events", content=b, headers=bearer()) for b in bodies
        ))

    assert Counter(a.status_code for a in answers) == {202: 120, 200: 30}
    for body, answer in zip(bodies, answers, strict=True):
        event = await queue.get(answer.json()["event_id"])
        assert f'"{event.account_id}"'.encode() in body
        assert f'"{event.exec_command}"'.encode() in body
        assert answer.json()["dedup_key"] == event.dedup_key


async def test_concurrent_enqueues_share_script_calls(
    broker: BrokerServer, redis_client: aioredis.Redis
) -> None:
    bodies = [event_body(a, c) for a in BULK_ACCOUNTS for c in ("print-equity", "print-orders")]
    await redis_client.config_resetstat()
    async with httpx.AsyncClient(base_url=broker.url, timeout=10) as http:
        answers = await asyncio.gather(*(
            http.post("/events", content=b, headers=bearer()) for b in bodies
        ))

    stats = await redis_client.info("commandstats")
    calls = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))
    assert [a.status_code for a in answers] == [202] * len(bodies)
    assert 0 < calls < len(bodies) / 2  # one atomic call carried several events
