"""The contract's hardening on a real Redis: no script leaves a partial state, results are stored
as sent, malformed records are handled, the account lock follows the claim, the O(1) consistency
check and the operator's repair, and keys that share one hash tag and a prefix."""

from __future__ import annotations

import math

import pytest
from redis.crc import key_slot

from event_queue import (
    AccountLockConflict,
    Event,
    EventQueue,
    EventState,
    ExecCommand,
    InvalidResult,
    LeaseLost,
    NewEvent,
    keys,
)
from event_queue.connections import AnyRedis
from event_queue.invariants import violations


async def claimed(queue: EventQueue, account: str = "DU1") -> Event:
    await queue.enqueue(NewEvent(account_id=account, exec_command=ExecCommand.REBALANCE))
    event = await queue.claim("c1", timeout=1)
    assert event is not None
    return event


async def everything(redis: AnyRedis) -> dict[str, object]:
    state: dict[str, object] = {}
    async for key in redis.scan_iter():
        kind = await redis.type(key)
        if kind == "hash":
            fields = await redis.hgetall(key)
            state[key] = fields
        elif kind == "list":
            state[key] = await redis.lrange(key, 0, -1)
        elif kind == "zset":
            state[key] = await redis.zrange(key, 0, -1)
        elif kind == "set":
            state[key] = sorted(await redis.smembers(key))
        else:
            state[key] = await redis.get(key)
    return state


@pytest.mark.parametrize("result", [math.nan, {"price": math.inf}, [-math.inf]])
async def test_a_result_with_nan_or_infinity_is_refused_before_anything_changes(
    queue: EventQueue, result: object
) -> None:
    event = await claimed(queue)
    assert await queue.lock_account(event, "tok", ttl=5)
    before = await everything(queue.redis)

    with pytest.raises(InvalidResult):
        await queue.complete(event, "c1", result, lock_token="tok")

    assert await everything(queue.redis) == before
    await queue.complete(event, "c1", {"ok": True}, lock_token="tok")


@pytest.mark.parametrize("text", ["[NaN]", '{"x": Infinity}', "1e400", "[1,", ""])
async def test_the_complete_script_itself_refuses_what_is_not_finite_json(
    queue: EventQueue, text: str
) -> None:
    event = await claimed(queue)
    before = await everything(queue.redis)
    k = queue.keys
    outcome = await queue._run(
        "complete",
        [k.queue, k.processing, k.leases, k.retry_wait, k.active_events, k.dedup_index,
         k.requeued, k.events_all, k.finished, k.finished_index, k.event(event.event_id),
         k.by_account("DU1"), k.by_command("rebalance"), k.account_lock("DU1")],
        [event.event_id, event.claim_token, text, "", "c1", 10, 60_000],
    )
    assert outcome == "bad_result"
    assert await everything(queue.redis) == before
    await queue.complete(event, "c1")


async def test_results_are_stored_as_sent_empty_lists_stay_lists(queue: EventQueue) -> None:
    event = await claimed(queue)
    result = {"orders": [], "positions": {}, "note": "ü ✓", "big": 12345678901234567890}
    await queue.complete(event, "c1", result)
    (entry,) = (await queue.history()).entries
    assert entry.result == result
    assert entry.outcome == "completed"


@pytest.mark.parametrize("times", ["abc", "1.5", "", "-3", "1e300"])
async def test_a_malformed_times_queued_cannot_break_fail_or_reap(
    redis_url: str, times: str
) -> None:
    queue = EventQueue.from_url(redis_url, lease_seconds=0.1)  # no reaping guard after start
    event = await claimed(queue)
    await queue.redis.hset(keys.event(event.event_id), "times_queued", times)
    assert (await queue.fail(event, "c1", "boom", requeue_delay=0))[0] == 2
    await queue.promote_due_retries()
    again = await queue.claim("c2", timeout=1)
    assert again is not None
    await queue.redis.hset(keys.event(event.event_id), "times_queued", times)
    await queue.redis.zadd(keys.LEASES, {event.event_id: 0})
    assert await queue.reap_expired_leases() == [event.event_id]
    stored = await queue.get(event.event_id)
    assert (stored.times_queued, stored.state) == (2, EventState.QUEUED)
    assert await queue.redis.zscore(keys.REQUEUED, event.event_id) == 2
    await queue.close()


