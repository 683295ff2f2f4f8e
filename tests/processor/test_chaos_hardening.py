"""Chaos beyond crashes: Redis paused longer than a lease while two processors hold commands for
one account (never two commands at once), a command whose result holds NaN, a lock taken by
someone else or gone while a command runs, and Redis out of memory while commands run."""

from __future__ import annotations

import asyncio
import math
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from event_processor.commands.base import CommandContext
from event_queue import Event, EventQueue, ExecCommand, NewEvent, keys
from event_queue.invariants import assert_consistent
from event_queue.redis_server import RedisServer
from tests.processor.conftest import SpawnProcessor, StartProcessor
from tests.processor.harness import read_records, wait_until


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(data_dir=str(tmp_path)).start()
    yield server
    server.stop()


@pytest.fixture
async def own_queue(own_redis: RedisServer) -> AsyncIterator[EventQueue]:
    queue = EventQueue.from_url(own_redis.url)
    yield queue
    await queue.close()


def runs(path: Path) -> list[tuple[float, float, str, int]]:
    """Every command run recorded: (start, end, event id, pid); a run still going ends at +inf."""
    out = []
    open_runs: dict[tuple[str, int], float] = {}
    for line in read_records(path):
        key = (line["event_id"], line["pid"])
        if line["what"] == "start":
            open_runs[key] = line["t"]
        elif key in open_runs:
            out.append((open_runs.pop(key), line["t"], *key))
    out += [(start, math.inf, *key) for key, start in open_runs.items()]
    return sorted(out)


def overlaps(path: Path) -> list[tuple[Any, Any]]:
    spans = runs(path)
    return [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if b[0] < a[1]]


@pytest.mark.slow
async def test_redis_paused_past_a_lease_never_lets_two_commands_run_for_one_account(
    own_redis: RedisServer, own_queue: EventQueue, spawn_processor: SpawnProcessor,
    tmp_path: Path,
) -> None:
    record = tmp_path / "runs.jsonl"
    first = await own_queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE,
                                             data={"sleep": 8}))
    # The first processor renews rarely, so that after the pause the second one's lock attempt
    # usually reaches Redis first: only the first one's own clock can then keep them apart.
    processes = [spawn_processor(own_redis.url, record_file=record, lease_seconds=2.0,
                                 renew_interval=1.5)]
    await wait_until(lambda: _started(record, 1), timeout=15)
    processes.append(spawn_processor(own_redis.url, record_file=record))
    second = await own_queue.enqueue(NewEvent(account_id="DU1",
                                              exec_command=ExecCommand.PRINT_POSITIONS,
                                              data={"sleep": 0.5}))
    await wait_until(lambda: _claimed(own_queue, 2), timeout=10)

    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)  # longer than the leases and the lock
    await asyncio.sleep(4.0)
    own_redis.process.send_signal(signal.SIGCONT)

    async def both_done() -> bool:
        finished = {e.event_id for e in (await own_queue.history()).entries}
        return {first.event_id, second.event_id} <= finished

    await wait_until(both_done, timeout=40, interval=0.2)
    for process in processes:
        process.terminate()
    assert [p.wait(15) for p in processes] == [0, 0]
    assert overlaps(record) == []
    assert any(line["what"] == "cancelled" and line["event_id"] == first.event_id
               for line in read_records(record)), "the unsure command was stopped"
    async with aioredis.Redis.from_url(own_redis.url, decode_responses=True) as redis:
        await assert_consistent(redis)


async def _started(path: Path, count: int) -> bool:
    return len([r for r in read_records(path) if r["what"] == "start"]) >= count


async def _claimed(queue: EventQueue, count: int) -> bool:
    return (await queue.stats()).processing >= count


class Scripted:
    """A command whose behaviour a test sets: a result, or a wait on an event."""

    def __init__(self, result: Any = None, *, hold: float = 0.0) -> None:
        self.result, self.hold = result, hold
        self.started = asyncio.Event()
        self.cancelled = 0

    async def __call__(self, event: Event, context: CommandContext) -> Any:
        self.started.set()
        try:
            await asyncio.sleep(self.hold)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return self.result


def registry(command: Scripted) -> dict[str, Any]:
    return {c.value: command for c in ExecCommand}


