"""Claim, lease, renew, complete, fail, promote, reap and release on a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from event_queue import (
    Event,
    EventNotFound,
    EventQueue,
    EventState,
    ExecCommand,
    LeaseLost,
    NewEvent,
    Retention,
    keys,
)


async def enqueue_and_claim(queue: EventQueue, account: str = "DU1", consumer: str = "c1") -> Event:
    await queue.enqueue(NewEvent(account_id=account, exec_command=ExecCommand.REBALANCE))
    event = await queue.claim(consumer, timeout=1)
    assert event is not None
    return event


async def test_claim_takes_events_in_fifo_order_under_a_lease(queue: EventQueue) -> None:
    ids = [
        (await queue.enqueue(NewEvent(account_id=f"DU{i}", exec_command=ExecCommand.REBALANCE)))
        .event_id
        for i in range(3)
    ]
    claimed = [await queue.claim("c1", timeout=1) for _ in ids]

    assert [e.event_id for e in claimed if e] == ids
    assert all(e and e.state is EventState.PROCESSING and e.consumer == "c1" for e in claimed)
    assert await queue.redis.llen(keys.PROCESSING) == 3
    assert await queue.redis.zcard(keys.LEASES) == 3


async def test_claim_returns_none_after_its_timeout(queue: EventQueue) -> None:
    assert await queue.claim("c1", timeout=0.1) is None


async def test_a_waiting_claim_wakes_on_enqueue(queue: EventQueue) -> None:
    waiter = asyncio.create_task(queue.claim("c1", timeout=5))
    await asyncio.sleep(0.05)
    result = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.PRINT_EQUITY))

    event = await asyncio.wait_for(waiter, 2)
    assert event is not None and event.event_id == result.event_id


async def test_complete_removes_event_and_dedup_key_and_keeps_history(queue: EventQueue) -> None:
    event = await enqueue_and_claim(queue)

    assert await queue.complete(event, "c1", {"orders": 2}) == "completed"

    assert await queue.redis.exists(keys.event(event.event_id)) == 0
    assert await queue.redis.scard(keys.ACTIVE_EVENTS) == 0
    (entry,) = (await queue.history()).entries
    assert entry.event_id == event.event_id
    assert entry.outcome == "completed"
    assert entry.result == {"orders": 2}
    again = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    assert not again.duplicate


async def test_finished_records_are_capped_oldest_first(redis_url: str) -> None:
    q = EventQueue.from_url(redis_url, retention=Retention(max_events=3))
    ids = []
    for i in range(5):
        event = await enqueue_and_claim(q, account=f"DU{i}")
        await q.complete(event, "c1")
        ids.append(event.event_id)
    history = (await q.history()).entries
    gone = [await q.redis.hexists(q.keys.finished, i) for i in ids[:2]]
    await q.close()

    assert [h.account_id for h in history] == ["DU4", "DU3", "DU2"]
    assert gone == [False, False]


async def test_fail_counts_keeps_dedup_key_and_waits_requeue_delay(queue: EventQueue) -> None:
    event = await enqueue_and_claim(queue)

    times, due = await queue.fail(event, "c1", "IBKR down", requeue_delay=0.3)

    assert times == 2
    stored = await queue.get(event.event_id)
    assert stored.state is EventState.RETRY_WAIT
    assert stored.last_error == "IBKR down"
    assert stored.next_attempt_at == due
    assert await queue.redis.smembers(keys.ACTIVE_EVENTS) == {"DU1:rebalance"}
    dup = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    assert dup.duplicate and dup.event_id == event.event_id
    assert await queue.promote_due_retries() == 0
    assert await queue.claim("c1", timeout=0.05) is None

    await asyncio.sleep(0.35)
    assert await queue.promote_due_retries() == 1
    again = await queue.claim("c1", timeout=1)
    assert again is not None and again.event_id == event.event_id and again.times_queued == 2


async def test_promotion_from_concurrent_promoters_moves_each_event_once(
    queue: EventQueue, redis_url: str
) -> None:
    for i in range(20):
        await queue.fail(await enqueue_and_claim(queue, account=f"DU{i}"), "c1", "x",
                         requeue_delay=0)
    others = [EventQueue.from_url(redis_url) for _ in range(3)]
    moved = await asyncio.gather(*(q.promote_due_retries() for q in [queue, *others]))
    await asyncio.gather(*(q.close() for q in others))

    assert sum(moved) == 20
    assert await queue.redis.llen(keys.QUEUE) == 20


async def test_claim_without_renewal_is_reaped_with_times_queued_two(redis_url: str) -> None:
    q = EventQueue.from_url(redis_url, lease_seconds=0.2)
    event = await enqueue_and_claim(q)
    assert await q.reap_expired_leases() == []

    await asyncio.sleep(0.3)
    assert await q.reap_expired_leases() == [event.event_id]

    stored = await q.get(event.event_id)
    assert stored.times_queued == 2
    assert stored.state is EventState.QUEUED
    assert stored.last_error is not None and "c1" in stored.last_error
    assert "lost" in stored.last_error
    with pytest.raises(LeaseLost):
        await q.renew_lease(event, "c1")
    await q.close()


async def test_renewed_lease_is_not_reaped(redis_url: str) -> None:
    q = EventQueue.from_url(redis_url, lease_seconds=0.3)
    event = await enqueue_and_claim(q)
    for _ in range(4):
        await asyncio.sleep(0.15)
        await q.renew_lease(event, "c1")
        assert await q.reap_expired_leases() == []
    assert (await q.get(event.event_id)).state is EventState.PROCESSING
    await q.complete(event, "c1")
    await q.close()


async def test_a_consumer_dying_between_blmove_and_lease_is_reaped(redis_url: str) -> None:
    q = EventQueue.from_url(redis_url, lease_seconds=0.2)
    result = await q.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    # The first half of a claim, then the process "dies": no lease is ever written.
    await q.redis.blmove(keys.QUEUE, keys.PROCESSING, 1, "LEFT", "RIGHT")

    assert await q.reap_expired_leases() == []  # first pass only grants a grace lease
    await asyncio.sleep(0.3)
    assert await q.reap_expired_leases() == [result.event_id]

    stored = await q.get(result.event_id)
    assert stored.times_queued == 2 and stored.state is EventState.QUEUED
    await q.close()


async def test_complete_after_being_reaped_still_completes_once(redis_url: str) -> None:
    q = EventQueue.from_url(redis_url, lease_seconds=0.1)
    event = await enqueue_and_claim(q)
    await asyncio.sleep(0.2)
    await q.reap_expired_leases()

    assert await q.complete(event, "c1", {"done": 1}) == "completed_late"
    assert await q.redis.llen(keys.QUEUE) == 0
    assert await q.claim("c2", timeout=0.05) is None
    await q.close()


async def _reclaimed(redis_url: str) -> tuple[EventQueue, Event, Event]:
    """An event claimed by c1, reaped, and claimed again by c2."""
    q = EventQueue.from_url(redis_url, lease_seconds=0.1)
    event = await enqueue_and_claim(q, consumer="c1")
    await asyncio.sleep(0.2)
    assert await q.reap_expired_leases() == [event.event_id]
    taken = await q.claim("c2", timeout=1)
    assert taken is not None and taken.claim_token != event.claim_token
    return q, event, taken


async def test_a_late_failure_or_hand_back_does_nothing_to_the_new_claim(redis_url: str) -> None:
    q, event, taken = await _reclaimed(redis_url)
    with pytest.raises(LeaseLost):
        await q.fail(event, "c1", "late failure", requeue_delay=0)
    with pytest.raises(LeaseLost):
        await q.release(event, "c1")
    with pytest.raises(LeaseLost):
        await q.renew_lease(event, "c1")
    stored = await q.get(event.event_id)
    assert (stored.consumer, stored.times_queued, stored.state) == ("c2", 2, EventState.PROCESSING)
    await q.complete(taken, "c2")
    await q.close()


async def test_a_late_completion_finishes_an_event_nobody_runs(redis_url: str) -> None:
    q, event, taken = await _reclaimed(redis_url)
    assert await q.complete(event, "c1", {"done": True}) == "completed_late"
    # The new claim can neither take the account lock nor settle: the work is not run twice.
    with pytest.raises(EventNotFound):
        await q.lock_account(taken, "c2-token", ttl=5)
    with pytest.raises(EventNotFound):
        await q.complete(taken, "c2")
    assert await q.redis.get(q.keys.account_lock(event.account_id)) is None
    await q.close()


async def test_a_late_completion_leaves_an_event_whose_command_runs_elsewhere(
    redis_url: str,
) -> None:
    q, event, taken = await _reclaimed(redis_url)
    assert await q.lock_account(taken, "c2-token", ttl=5)
    with pytest.raises(LeaseLost):
        await q.complete(event, "c1", lock_token="c1-token")
    lock = q.keys.account_lock(event.account_id)
    assert await q.redis.get(lock) == "c2-token"  # never released by someone who does not hold it
    assert (await q.get(event.event_id)).consumer == "c2"
    assert await q.complete(taken, "c2", lock_token="c2-token") == "completed"
    assert await q.redis.get(lock) is None
    await q.close()


async def test_a_stalled_claimer_cannot_lease_an_event_claimed_again(redis_url: str) -> None:
    q = EventQueue.from_url(redis_url, lease_seconds=0.1)
    await q.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    # A claimer moved the id but stalled before its lease; the reaper takes it back.
    moved = await q.redis.lmove(q.keys.queue, q.keys.processing, "LEFT", "RIGHT")
    await q.reap_expired_leases(grace_seconds=0.05)
    await asyncio.sleep(0.1)
    assert await q.reap_expired_leases(grace_seconds=0.05) == [moved]
    taken = await q.claim("c2", timeout=1)
    assert taken is not None
    # The stalled claimer's LEASE now arrives: the event already has an owner.
    assert await q._lease(moved, "c1") is None
    stored = await q.get(moved)
    assert (stored.consumer, stored.claim_token) == ("c2", taken.claim_token)
    await q.complete(taken, "c2")
    await q.close()


async def test_release_returns_to_the_head_without_counting(queue: EventQueue) -> None:
    await queue.enqueue(NewEvent(account_id="DU2", exec_command=ExecCommand.REBALANCE))
    first = await queue.claim("c1", timeout=1)
    assert first is not None
    await queue.enqueue(NewEvent(account_id="DU3", exec_command=ExecCommand.REBALANCE))

    await queue.release(first, "c1")

    stored = await queue.get(first.event_id)
    assert stored.times_queued == 1 and stored.state is EventState.QUEUED
    assert (await queue.redis.lrange(keys.QUEUE, 0, 0)) == [first.event_id]


async def test_account_lock_is_released_by_complete_with_its_token(queue: EventQueue) -> None:
    event = await enqueue_and_claim(queue)
    assert await queue.acquire_account_lock("DU1", "tok-1", ttl=5)
    assert not await queue.acquire_account_lock("DU1", "tok-2", ttl=5)

    await queue.complete(event, "c1", lock_token="tok-1")

    assert await queue.acquire_account_lock("DU1", "tok-2", ttl=5)
    assert not await queue.release_account_lock("DU1", "tok-1")
    assert await queue.release_account_lock("DU1", "tok-2")


async def test_fail_and_release_release_the_lock_only_for_its_owner(queue: EventQueue) -> None:
    event = await enqueue_and_claim(queue)
    await queue.acquire_account_lock("DU1", "other", ttl=5)

    await queue.fail(event, "c1", "x", requeue_delay=0, lock_token="mine")

    assert await queue.redis.get(keys.account_lock("DU1")) == "other"


async def test_account_lock_expires_and_can_be_extended(queue: EventQueue) -> None:
    assert await queue.acquire_account_lock("DU9", "t", ttl=0.1)
    assert await queue.extend_account_lock("DU9", "t", ttl=0.4)
    await asyncio.sleep(0.2)
    assert not await queue.acquire_account_lock("DU9", "u", ttl=1)
    assert not await queue.extend_account_lock("DU9", "u", ttl=1)
    await asyncio.sleep(0.3)
    assert await queue.acquire_account_lock("DU9", "u", ttl=1)


async def test_renew_extends_the_account_lock(redis_url: str) -> None:
    q = EventQueue.from_url(redis_url, lease_seconds=1)
    event = await enqueue_and_claim(q)
    await q.acquire_account_lock("DU1", "tok", ttl=0.2)
    await q.renew_lease(event, "c1", lock_token="tok", lock_seconds=2)
    await asyncio.sleep(0.3)

    assert await q.redis.get(keys.account_lock("DU1")) == "tok"
    await q.complete(event, "c1", lock_token="tok")
    await q.close()


async def test_heartbeats_list_live_processors(queue: EventQueue) -> None:
    await queue.heartbeat("p1", {"host": "a"})
    await queue.heartbeat("p2")

    alive = await queue.alive_processors(within=5)
    assert {p.consumer_id for p in alive} == {"p1", "p2"}
    assert next(p for p in alive if p.consumer_id == "p1").info == {"host": "a"}

    await queue.forget_processor("p2")
    await asyncio.sleep(0.15)
    assert await queue.alive_processors(within=0.1) == []
    assert [p.consumer_id for p in await queue.alive_processors(within=5)] == ["p1"]
