"""Past one Redis: the whole contract on a real 3-master Redis Cluster (every script on one slot,
the processor-kill chaos test), and a real Sentinel failover that loses no acknowledged event.
Each topology is started from the same binaries as the other tests (Redis 6.2 and Valkey 8)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from event_queue import (
    EventQueue,
    EventState,
    ExecCommand,
    HistoryQuery,
    NewEvent,
    Outcome,
    QueueUnavailable,
)
from event_queue.connections import scan_keys
from event_queue.invariants import assert_consistent
from event_queue.redis_server import RedisBinary
from event_queue.redis_topologies import LocalCluster, LocalSentinel
from tests.processor.conftest import SpawnProcessor
from tests.processor.test_processes import COMMANDS, new, sigkill_chaos, stop_all, wait_completed
from tests.queue.test_servers import BINARIES


@pytest.fixture(scope="module", params=BINARIES, ids=[b.version for b in BINARIES])
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    binary: RedisBinary = request.param
    with LocalCluster(binary) as running:
        yield running


@pytest.fixture
async def cluster_queue(cluster: LocalCluster) -> AsyncIterator[EventQueue]:
    for node in cluster.nodes:
        node.command("FLUSHALL")
    queue = EventQueue.from_url(cluster.url, lease_seconds=0.2)
    yield queue
    await queue.close()


async def test_every_script_runs_on_the_cluster_and_all_keys_share_one_slot(
    cluster: LocalCluster, cluster_queue: EventQueue
) -> None:
    q = cluster_queue
    first = await q.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    await q.enqueue_many([(NewEvent(account_id=f"DU{i}", exec_command=ExecCommand.PRINT_ORDERS),
                           f"webhook:{i}") for i in range(2, 6)])
    event = await q.claim("c1", timeout=1)
    assert event is not None and event.event_id == first.event_id
    assert await q.lock_account(event, "t1", ttl=5)
    assert await q.renew_lease(event, "c1", lock_token="t1", lock_seconds=5) == "ok"
    await q.fail(event, "c1", "boom", requeue_delay=0)
    assert await q.promote_due_retries() == 1
    await q.heartbeat("c1", {"x": 1})
    assert [p.consumer_id for p in await q.alive_processors(within=10)] == ["c1"]
    lost = await q.claim("c1", timeout=1)
    assert lost is not None
    await asyncio.sleep(0.5)
    await q.reap_expired_leases(grace_seconds=0.1)
    again = await q.claim("c2", timeout=1)
    assert again is not None
    assert await q.complete(again, "c2", {"orders": []}) == "completed"
    waiting = (await q.list(state=EventState.QUEUED)).events
    victim = waiting[0]
    await q.delete(victim.event_id)
    await q.record_audit({"action": "test"})
    stats = await q.stats()
    assert stats.inconsistencies == [] and stats.total_events == 3
    assert (await q.repair()).fixed == 0
    assert [e.outcome for e in (await q.history()).entries] == ["deleted", "completed"]
    same = await q.history(HistoryQuery(exec_command=ExecCommand(again.exec_command),
                                        outcome=Outcome.COMPLETED, limit=1))
    assert [e.event_id for e in same.entries] == [again.event_id]
    assert (await q.lookup(again.event_id)).timeline()[-1].step == "completed"
    await q.redis.lpush(q.keys.history, '{"event_id": "old", "outcome": "deleted"}')
    assert await q.migrate_legacy_keys() == 1
    assert await q.trim_finished() == 0
    await assert_consistent(q.redis)

    names = [key async for key in scan_keys(q.redis, "*", near=q.keys.queue)]
    assert names and all(n.startswith("{rebalancer}:") for n in names)
    slots = {int(node.command("CLUSTER", "KEYSLOT", name).strip(":\r\n"))
             for name in names for node in cluster.nodes[:1]}
    assert len(slots) == 1


@pytest.mark.slow
async def test_processor_kill_chaos_passes_on_the_cluster(
    spawn_processor: SpawnProcessor, tmp_path: Path,
) -> None:
    with LocalCluster(BINARIES[-1]) as cluster:  # the newest server this machine has
        queue = EventQueue.from_url(cluster.url)
        try:
            await sigkill_chaos(queue, cluster.url, spawn_processor, tmp_path, kills=5,
                                accounts=20)
        finally:
            await queue.close()


async def enqueue_until_acknowledged(queue: EventQueue, event: NewEvent) -> str:
    while True:
        try:
            return (await queue.enqueue(event)).event_id
        except QueueUnavailable:
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_sentinel_failover_loses_no_acknowledged_event(
    spawn_processor: SpawnProcessor, tmp_path: Path
) -> None:
    with LocalSentinel() as sentinel:
        queue = EventQueue.from_url(sentinel.url, timeout=0.5, wait_replicas=1,
                                    wait_replicas_seconds=0.25)
        record = tmp_path / "runs.jsonl"
        processes = [spawn_processor(sentinel.url, record_file=record, concurrency=3)
                     for _ in range(2)]
        try:
            events = [new(f"DU{a}", c, sleep=[0.01, 0.05]) for a in range(12) for c in COMMANDS]
            acknowledged: list[str] = []

            async def produce() -> None:
                for event in events:
                    acknowledged.append(await enqueue_until_acknowledged(queue, event))
                    await asyncio.sleep(0.02)

            producer = asyncio.create_task(produce())
            await asyncio.sleep(0.7)
            old = sentinel.primary()
            old.kill()  # the primary dies with acknowledged events on it
            sentinel.wait_for_new_primary(old)
            old.start()  # comes back; Sentinel makes it a replica of the new primary
            await asyncio.wait_for(producer, 60)
            assert len(set(acknowledged)) == len(events)

            history = await wait_completed(queue, set(acknowledged), timeout=60)
            assert set(acknowledged) <= set(history)
            assert stop_all(processes) == [0, 0]
            assert (await queue.stats()).total_events == 0
            await assert_consistent(queue.redis)
        finally:
            await queue.close()
