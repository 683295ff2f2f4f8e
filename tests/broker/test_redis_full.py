"""A full Redis (``maxmemory`` reached, ``noeviction``): the broker answers 503 and stores nothing,
every acknowledged event stays, the processor neither crashes nor drops anything, and all of it
resumes once memory is freed. On both Redis generations (6.2 reports the refusal differently)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError

from event_processor.commands.base import CommandContext
from event_processor.core.event_processor import EventProcessor
from event_queue import Event, EventQueue, ExecCommand, NewEvent, QueueUnavailable
from event_queue.invariants import assert_consistent
from event_queue.redis_server import RedisServer
from tests.broker.conftest import BULK_ACCOUNTS, BrokerServer, bearer, event_body
from tests.processor.conftest import fast_settings
from tests.processor.harness import wait_until
from tests.queue.test_servers import BINARIES

FILLER = "filler:"


@pytest.fixture(params=BINARIES, ids=[b.version for b in BINARIES])
def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(request.param, data_dir=str(tmp_path)).start()
    yield server
    server.stop()


async def fill(redis: aioredis.Redis) -> None:
    """Make Redis full: maxmemory below what it uses now (noeviction evicts nothing)."""
    used = int((await redis.info("memory"))["used_memory"])
    await redis.config_set("maxmemory", used // 2)
    with pytest.raises(OutOfMemoryError):
        await redis.set(f"{FILLER}0", "x")


async def snapshot(redis: aioredis.Redis) -> dict[str, Any]:
    """Every queue key and its contents (the filler excluded)."""
    state: dict[str, Any] = {}
    async for key in redis.scan_iter():
        if key.startswith(FILLER):
            continue
        kind = await redis.type(key)
        if kind == "hash":
            state[key] = await redis.hgetall(key)
        elif kind == "list":
            state[key] = await redis.lrange(key, 0, -1)
        elif kind == "set":
            state[key] = sorted(await redis.smembers(key))
        elif kind == "zset":
            state[key] = await redis.zrange(key, 0, -1, withscores=True)
        else:
            state[key] = await redis.get(key)
    return state


class Done:
    """A command that completes at once and remembers what ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def __call__(self, event: Event, context: CommandContext) -> dict[str, str]:
        self.ran.append(event.event_id)
        return {"ok": event.exec_command}


async def test_a_full_redis_refuses_new_events_and_loses_none(
    own_redis: RedisServer, start_broker: Callable[..., BrokerServer]
) -> None:
    broker = start_broker(redis_url=own_redis.url)
    redis = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    queue = EventQueue.from_url(own_redis.url)
    command = Done()
    processor: EventProcessor | None = None
    try:
        async with httpx.AsyncClient(base_url=broker.url, timeout=10) as http:
            acknowledged = []
            for account in BULK_ACCOUNTS[:5]:
                answer = await http.post("/events", content=event_body(account), headers=bearer())
                assert answer.status_code == 202
                acknowledged.append(answer.json()["event_id"])
            await fill(redis)
            before = await snapshot(redis)

            refused = await http.post("/events", content=event_body(BULK_ACCOUNTS[5]),
                                      headers=bearer())
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["retry-after"]) > 0
            with pytest.raises(QueueUnavailable, match="out of memory"):
                await queue.enqueue(NewEvent(account_id=BULK_ACCOUNTS[6],
                                             exec_command=ExecCommand.REBALANCE))
            assert await snapshot(redis) == before  # nothing written, nothing lost

            registry = {c.value: command for c in ExecCommand}
            processor = EventProcessor.from_settings(fast_settings(own_redis.url), registry)
            running = asyncio.create_task(processor.run())
            await asyncio.sleep(1.0)  # it cannot even claim (BLMOVE needs memory), and lives on
            assert not running.done()
            assert (await queue.stats()).total_events == len(acknowledged)

            await redis.config_set("maxmemory", 0)
            late = await http.post("/events", content=event_body(BULK_ACCOUNTS[5]),
                                   headers=bearer())
            assert late.status_code == 202

            async def all_ran() -> bool:
                return set(command.ran) == {*acknowledged, late.json()["event_id"]}

            await wait_until(all_ran, timeout=15)
            processor.request_stop("test over")
            await asyncio.wait_for(running, 20)
        assert (await queue.stats()).total_events == 0
        await assert_consistent(redis)
    finally:
        if processor is not None:
            await processor.close()
        await queue.close()
        await redis.aclose()