async def test_a_nan_result_completes_the_event_with_the_nan_kept_as_text(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    command = Scripted({"price": math.nan, "fills": [], "limit": math.inf})
    await start_processor(registry(command))
    added = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))

    async def finished() -> bool:
        return bool((await queue.history()).entries)

    await wait_until(finished, timeout=10)
    (entry,) = (await queue.history()).entries
    assert entry.event_id == added.event_id and entry.outcome == "completed"
    assert entry.result == {"price": "NaN", "fills": [], "limit": "Infinity"}
    stats = await queue.stats()
    assert stats.inconsistencies == [] and stats.active_events == 0  # the dedup key went too


async def test_a_lock_taken_by_another_holder_stops_the_command_and_fails_its_event(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    command = Scripted({"ok": True}, hold=30)
    processor = await start_processor(registry(command), lease_seconds=1.5)
    added = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    await asyncio.wait_for(command.started.wait(), 10)
    await queue.redis.set(keys.account_lock("DU1"), "someone-else", px=60_000)

    async def failed() -> bool:
        return (await queue.get(added.event_id)).times_queued == 2

    await wait_until(failed, timeout=10)
    stored = await queue.get(added.event_id)
    assert command.cancelled == 1
    assert "AccountLockLost" in (stored.last_error or "")
    assert await queue.redis.get(keys.account_lock("DU1")) == "someone-else"  # left alone
    processor.request_stop("test over")
    await queue.redis.delete(keys.account_lock("DU1"))


async def test_a_vanished_lock_is_taken_again_and_the_command_finishes(
    queue: EventQueue, start_processor: StartProcessor
) -> None:
    command = Scripted({"ok": True}, hold=2.0)
    await start_processor(registry(command), lease_seconds=1.5)
    added = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    await asyncio.wait_for(command.started.wait(), 10)
    lock = keys.account_lock("DU1")
    token = await queue.redis.get(lock)
    await queue.redis.delete(lock)

    async def retaken() -> bool:
        return bool(await queue.redis.get(lock) == token)

    await wait_until(retaken, timeout=5)

    async def finished() -> bool:
        return bool((await queue.history()).entries)

    await wait_until(finished, timeout=10)
    (entry,) = (await queue.history()).entries
    assert entry.event_id == added.event_id and entry.times_queued == 1
    assert command.cancelled == 0


async def test_redis_out_of_memory_while_commands_run_loses_nothing_and_runs_each_once(
    own_redis: RedisServer, own_queue: EventQueue, start_processor: StartProcessor,
) -> None:
    del start_processor  # this test's processor uses its own Redis
    from event_processor.core.event_processor import EventProcessor
    from tests.processor.conftest import fast_settings

    ran: list[str] = []
    gate = asyncio.Event()

    async def gated(event: Event, context: CommandContext) -> dict[str, str]:
        ran.append(event.event_id)
        await gate.wait()
        return {"done": event.event_id}

    processor = EventProcessor.from_settings(fast_settings(own_redis.url, concurrency=4),
                                             {c.value: gated for c in ExecCommand})
    running = asyncio.create_task(processor.run())
    try:
        added = [(await own_queue.enqueue(NewEvent(account_id=f"DU{i}",
                                                   exec_command=ExecCommand.REBALANCE))).event_id
                 for i in range(4)]

        async def all_running() -> bool:
            return len(ran) == 4

        await wait_until(all_running, timeout=10)
        redis = own_queue.redis
        used = int((await redis.info("memory"))["used_memory"])
        await redis.config_set("maxmemory", used // 2)  # full: every write is refused
        gate.set()  # the commands finish; their completions are refused (OOM) and retried
        await asyncio.sleep(2.0)
        assert (await own_queue.stats()).total_events == 4  # nothing lost, nothing half-done
        await redis.config_set("maxmemory", 0)

        async def all_completed() -> bool:
            return (await own_queue.stats()).total_events == 0

        await wait_until(all_completed, timeout=15)
        history = {e.event_id: e for e in (await own_queue.history()).entries}
        assert set(history) == set(added)
        assert sorted(ran) == sorted(added)  # each command ran once
        assert {e.times_queued for e in history.values()} == {1}
    finally:
        processor.request_stop("test over")
        await asyncio.wait_for(running, 20)
        await processor.close()
