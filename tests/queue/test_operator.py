"""Operator operations: get, delete, retry now, list, stats, audit; and races against claims."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from event_queue import (
    EventNotFound,
    EventNotWaiting,
    EventProcessing,
    EventQueue,
    EventState,
    ExecCommand,
    NewEvent,
    keys,
)


def new(account: str, command: ExecCommand = ExecCommand.REBALANCE) -> NewEvent:
    return NewEvent(account_id=account, exec_command=command)


async def test_get_unknown_raises(queue: EventQueue) -> None:
    with pytest.raises(EventNotFound):
        await queue.get("nope")


async def test_delete_removes_event_and_dedup_key(queue: EventQueue) -> None:
    result = await queue.enqueue(new("DU1"))

    deleted = await queue.delete(result.event_id)

    assert deleted.event_id == result.event_id
    assert await queue.redis.llen(keys.QUEUE) == 0
    assert await queue.redis.scard(keys.ACTIVE_EVENTS) == 0
    assert not (await queue.enqueue(new("DU1"))).duplicate
    assert (await queue.history()).entries[0].outcome == "deleted"


async def test_delete_of_a_retry_waiting_event_clears_the_requeued_count(
    queue: EventQueue,
) -> None:
    await queue.enqueue(new("DU1"))
    event = await queue.claim("c1", timeout=1)
    assert event is not None
    await queue.fail(event, "c1", "x", requeue_delay=60)
    assert (await queue.stats()).events_requeued == 1

    await queue.delete(event.event_id)

    assert (await queue.stats()).events_requeued == 0


async def test_delete_while_processing_is_refused(queue: EventQueue) -> None:
    await queue.enqueue(new("DU1"))
    event = await queue.claim("c1", timeout=1)
    assert event is not None

    with pytest.raises(EventProcessing):
        await queue.delete(event.event_id)
    assert (await queue.get(event.event_id)).state is EventState.PROCESSING
    await queue.complete(event, "c1")


async def test_delete_unknown_raises(queue: EventQueue) -> None:
    with pytest.raises(EventNotFound):
        await queue.delete("missing")


async def test_delete_racing_claim_never_loses_an_event_nor_leaves_a_key(
    queue: EventQueue, redis_url: str
) -> None:
    claimer = EventQueue.from_url(redis_url)
    rng = random.Random(7)
    outcomes = {"deleted": 0, "claimed": 0}
    for i in range(60):
        result = await queue.enqueue(new(f"DU{i}"))
        delay = rng.random() * 0.002

        async def delete_later(event_id: str = result.event_id, pause: float = delay) -> str:
            await asyncio.sleep(pause)
            try:
                await queue.delete(event_id)
                return "deleted"
            except EventProcessing:
                return "refused"

        deleted, claimed = await asyncio.gather(
            delete_later(), claimer.claim("c1", timeout=0.05)
        )
        if claimed is not None:
            assert deleted == "refused"
            outcomes["claimed"] += 1
            await claimer.complete(claimed, "c1")
        else:
            assert deleted == "deleted"
            outcomes["deleted"] += 1
        assert await queue.redis.scard(keys.ACTIVE_EVENTS) == 0
    await claimer.close()
    assert sum(outcomes.values()) == 60


async def test_retry_now_moves_a_waiting_event_to_the_head(queue: EventQueue) -> None:
    await queue.enqueue(new("DU1"))
    event = await queue.claim("c1", timeout=1)
    assert event is not None
    await queue.fail(event, "c1", "x", requeue_delay=3600)
    await queue.enqueue(new("DU2"))

    moved = await queue.retry_now(event.event_id)

    assert moved.state is EventState.QUEUED and moved.times_queued == 2
    assert await queue.redis.lindex(keys.QUEUE, 0) == event.event_id
    with pytest.raises(EventNotWaiting):
        await queue.retry_now(event.event_id)
    with pytest.raises(EventNotFound):
        await queue.retry_now("missing")


async def test_list_filters_and_paginates(queue: EventQueue) -> None:
    for i in range(5):
        await queue.enqueue(new(f"DU{i}"))
    await queue.enqueue(new("DU0", ExecCommand.CANCEL_ORDERS))
    claimed = await queue.claim("c1", timeout=1)
    assert claimed is not None

    everything = await queue.list(limit=4)
    assert everything.total == 6 and len(everything.events) == 4
    assert [e.account_id for e in everything.events] == ["DU0", "DU1", "DU2", "DU3"]
    second = await queue.list(limit=4, offset=4)
    assert [e.exec_command for e in second.events] == ["rebalance", "cancel-orders"]

    queued = await queue.list(state=EventState.QUEUED)
    assert queued.total == 5 and claimed.event_id not in {e.event_id for e in queued.events}
    assert (await queue.list(state=EventState.PROCESSING)).events[0].event_id == claimed.event_id
    assert (await queue.list(account_id="DU0")).total == 2
    by_account_cmd = await queue.list(account_id="DU0", exec_command="cancel-orders")
    assert by_account_cmd.total == 1
    assert (await queue.list(exec_command="rebalance")).total == 5
    both = await queue.list(state=EventState.QUEUED, exec_command="rebalance")
    assert both.total == 4
    assert (await queue.list(state=EventState.RETRY_WAIT)).total == 0
    await queue.complete(claimed, "c1")


async def test_stats_counts_without_scanning(queue: EventQueue) -> None:
    for i in range(4):
        await queue.enqueue(new(f"DU{i}"))
    first = await queue.claim("c1", timeout=1)
    second = await queue.claim("c1", timeout=1)
    assert first is not None and second is not None
    await queue.fail(second, "c1", "boom", requeue_delay=60)

    stats = await queue.stats()

    assert stats.queue_length == 2
    assert stats.processing == 1
    assert stats.retry_waiting == 1
    assert stats.active_events == 4
    assert stats.events_requeued == 1
    assert stats.total_events == 4
    assert stats.oldest_event is not None
    assert stats.oldest_event.event_id == second.event_id  # the first is processing
    assert stats.oldest_event_age_seconds is not None and stats.oldest_event_age_seconds >= 0
    assert [s.event_id for s in stats.requeued_sample] == [second.event_id]
    assert stats.requeued_sample[0].last_error == "boom"
    await queue.complete(first, "c1")


async def test_stats_of_an_empty_queue(queue: EventQueue) -> None:
    stats = await queue.stats()
    assert (stats.queue_length, stats.events_requeued, stats.oldest_event) == (0, 0, None)
    assert stats.requeued_sample == []


async def test_stats_read_everything_a_health_check_needs_in_one_round_trip(
    queue: EventQueue,
) -> None:
    for i in range(3):
        await queue.enqueue(new(f"DU{i}"))
    claimed = await queue.claim("c1", timeout=1)
    assert claimed is not None
    await queue.fail(claimed, "c1", "boom", requeue_delay=60)
    await queue.heartbeat("p1", {"host": "a"})
    await queue.stats()  # scripts loaded

    with round_trips() as sent:
        stats = await queue.stats(sample_size=5, alive_within=5)
    assert sent == [1]
    assert [(p.consumer_id, p.info) for p in stats.processors] == [("p1", {"host": "a"})]
    assert stats.oldest_event is not None and stats.oldest_event.account_id == "DU0"
    assert [(s.event_id, s.last_error) for s in stats.requeued_sample] == [
        (claimed.event_id, "boom")]
    assert (await queue.stats()).processors == []  # only when asked for


async def test_a_page_of_the_listing_is_one_round_trip(queue: EventQueue) -> None:
    for i in range(5):
        await queue.enqueue(new(f"DU{i}"))
    await queue.list(limit=2)  # scripts loaded
    with round_trips() as sent:
        page = await queue.list(limit=2, offset=1)
    assert sent == [1]
    assert (page.total, [e.account_id for e in page.events]) == (5, ["DU1", "DU2"])
    await queue.redis.delete(keys.event(page.events[0].event_id))  # a record gone: left out
    assert [e.account_id for e in (await queue.list(limit=2, offset=1)).events] == ["DU2"]
    await queue.repair()  # drops the id without a record (the invariant check follows the test)


@contextmanager
def round_trips() -> Iterator[list[int]]:
    """Count the commands sent to Redis inside the block (the list holds the count after it)."""
    from redis.asyncio.connection import Connection

    sent = [0]
    original = Connection.send_packed_command

    async def counting(self: Connection, command: object, check_health: bool = True) -> None:
        sent[0] += 1
        await original(self, command, check_health)  # type: ignore[arg-type]

    Connection.send_packed_command = counting  # type: ignore[method-assign,assignment]
    try:
        yield sent
    finally:
        Connection.send_packed_command = original  # type: ignore[method-assign]


async def test_audit_log_is_capped_newest_first(queue: EventQueue) -> None:
    for i in range(5):
        await queue.record_audit({"action": "delete", "n": i}, cap=3)
    log = await queue.audit_log()
    assert [e["n"] for e in log] == [4, 3, 2]
    assert all("at" in e for e in log)
