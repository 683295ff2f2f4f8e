"""Real ``python -m event_processor`` processes against real Redis servers: SIGTERM drain, account
exclusion across processes, ten SIGKILLs in a run, and Redis itself SIGKILLed and restarted."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from event_queue import (
    EventQueue,
    EventState,
    ExecCommand,
    FinishedEvent,
    HistoryQuery,
    NewEvent,
    Outcome,
    QueueUnavailable,
)
from event_queue.invariants import assert_consistent
from event_queue.redis_server import RedisServer
from tests.processor.conftest import SpawnProcessor
from tests.processor.harness import (
    ProcessorProcess,
    claimed_twice,
    interrupted_claims,
    not_run_again,
    read_records,
    runs_by_event,
    wait_until,
)

COMMANDS = [c.value for c in ExecCommand]


def new(account: str, command: str, **data: Any) -> NewEvent:
    return NewEvent(account_id=account, exec_command=ExecCommand(command), data=data)


async def completed(queue: EventQueue) -> dict[str, FinishedEvent]:
    page = await queue.history(HistoryQuery(outcome=Outcome.COMPLETED, limit=1000))
    return {e.event_id: e for e in page.entries}


async def wait_completed(queue: EventQueue, ids: set[str], timeout: float) -> dict[str, Any]:
    async def all_done() -> bool:
        return ids <= set(await completed(queue))

    await wait_until(all_done, timeout=timeout, interval=0.1)
    return await completed(queue)


async def wait_records(path: Path, count: int, what: str = "start", timeout: float = 10) -> None:
    async def enough() -> bool:
        return len([r for r in read_records(path) if r["what"] == what]) >= count

    await wait_until(enough, timeout=timeout)


def intervals(path: Path) -> dict[str, list[tuple[float, float, int]]]:
    """Per account: (start, end, pid) of every run that finished."""
    per_account: dict[str, list[tuple[float, float, int]]] = {}
    for runs in runs_by_event(read_records(path)).values():
        starts = [r for r in runs if r["what"] == "start"]
        ends = [r for r in runs if r["what"] in ("end", "fail")]
        for start, end in zip(starts, ends, strict=False):
            per_account.setdefault(start["account_id"], []).append(
                (start["t"], end["t"], start["pid"]))
    return per_account


def stop_all(processes: list[ProcessorProcess], timeout: float = 15) -> list[int]:
    for process in processes:
        process.terminate()
    return [process.wait(timeout) for process in processes]


async def test_sigterm_finishes_short_commands_hands_back_the_rest_and_exits_0(
    queue: EventQueue, redis_url: str, spawn_processor: SpawnProcessor, tmp_path: Path,
    processor_python: str,
) -> None:
    record = tmp_path / "runs.jsonl"
    processor = spawn_processor(redis_url, record_file=record, concurrency=3, shutdown_grace=2.0,
                                python=processor_python)
    short = await queue.enqueue(new("DU1", "print-positions", sleep=1.0))
    long = await queue.enqueue(new("DU2", "rebalance", sleep=30))
    await wait_records(record, 2)
    waiting = await queue.enqueue(new("DU1", "print-orders", sleep=0.1))

    async def claimed() -> bool:
        return (await queue.get(waiting.event_id)).state is EventState.PROCESSING

    await wait_until(claimed, timeout=5)
    stopped_at = time.monotonic()
    processor.terminate()
    assert processor.wait(timeout=15) == 0
    assert 1.8 <= time.monotonic() - stopped_at < 6  # the grace, then a quick hand-back
    runs = runs_by_event(read_records(record))
    assert [r["what"] for r in runs[short.event_id]] == ["start", "end"]
    assert [r["what"] for r in runs[long.event_id]] == ["start", "cancelled"]
    assert waiting.event_id not in runs  # never started once the stop was asked
    assert (await completed(queue))[short.event_id].times_queued == 1
    for handed_back in (long.event_id, waiting.event_id):
        event = await queue.get(handed_back)
        assert (event.state, event.times_queued, event.last_error) == (EventState.QUEUED, 1, None)
        # A claim under way when the stop came may take the event again: handed back again.
        attempts = [s for s in event.timeline() if s.step == "attempt"]
        assert [(s.attempt, s.outcome, s.error) for s in attempts] == [
            (n, "handed_back", None) for n in range(1, len(attempts) + 1)]
        assert attempts and all(s.consumer and s.duration_ms is not None for s in attempts)
    head = (await queue.list(state=EventState.QUEUED)).events
    assert {e.event_id for e in head} == {long.event_id, waiting.event_id}
    assert await queue.alive_processors(within=60) == []
    logged = {(line.get("msg"), line.get("event_id")) for line in processor.log_lines()}
    assert ("event task cancelled; handing the event back", long.event_id) in logged
    assert ("event handed back", long.event_id) in logged
    (done,) = [line for line in processor.log_lines() if line.get("msg") == "event completed"]
    assert (done["event_id"], done["result"]) == (short.event_id, "keys: pid, slept")


async def test_two_processors_never_overlap_commands_of_one_account(
    queue: EventQueue, redis_url: str, spawn_processor: SpawnProcessor, tmp_path: Path
) -> None:
    record = tmp_path / "runs.jsonl"
    processes = [spawn_processor(redis_url, record_file=record, concurrency=3) for _ in range(2)]
    ids: set[str] = set()
    for _ in range(4):
        batch = [(new(account, command, sleep=[0.02, 0.08]), None)
                 for account in ("DU1", "DU2") for command in COMMANDS]
        ids |= {r.event_id for r in await queue.enqueue_many(batch)}
        history = await wait_completed(queue, ids, timeout=30)
    assert stop_all(processes) == [0, 0]
    assert {history[i].times_queued for i in ids} == {1}  # waiting for the account counts nothing
    for account, runs in intervals(record).items():
        runs.sort()
        overlaps = [(a, b) for a, b in itertools.pairwise(runs) if b[0] < a[1]]
        assert overlaps == [], account
        assert len({pid for _, _, pid in runs}) == 2, "both processors worked on the account"


@pytest.mark.slow
async def test_chaos_ten_sigkills_lose_nothing(
    queue: EventQueue, redis_url: str, spawn_processor: SpawnProcessor, tmp_path: Path,
) -> None:
    await sigkill_chaos(queue, redis_url, spawn_processor, tmp_path, kills=10, accounts=50)


async def sigkill_chaos(
    queue: EventQueue, redis_url: str, spawn_processor: SpawnProcessor, tmp_path: Path,
    *, kills: int, accounts: int,
) -> None:
    """Three processors, one event per account and command, ``kills`` SIGKILLs while they run:
    every event completes, none is lost, no dedup key is left, interrupted ones ran again."""
    record, rng = tmp_path / "runs.jsonl", random.Random(7)
    options = {"record_file": record, "concurrency": 3, "lease_seconds": 1.0}
    processes = [spawn_processor(redis_url, **options) for _ in range(3)]
    batch = [(new(f"DU{a}", c, sleep=[0.02, 0.4], fail_until=int(rng.random() < 0.1)), None)
             for a in range(accounts) for c in COMMANDS]
    ids = {r.event_id for r in await queue.enqueue_many(batch)}
    assert len(ids) == accounts * len(COMMANDS)
    await wait_records(record, 10)
    killed: set[int] = set()
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(0.3, 0.9))
        victim = rng.randrange(len(processes))
        killed.add(processes[victim].pid)
        processes[victim].kill()
        processes[victim] = spawn_processor(redis_url, **options)
    history = await wait_completed(queue, ids, timeout=60)
    assert stop_all(processes) == [0, 0, 0]

    assert set(history) == ids  # every event completed, none lost
    assert (await queue.stats()).total_events == 0
    await assert_consistent(queue.redis)  # no orphaned dedup key
    runs = runs_by_event(read_records(record))
    assert all(any(r["what"] == "end" for r in runs[i]) for i in ids)
    assert not claimed_twice(runs)  # a claim runs the command once; a later one counts one more
    interrupted = interrupted_claims(runs, killed)
    assert len({i for i, _ in interrupted}) >= kills // 2, "the kills should hit running commands"
    final = {i: event.times_queued for i, event in history.items()}
    assert not (missed := not_run_again(runs, interrupted, final)), [runs[i] for i, _ in missed]


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A Redis server of this test only (AOF ``appendfsync always``), which it may kill."""
    data = tmp_path / "redis-data"
    data.mkdir()
    server = RedisServer(appendfsync="always", data_dir=str(data)).start()
    try:
        yield server
    finally:
        server.stop()