async def test_a_record_without_account_id_or_dedup_key_is_deleted_without_leaks(
    queue: EventQueue,
) -> None:
    first = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    second = await queue.enqueue(NewEvent(account_id="DU2", exec_command=ExecCommand.REBALANCE))
    await queue.redis.hdel(keys.event(first.event_id), "account_id")
    await queue.redis.hdel(keys.event(second.event_id), "dedup_key")

    assert (await queue.delete(first.event_id)).event_id == first.event_id
    assert (await queue.delete(second.event_id)).event_id == second.event_id

    assert await queue.redis.smembers(keys.ACTIVE_EVENTS) == set()
    assert await queue.redis.hgetall(keys.DEDUP_INDEX) == {}
    assert (await queue.stats()).total_events == 0


async def test_a_completed_record_without_dedup_key_frees_its_key(queue: EventQueue) -> None:
    event = await claimed(queue)
    await queue.redis.hdel(keys.event(event.event_id), "dedup_key")
    await queue.complete(event, "c1")
    again = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    assert not again.duplicate


async def test_renew_takes_a_vanished_lock_again_and_reports_another_holder(
    queue: EventQueue,
) -> None:
    event = await claimed(queue)
    lock = keys.account_lock("DU1")
    assert await queue.lock_account(event, "mine", ttl=5)
    assert await queue.renew_lease(event, "c1", lock_token="mine", lock_seconds=5) == "ok"

    await queue.redis.delete(lock)  # expired during an outage, or lost in a failover
    assert await queue.renew_lease(event, "c1", lock_token="mine", lock_seconds=5) == "retaken"
    assert await queue.redis.get(lock) == "mine"
    assert 0 < await queue.redis.pttl(lock) <= 5000

    await queue.redis.set(lock, "theirs")
    with pytest.raises(AccountLockConflict):
        await queue.renew_lease(event, "c1", lock_token="mine", lock_seconds=5)
    assert await queue.redis.get(lock) == "theirs"
    assert await queue.complete(event, "c1", lock_token="mine") == "completed"
    assert await queue.redis.get(lock) == "theirs"  # not ours: never released
    await queue.redis.delete(lock)


async def test_a_claim_takes_a_free_account_lock_in_the_same_call(queue: EventQueue) -> None:
    await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    claim = await queue.claim_and_lock("c1", timeout=1, lock_token="mine", lock_seconds=5)
    assert claim is not None and claim.lock_token == "mine"
    lock = keys.account_lock("DU1")
    assert await queue.redis.get(lock) == "mine"
    assert 0 < await queue.redis.pttl(lock) <= 5000
    event = claim.event
    assert (event.state, event.consumer, event.attempts) == (EventState.PROCESSING, "c1", 1)
    assert await queue.complete(event, "c1", lock_token="mine") == "completed"
    assert await queue.redis.get(lock) is None


async def test_a_claim_leaves_a_held_account_lock_alone(queue: EventQueue) -> None:
    lock = keys.account_lock("DU1")
    await queue.redis.set(lock, "theirs", px=5000)
    await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    claim = await queue.claim_and_lock("c1", timeout=1, lock_token="mine", lock_seconds=5)
    assert claim is not None and claim.lock_token == ""
    assert await queue.redis.get(lock) == "theirs"
    assert (await queue.get(claim.event.event_id)).state is EventState.PROCESSING
    assert not await queue.lock_account(claim.event, "mine", ttl=5)  # still theirs: wait
    await queue.redis.delete(lock)
    assert await queue.lock_account(claim.event, "mine", ttl=5)


async def test_a_claim_of_a_record_with_a_malformed_attempt_count_restarts_it(
    queue: EventQueue,
) -> None:
    enqueued = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    await queue.redis.hset(keys.event(enqueued.event_id), "attempts", "many")
    claim = await queue.claim_and_lock("c1", timeout=1, lock_token="mine", lock_seconds=5)
    assert claim is not None and claim.event.attempts == 1
    assert claim.lock_token == "mine"


async def test_a_lost_claim_cannot_take_the_account_lock(queue: EventQueue) -> None:
    event = await claimed(queue)
    await queue.release(event, "c1")
    with pytest.raises(LeaseLost):
        await queue.lock_account(event, "tok", ttl=5)
    assert await queue.redis.get(keys.account_lock("DU1")) is None
    again = await queue.claim("c1", timeout=1)
    assert again is not None
    await queue.complete(again, "c1")


async def test_the_counts_are_consistent_through_a_whole_life(queue: EventQueue) -> None:
    assert (await queue.stats()).inconsistencies == []
    event = await claimed(queue)
    await queue.enqueue(NewEvent(account_id="DU2", exec_command=ExecCommand.REBALANCE))
    await queue.fail(event, "c1", "boom", requeue_delay=60)
    stats = await queue.stats()
    assert (stats.queue_length, stats.processing, stats.retry_waiting) == (1, 0, 1)
    assert stats.inconsistencies == []


