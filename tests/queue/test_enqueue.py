"""Enqueue: atomic dedup by account:command, idempotency keys, batches."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from event_queue import EventQueue, EventState, ExecCommand, NewEvent, keys


def new(account: str = "DU111", command: str = "rebalance", **data: object) -> NewEvent:
    return NewEvent(account_id=account, exec_command=ExecCommand(command), data=dict(data))


async def test_enqueue_stores_event_with_times_queued_one(queue: EventQueue) -> None:
    result = await queue.enqueue(new(strategy="balanced"))

    assert not result.duplicate
    assert result.dedup_key == "DU111:rebalance"
    event = await queue.get(result.event_id)
    assert event.times_queued == 1
    assert event.state is EventState.QUEUED
    assert event.data == {"strategy": "balanced"}
    assert event.created_at.tzinfo is not None
    assert await queue.redis.lrange(keys.QUEUE, 0, -1) == [result.event_id]
    assert await queue.redis.smembers(keys.ACTIVE_EVENTS) == {"DU111:rebalance"}


async def test_duplicate_reports_the_active_event(queue: EventQueue) -> None:
    first = await queue.enqueue(new())
    second = await queue.enqueue(new(strategy="other"))

    assert second.duplicate
    assert second.event_id == first.event_id
    assert await queue.redis.llen(keys.QUEUE) == 1
    assert (await queue.get(first.event_id)).data == {}


async def test_other_commands_of_the_same_account_are_not_duplicates(queue: EventQueue) -> None:
    results = [await queue.enqueue(new(command=c)) for c in ("print-rebalance", "cancel-orders")]

    assert [r.duplicate for r in results] == [False, False]
    assert await queue.redis.scard(keys.ACTIVE_EVENTS) == 2


async def test_two_hundred_concurrent_enqueues_store_exactly_one_event(
    redis_url: str,
) -> None:
    clients = [EventQueue.from_url(redis_url) for _ in range(8)]
    try:
        results = await asyncio.gather(
            *(clients[i % 8].enqueue(new(strategy=str(i))) for i in range(200))
        )
    finally:
        await asyncio.gather(*(c.close() for c in clients))

    queued = [r for r in results if not r.duplicate]
    assert len(queued) == 1
    assert {r.event_id for r in results} == {queued[0].event_id}
    check = aioredis.Redis.from_url(redis_url, decode_responses=True)
    assert await check.llen(keys.QUEUE) == 1
    await check.aclose()


async def test_idempotency_key_is_a_duplicate_even_after_completion(queue: EventQueue) -> None:
    first = await queue.enqueue(new(), idempotency_key="msg_1")
    claimed = await queue.claim("c1", timeout=1)
    assert claimed is not None
    await queue.complete(claimed, "c1", {"ok": True})

    replay = await queue.enqueue(new(), idempotency_key="msg_1")
    fresh = await queue.enqueue(new(), idempotency_key="msg_2")

    assert replay.duplicate and replay.event_id == first.event_id
    assert not fresh.duplicate and fresh.event_id != first.event_id


async def test_idempotency_key_expires(redis_url: str) -> None:
    q = EventQueue.from_url(redis_url, idempotency_seconds=0.05)
    first = await q.enqueue(new(), idempotency_key="msg_1")
    await q.delete(first.event_id)
    await asyncio.sleep(0.1)

    again = await q.enqueue(new(), idempotency_key="msg_1")
    await q.close()

    assert not again.duplicate


async def test_batch_answers_each_event_and_dedups_inside_the_batch(queue: EventQueue) -> None:
    results = await queue.enqueue_many(
        [(new("DU1"), None), (new("DU2"), "w-2"), (new("DU1"), None), (new("DU3"), None)]
    )

    assert [r.duplicate for r in results] == [False, False, True, False]
    assert results[2].event_id == results[0].event_id
    assert await queue.redis.llen(keys.QUEUE) == 3


async def test_empty_batch_does_nothing(queue: EventQueue) -> None:
    assert await queue.enqueue_many([]) == []


async def test_a_new_record_holds_only_fields_with_a_value(queue: EventQueue) -> None:
    plain = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE,
                                         data={"order_type": "MKT"}))
    keyed = await queue.enqueue(NewEvent(account_id="DU2", exec_command=ExecCommand.REBALANCE),
                                idempotency_key="webhook:m1", added_by="10.0.0.7")
    base = {"event_id", "account_id", "exec_command", "dedup_key", "times_queued", "created_at",
            "updated_at", "data", "state"}
    stored = await queue.redis.hgetall(queue.keys.event(plain.event_id))
    assert set(stored) == base  # no empty last_error, consumer, claim, result ...
    assert "" not in stored.values()
    stored = await queue.redis.hgetall(queue.keys.event(keyed.event_id))
    assert set(stored) == base | {"idempotency_key", "added_by"}
    event = await queue.get(plain.event_id)
    assert event is not None
    assert (event.last_error, event.consumer, event.claim_token, event.result) == (
        None, None, None, None)
    assert event.data == {"order_type": "MKT"} and event.malformed is None