async def enqueue_until_acknowledged(queue: EventQueue, event: NewEvent) -> str:
    """Retry while Redis is down; a duplicate answer names the event an earlier try stored."""
    while True:
        try:
            return (await queue.enqueue(event)).event_id
        except QueueUnavailable:
            await asyncio.sleep(0.05)


async def produce(queue: EventQueue, events: list[NewEvent]) -> list[str]:
    """Enqueue one event every 20 ms, each retried until Redis acknowledges it."""
    acknowledged = []
    for event in events:
        acknowledged.append(await enqueue_until_acknowledged(queue, event))
        await asyncio.sleep(0.02)
    return acknowledged


@pytest.mark.slow
async def test_redis_sigkilled_and_restarted_loses_no_acknowledged_event(
    own_redis: RedisServer, spawn_processor: SpawnProcessor, tmp_path: Path
) -> None:
    record = tmp_path / "runs.jsonl"
    processes = [spawn_processor(own_redis.url, record_file=record, concurrency=3)
                 for _ in range(2)]
    queue = EventQueue.from_url(own_redis.url, timeout=0.5)
    try:
        producer = asyncio.create_task(produce(queue, [
            new(f"DU{a}", c, sleep=[0.01, 0.1]) for a in range(25) for c in COMMANDS]))
        for down_at, down_for in ((0.4, 1.5), (1.5, 1.0)):
            await asyncio.sleep(down_at)
            own_redis.kill()
            await asyncio.sleep(down_for)
            own_redis.start()
        acknowledged = set(await asyncio.wait_for(producer, 30))
        assert len(acknowledged) == 150
        history = await wait_completed(queue, acknowledged, timeout=60)
        assert all(p.alive() for p in processes), "a processor died with Redis"
        assert stop_all(processes) == [0, 0]
        assert acknowledged <= set(history)
        assert (await queue.stats()).total_events == 0
        await assert_consistent(queue.redis)
    finally:
        await queue.close()
    logged = [line.get("msg") for p in processes for line in p.log_lines()]
    assert "redis unreachable, retrying with a fixed delay" in logged
    assert "redis reachable again" in logged
