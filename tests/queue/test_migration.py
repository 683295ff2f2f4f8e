"""Upgrading from the key names before the hash tag: a queue written by an earlier version, with
events queued, claimed, waiting to retry and finished, is moved to the tagged names and runs on."""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from event_queue import EventQueue, EventState, ExecCommand, NewEvent


async def legacy_event(redis: aioredis.Redis, event_id: str, account: str, state: str) -> None:
    """An event hash as earlier versions stored it (no claim field)."""
    await redis.hset(f"event:{event_id}", mapping={
        "event_id": event_id, "account_id": account, "exec_command": "rebalance",
        "dedup_key": f"{account}:rebalance", "times_queued": 2 if state == "retry_wait" else 1,
        "created_at": 1_700_000_000_000, "updated_at": 1_700_000_000_000, "data": "{}",
        "state": state, "last_error": "", "next_attempt_at": "", "result": "",
        "consumer": "old-host:1:abc" if state == "processing" else "", "idempotency_key": ""})
    await redis.sadd("active_events", f"{account}:rebalance")
    await redis.hset("active_event_ids", f"{account}:rebalance", event_id)
    await redis.zadd("events:all", {event_id: 1_700_000_000_000_000})
    await redis.zadd(f"events:account:{account}", {event_id: 1_700_000_000_000_000})
    await redis.zadd("events:command:rebalance", {event_id: 1_700_000_000_000_000})


async def test_a_queue_of_an_earlier_version_moves_to_the_tagged_names_and_runs_on(
    queue: EventQueue, redis_client: aioredis.Redis
) -> None:
    await legacy_event(redis_client, "q1", "DU1", "queued")
    await legacy_event(redis_client, "p1", "DU2", "processing")
    await legacy_event(redis_client, "r1", "DU3", "retry_wait")
    await redis_client.rpush("rebalance_queue", "q1")
    await redis_client.rpush("processing", "p1")
    await redis_client.zadd("leases", {"p1": 1})
    await redis_client.zadd("retry_wait", {"r1": 1})
    await redis_client.zadd("requeued_events", {"r1": 2})
    await redis_client.lpush("history", json.dumps({"event_id": "old", "outcome": "completed"}))
    await redis_client.set("idempotency:webhook:w1", "q1", px=60_000)
    await redis_client.set("lock:account:DU2", "old-token", px=60_000)
    # The new broker already took an event before the processor moved the old ones.
    fresh = await queue.enqueue(NewEvent(account_id="DU4", exec_command=ExecCommand.REBALANCE))

    assert await queue.migrate_legacy_keys() > 0

    legacy = [k for k in await redis_client.keys("*") if not k.startswith("{rebalancer}:")]
    assert legacy == ["lock:account:DU2"]  # a lock of a stopped processor just expires
    await redis_client.delete("lock:account:DU2")
    # Interrupted (claimed) events first, then the old queue, then what arrived since.
    assert await redis_client.lrange("{rebalancer}:rebalance_queue", 0, -1) == ["p1", "q1",
                                                                               fresh.event_id]
    assert (await queue.get("p1")).state is EventState.QUEUED
    stats = await queue.stats()
    assert (stats.total_events, stats.retry_waiting, stats.events_requeued) == (4, 1, 1)
    assert stats.inconsistencies == []
    assert [e.event_id for e in (await queue.history()).entries] == ["old"]
    duplicate = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE),
                                    idempotency_key="webhook:w1")
    assert duplicate.event_id == "q1"
    claimed = await queue.claim("new", timeout=1)
    assert claimed is not None and claimed.event_id == "p1"
    await queue.complete(claimed, "new")
    assert await queue.migrate_legacy_keys() == 0  # nothing left to move
    for event_id in ("q1", "r1", fresh.event_id):
        await queue.delete(event_id)


async def test_a_starting_processor_moves_the_old_queue_and_runs_its_events(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    import asyncio

    from event_processor.commands.base import CommandContext
    from event_processor.core.event_processor import EventProcessor
    from event_queue import Event
    from tests.processor.conftest import fast_settings
    from tests.processor.harness import wait_until

    await legacy_event(redis_client, "q1", "DU1", "queued")
    await redis_client.rpush("rebalance_queue", "q1")
    ran: list[str] = []

    async def command(event: Event, context: CommandContext) -> dict[str, bool]:
        ran.append(event.event_id)
        return {"ok": True}

    processor = EventProcessor.from_settings(fast_settings(redis_url),
                                             {c.value: command for c in ExecCommand})
    running = asyncio.create_task(processor.run())
    try:
        async def done() -> bool:
            return ran == ["q1"] and not await redis_client.exists("event:q1")

        await wait_until(done, timeout=10)
    finally:
        processor.request_stop("test over")
        await asyncio.wait_for(running, 20)
        await processor.close()
    assert await redis_client.keys("rebalance_queue") == []