@pytest.mark.allow_inconsistent
async def test_an_event_in_no_area_is_seen_in_o1_and_repaired(queue: EventQueue) -> None:
    lost = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    twice = await queue.enqueue(NewEvent(account_id="DU2", exec_command=ExecCommand.REBALANCE))
    await queue.redis.lrem(keys.QUEUE, 0, lost.event_id)
    await queue.redis.zadd(keys.RETRY_WAIT, {twice.event_id: 0})
    await queue.redis.rpush(keys.QUEUE, "ghost")
    await queue.redis.hset(keys.DEDUP_INDEX, "DU3:rebalance", "gone")
    await queue.redis.sadd(keys.ACTIVE_EVENTS, "DU3:rebalance", "DU4:rebalance")
    assert (await queue.stats()).inconsistencies

    report = await queue.repair()

    assert "put back in the queue: it was in no area" in report.fixes[lost.event_id]
    assert any("placed 2 times" in f for f in report.fixes[twice.event_id])
    assert report.fixes["ghost"] and report.fixes["gone"]
    assert any("DU4:rebalance" in f for f in report.general)
    assert (await queue.stats()).inconsistencies == []
    assert await violations(queue.redis) == []
    assert (await queue.repair()).fixed == 0  # nothing left to fix


async def test_a_record_missing_from_its_indexes_and_dedup_key_is_restored(
    queue: EventQueue,
) -> None:
    event = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    await queue.redis.zrem(keys.EVENTS_ALL, event.event_id)
    await queue.redis.hdel(keys.DEDUP_INDEX, "DU1:rebalance")
    await queue.redis.srem(keys.ACTIVE_EVENTS, "DU1:rebalance")
    await queue.redis.hset(keys.event(event.event_id), "times_queued", "3")

    report = await queue.repair()

    assert len(report.fixes[event.event_id]) == 3
    duplicate = await queue.enqueue(NewEvent(account_id="DU1",
                                             exec_command=ExecCommand.REBALANCE))
    assert duplicate.duplicate and duplicate.event_id == event.event_id


async def test_every_key_shares_one_hash_tag(queue: EventQueue) -> None:
    event = await claimed(queue)
    assert await queue.lock_account(event, "t", ttl=5)
    await queue.heartbeat("c1")
    await queue.record_audit({"action": "test"})
    await queue.enqueue(NewEvent(account_id="DU2", exec_command=ExecCommand.PRINT_ORDERS),
                        idempotency_key="webhook:1")
    await queue.complete(event, "c1", lock_token="t")
    names = [key async for key in queue.redis.scan_iter()]
    assert len(names) > 8
    assert all(name.startswith("{rebalancer}:") for name in names), names
    assert {key_slot(name.encode()) for name in names} == {key_slot(b"{rebalancer}")}


async def test_a_prefix_keeps_deployments_apart_on_one_redis(
    queue: EventQueue, redis_url: str
) -> None:
    other = EventQueue.from_url(redis_url, key_prefix="staging")
    try:
        mine = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
        theirs = await other.enqueue(NewEvent(account_id="DU1",
                                              exec_command=ExecCommand.REBALANCE))
        assert not theirs.duplicate and theirs.event_id != mine.event_id
        claimed_there = await other.claim("s1", timeout=1)
        assert claimed_there is not None and claimed_there.event_id == theirs.event_id
        await other.complete(claimed_there, "s1")
        assert (await queue.stats()).total_events == 1
        assert all(k.startswith("{staging}:") for k in await queue.redis.keys("*staging*"))
    finally:
        await other.close()


def test_a_prefix_that_could_break_the_tag_is_refused() -> None:
    from event_queue.keys import InvalidKeyPrefix, Keys

    for bad in ["", "a}b", "{x", "a b", "x" * 65]:
        with pytest.raises(InvalidKeyPrefix):
            Keys(bad)


async def test_a_finished_record_that_is_not_json_does_not_break_the_listing(
    queue: EventQueue,
) -> None:
    first = await claimed(queue)
    await queue.complete(first, "c1", {"ok": 1})
    second = await claimed(queue, account="DU2")
    await queue.complete(second, "c1", {"ok": 2})
    await queue.redis.hset(keys.FINISHED, second.event_id, '{"result": 0x10}')
    broken, good = (await queue.history()).entries
    assert (broken.event_id, broken.account_id, broken.exec_command) == (
        second.event_id, "DU2", "rebalance")
    assert broken.malformed == "the record is not a JSON object"
    assert good.result == {"ok": 1}
    assert (await queue.lookup(second.event_id)).malformed is not None
