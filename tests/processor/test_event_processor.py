"""The worker in this process against the real test Redis: each arrow of claim → lock → run →
complete / requeue, the lease renewer, the reaper, the heartbeat and the drain."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from event_processor.commands.base import CommandContext
from event_processor.commands.factory import create_registry
from event_processor.config import Settings
from event_processor.core.event_processor import EventProcessor
from event_queue import (
    Event,
    EventQueue,
    EventState,
    ExecCommand,
    FinishedEvent,
    HistoryQuery,
    NewEvent,
    QueueUnavailable,
    keys,
)
from tests.processor.conftest import StartProcessor, fast_settings
from tests.processor.harness import wait_until


class Recorder:
    """A test command: sleeps, fails while asked to, and notes every start and end."""

    def __init__(self, *, sleep: float = 0.0, fail_until: int = 0) -> None:
        self.sleep, self.fail_until = sleep, fail_until
        self.runs: list[dict[str, Any]] = []

    async def __call__(self, event: Event, context: CommandContext) -> dict[str, Any]:
        run = {"event_id": event.event_id, "account_id": event.account_id, "start": time.time(),
               "times_queued": event.times_queued}
        self.runs.append(run)
        try:
            await asyncio.sleep(self.sleep)
        except asyncio.CancelledError:
            run["cancelled"] = True
            raise
        run["end"] = time.time()
        if event.times_queued <= self.fail_until:
            raise RuntimeError("broker said no")
        return {"done": event.exec_command}

    def registry(self) -> dict[str, Recorder]:
        return {command.value: self for command in ExecCommand}


def new(account: str, command: str = "print-positions", **data: Any) -> NewEvent:
    return NewEvent(account_id=account, exec_command=ExecCommand(command), data=data)


async def finished(queue: EventQueue) -> dict[str, FinishedEvent]:
    page = await queue.history(HistoryQuery(limit=1000))
    return {entry.event_id: entry for entry in page.entries}


async def wait_finished(queue: EventQueue, count: int,
                        timeout: float = 10) -> dict[str, FinishedEvent]:
    async def done() -> bool:
        return len(await finished(queue)) >= count

    await wait_until(done, timeout=timeout)
    return await finished(queue)


async def test_a_successful_command_completes_and_drops_the_dedup_key(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    command = Recorder()
    await start_processor(command.registry())
    enqueued = await queue.enqueue(new("DU1"))
    history = await wait_finished(queue, 1)
    entry = history[enqueued.event_id]
    assert (entry.outcome, entry.times_queued) == ("completed", 1)
    assert entry.result == {"done": "print-positions"}
    assert (await queue.stats()).active_events == 0
    assert not (await queue.enqueue(new("DU1"))).duplicate  # the dedup key went with it


async def test_a_failed_command_requeues_with_times_queued_plus_one_and_its_error(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    command = Recorder(fail_until=1)
    processor = await start_processor(command.registry(), requeue_delay=0.5)
    enqueued = await queue.enqueue(new("DU1"))

    async def failed_once() -> bool:
        return (await queue.get(enqueued.event_id)).state is EventState.RETRY_WAIT

    await wait_until(failed_once, timeout=5, interval=0.01)
    waiting = await queue.get(enqueued.event_id)
    assert waiting.times_queued == 2
    assert waiting.last_error == "RuntimeError: broker said no"
    assert waiting.next_attempt_at is not None
    assert (await queue.enqueue(new("DU1"))).duplicate  # the dedup key stays through requeues
    entry = (await wait_finished(queue, 1))[enqueued.event_id]
    assert (entry.outcome, entry.times_queued) == ("completed", 2)
    first, second = command.runs
    assert second["start"] - first["end"] >= 0.45  # the fixed requeue_delay, not sooner
    me = processor.consumer_id
    assert [(s.step, s.attempt, s.consumer, s.outcome, s.error, s.by)
            for s in entry.timeline()] == [
        ("received", None, None, None, None, None), ("queued", None, None, None, None, None),
        ("attempt", 1, me, "failed", "RuntimeError: broker said no", None),
        ("attempt", 2, me, "completed", None, None), ("completed", None, None, None, None, me)]


async def test_the_completed_log_line_summarises_the_result_without_its_values(
    queue: EventQueue, start_processor: StartProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    async def trade(event: Event, context: CommandContext) -> dict[str, Any]:
        return {"account_id": event.account_id, "cash": 123456.78,
                "orders": [{"symbol": "SPY", "status": "Filled"},
                           {"symbol": "AGG", "status": "Filled"},
                           {"symbol": "VTI", "status": "Cancelled"}],
                "symbols": [{"symbol": "SPY"}, {"symbol": "AGG"}]}

    caplog.set_level(logging.INFO, logger="event_processor.core.event_processor")
    await start_processor({c.value: trade for c in ExecCommand})
    enqueued = await queue.enqueue(new("DU1", "rebalance"))
    await wait_finished(queue, 1)
    (line,) = [r for r in caplog.records if r.getMessage() == "event completed"]
    assert line.event_id == enqueued.event_id  # type: ignore[attr-defined]
    assert line.result == (  # type: ignore[attr-defined]
        "orders=3 (Filled 2, Cancelled 1), symbols=2; keys: account_id, cash, orders, symbols")
    assert "123456" not in caplog.text and "SPY" not in caplog.text


async def test_the_processor_removes_records_past_the_retention_while_nothing_finishes(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    await start_processor(Recorder().registry(),
                          history={"max_age_days": 0.5 / 86400, "trim_interval": 0.1})
    enqueued = await queue.enqueue(new("DU1"))
    await wait_finished(queue, 1)

    async def forgotten() -> bool:
        return not await queue.redis.hexists(queue.keys.finished, enqueued.event_id)

    await wait_until(forgotten, timeout=5)
    assert (await queue.history()).entries == []


async def test_the_default_commands_fail_their_events_when_ibkr_is_disabled(
    queue: EventQueue, start_processor: StartProcessor, redis_url: str
) -> None:
    settings = Settings(redis={"url": redis_url})
    registry = create_registry(settings)
    assert set(registry) == {c.value for c in ExecCommand}
    assert "health" not in registry
    await start_processor(registry, ibkr={"enabled": False}, requeue_delay=60, concurrency=6)
    targets = [{"symbol": "SPY", "allocation": 50}]
    ids = [(await queue.enqueue(new("DU1", c.value, allocations=targets))).event_id
           for c in ExecCommand]

    async def all_failed() -> bool:
        return (await queue.stats()).retry_waiting == len(ids)

    await wait_until(all_failed, timeout=5)
    for event_id in ids:
        event = await queue.get(event_id)
        assert event.times_queued == 2
        assert event.last_error is not None
        assert "IBKR adapter not configured" in event.last_error
    assert await finished(queue) == {}


async def test_unknown_and_malformed_records_fail_like_any_event_and_stay_visible(
    queue: EventQueue, redis_client: aioredis.Redis, start_processor: StartProcessor
) -> None:
    unknown = await queue.enqueue(new("DU1", "print-equity"))
    await redis_client.hset(keys.event(unknown.event_id), "exec_command", "health")
    await redis_client.zadd(keys.by_command("health"), {unknown.event_id: 0})
    malformed = await queue.enqueue(new("DU2"))
    await redis_client.hset(keys.event(malformed.event_id), "created_at", "yesterday")
    fine = await queue.enqueue(new("DU3"))
    command = Recorder()
    await start_processor(command.registry(), requeue_delay=60)
    await wait_finished(queue, 1)

    async def both_failed() -> bool:
        return (await queue.stats()).retry_waiting == 2

    await wait_until(both_failed, timeout=5)
    assert [run["event_id"] for run in command.runs] == [fine.event_id]
    health = await queue.get(unknown.event_id)
    assert (health.times_queued, health.last_error) == (2, "UnknownCommand: unknown command "
                                                           "'health'")
    broken = await queue.get(malformed.event_id)
    assert broken.times_queued == 2
    assert broken.last_error is not None and "malformed event record" in broken.last_error


async def test_a_command_longer_than_its_lease_keeps_the_event(
    queue: EventQueue, redis_url: str, start_processor: StartProcessor
) -> None:
    command = Recorder(sleep=2.0)
    await start_processor(command.registry(), lease_seconds=0.5)
    enqueued = await queue.enqueue(new("DU1"))
    other = EventQueue.from_url(redis_url, lease_seconds=0.5)
    reaped: list[str] = []
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:  # another processor's reaper, running hard
            reaped += await other.reap_expired_leases()
            await asyncio.sleep(0.05)
    finally:
        await other.close()
    assert reaped == []
    entry = (await wait_finished(queue, 1))[enqueued.event_id]
    assert (entry.outcome, entry.times_queued) == ("completed", 1)
    assert len(command.runs) == 1


async def test_waiting_for_a_locked_account_counts_nothing_and_keeps_the_lease(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    assert await queue.acquire_account_lock("DU1", "another-processor", ttl=10)
    command = Recorder()
    await start_processor(command.registry(), lease_seconds=0.4, reap_interval=0.05)
    enqueued = await queue.enqueue(new("DU1"))
    await asyncio.sleep(1.5)  # several leases long
    waiting = await queue.get(enqueued.event_id)
    assert (waiting.state, waiting.times_queued) == (EventState.PROCESSING, 1)
    assert command.runs == []
    assert await queue.release_account_lock("DU1", "another-processor")
    entry = (await wait_finished(queue, 1))[enqueued.event_id]
    assert entry.times_queued == 1


async def test_a_claim_that_takes_the_lock_an_earlier_event_here_waits_for_gives_it_back(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    # The first event waits here for DU1's lock, held elsewhere. The lock is freed just before
    # the second event is claimed: the claim takes it, but the first event holds the account's
    # place in this process. Both must finish well before the lock's ttl (a lease) could free them.
    assert await queue.acquire_account_lock("DU1", "another-processor", ttl=30)
    command = Recorder()
    await start_processor(command.registry(), lease_seconds=6, lock_poll_interval=0.5)
    first = await queue.enqueue(new("DU1", "print-positions"))

    async def waiting() -> bool:
        return (await queue.get(first.event_id)).state is EventState.PROCESSING

    await wait_until(waiting, timeout=5)
    assert await queue.release_account_lock("DU1", "another-processor")
    second = await queue.enqueue(new("DU1", "print-equity"))
    started = time.monotonic()
    done = await wait_finished(queue, 2, timeout=10)
    assert time.monotonic() - started < 3
    assert {first.event_id, second.event_id} <= set(done)
    runs = sorted(command.runs, key=lambda r: r["start"])
    assert [r["event_id"] for r in runs] == [first.event_id, second.event_id]
    assert runs[0]["end"] <= runs[1]["start"]
    assert await queue.redis.get(keys.account_lock("DU1")) is None


async def test_a_reclaimed_running_event_takes_over_the_lock_its_new_claim_took(
    queue: EventQueue, redis_url: str, start_processor: StartProcessor
) -> None:
    # Redis lost the account lock and the reaper put the running event back (as after an outage
    # longer than a lease); this processor claims it again, and that claim takes the free lock
    # under a new token. The running command must carry on under it: renewing with the old token
    # would find "another holder" and stop the command.
    command = Recorder(sleep=1.5)
    await start_processor(command.registry(), lease_seconds=6)
    enqueued = await queue.enqueue(new("DU1"))

    async def running() -> bool:
        return len(command.runs) == 1

    await wait_until(running, timeout=5)
    reaper = EventQueue.from_url(redis_url, lease_seconds=0.1)
    try:
        await queue.redis.delete(keys.account_lock("DU1"))
        await queue.redis.zadd(keys.LEASES, {enqueued.event_id: 0})
        assert await reaper.reap_expired_leases(grace_seconds=0) == [enqueued.event_id]
    finally:
        await reaper.close()
    entry = (await wait_finished(queue, 1))[enqueued.event_id]
    assert (entry.outcome, len(command.runs)) == ("completed", 1)
    assert "cancelled" not in command.runs[0]
    assert await queue.redis.get(keys.account_lock("DU1")) is None


async def test_events_of_one_account_never_overlap_but_other_accounts_run_alongside(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    command = Recorder(sleep=0.1)
    await start_processor(command.registry(), concurrency=6)
    for account in ("DU1", "DU2"):
        for c in list(ExecCommand)[:3]:
            await queue.enqueue(new(account, c.value))
    await wait_finished(queue, 6)
    for account in ("DU1", "DU2"):
        runs = sorted((r for r in command.runs if r["account_id"] == account),
                      key=lambda r: r["start"])
        assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(runs))
    firsts = [min(r["start"] for r in command.runs if r["account_id"] == a) for a in ("DU1", "DU2")]
    assert abs(firsts[0] - firsts[1]) < 0.08  # the two accounts did run at the same time


async def test_the_reaper_requeues_the_event_of_a_dead_processor(
    queue: EventQueue, redis_url: str, start_processor: StartProcessor
) -> None:
    enqueued = await queue.enqueue(new("DU1"))
    dead = EventQueue.from_url(redis_url, lease_seconds=0.3)
    try:
        assert await dead.claim("dead-processor", timeout=1) is not None
    finally:
        await dead.close()
    command = Recorder()
    processor = await start_processor(command.registry(), reap_interval=0.1)
    entry = (await wait_finished(queue, 1))[enqueued.event_id]
    assert entry.times_queued == 2
    assert "processor dead-processor was lost" in (entry.last_error or "")
    attempts = [(s.attempt, s.consumer, s.outcome) for s in entry.timeline() if s.step == "attempt"]
    assert attempts == [(1, "dead-processor", "lease_expired"),
                        (2, processor.consumer_id, "completed")]


async def test_the_heartbeat_says_what_the_processor_does_and_goes_on_stop(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    processor = await start_processor(Recorder().registry(), concurrency=3)

    async def seen() -> bool:
        return bool(await queue.alive_processors(within=5))

    await wait_until(seen, timeout=5)
    (alive,) = await queue.alive_processors(within=5)
    assert alive.consumer_id == processor.consumer_id
    assert alive.info["concurrency"] == 3
    processor.request_stop("test")

    async def forgotten() -> bool:
        return not await queue.alive_processors(within=5)

    await wait_until(forgotten, timeout=5)


async def test_stop_hands_back_a_command_that_outlives_the_grace_without_counting_it(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    command = Recorder(sleep=30)
    processor = await start_processor(command.registry(), shutdown_grace=0.3)
    enqueued = await queue.enqueue(new("DU1"))

    async def started() -> bool:
        return bool(command.runs)

    await wait_until(started, timeout=5)
    processor.request_stop("test")

    async def handed_back() -> bool:
        return (await queue.get(enqueued.event_id)).state is EventState.QUEUED

    await wait_until(handed_back, timeout=5)
    event = await queue.get(enqueued.event_id)
    assert (event.times_queued, event.consumer) == (1, None)
    assert command.runs[0].get("cancelled") is True
    assert (await queue.list(state=EventState.QUEUED)).events[0].event_id == enqueued.event_id


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_many_events_all_complete_once(
    queue: EventQueue, start_processor: StartProcessor, concurrency: int
) -> None:
    command = Recorder()
    await start_processor(command.registry(), concurrency=concurrency)
    results = await queue.enqueue_many(
        [(new(f"DU{i}", c.value), None) for i in range(20) for c in ExecCommand])
    history = await wait_finished(queue, len(results))
    assert set(history) == {r.event_id for r in results}
    assert sorted(r["event_id"] for r in command.runs) == sorted(history)


async def test_events_waiting_for_a_busy_account_do_not_starve_other_accounts(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    command = SlowFor("DU1", seconds=1.0)
    await start_processor(command.registry(), concurrency=2, max_waiting=8)
    busy = [(await queue.enqueue(new("DU1", c.value))).event_id for c in list(ExecCommand)[:4]]
    other = await queue.enqueue(new("DU2"))
    history = await wait_finished(queue, 5)
    first_busy_end = min(r["end"] for r in command.runs if r["account_id"] == "DU1")
    other_run = next(r for r in command.runs if r["event_id"] == other.event_id)
    assert other_run["end"] < first_busy_end  # DU2 did not wait behind DU1's queue of events
    assert {history[i].times_queued for i in [*busy, other.event_id]} == {1}


async def test_without_parking_a_busy_account_holds_every_slot(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    command = SlowFor("DU1", seconds=0.5)
    await start_processor(command.registry(), concurrency=2, max_waiting=0)
    for c in list(ExecCommand)[:3]:
        await queue.enqueue(new("DU1", c.value))
    other = await queue.enqueue(new("DU2"))
    await wait_finished(queue, 4)
    first_busy_end = min(r["end"] for r in command.runs if r["account_id"] == "DU1")
    other_run = next(r for r in command.runs if r["event_id"] == other.event_id)
    assert other_run["start"] >= first_busy_end  # the contrast that shows parking matters


class SlowFor(Recorder):
    """Sleeps only for one account."""

    def __init__(self, account: str, *, seconds: float) -> None:
        super().__init__()
        self.account, self.seconds = account, seconds

    async def __call__(self, event: Event, context: CommandContext) -> dict[str, Any]:
        self.sleep = self.seconds if event.account_id == self.account else 0.0
        return await super().__call__(event, context)


async def test_the_reaper_holds_off_for_one_lease_after_redis_comes_back(
    queue: EventQueue, redis_url: str
) -> None:
    enqueued = await queue.enqueue(new("DU1"))
    dead = EventQueue.from_url(redis_url, lease_seconds=0.1)
    try:
        assert await dead.claim("dead-processor", timeout=1) is not None
    finally:
        await dead.close()
    processor = EventProcessor.from_settings(fast_settings(redis_url, lease_seconds=0.5), {})
    try:
        await asyncio.sleep(0.2)  # the dead processor's lease has run out
        processor.outage.failed("claim", QueueUnavailable("test"))
        processor.outage.recovered()
        await processor.reap_expired()
        assert (await queue.get(enqueued.event_id)).state is EventState.PROCESSING
        await asyncio.sleep(0.5)
        await processor.reap_expired()
        assert (await queue.get(enqueued.event_id)).times_queued == 2
    finally:
        await processor.close()
