"""Operator actions are safe to resend: a call whose connection drops after Redis ran it, resent
once by the management service's client (``reconnect_once``), answers with the first outcome.

A small TCP proxy between the client and a real Redis forwards a chosen script call to Redis and
then cuts the client's connection before the reply comes back, as a network failure would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from event_queue import EventQueue, EventState, ExecCommand, NewEvent, scripts
from event_queue.redis_server import RedisServer
from tests.management.conftest import API_KEY, make_settings, serving


class CuttingProxy:
    """Forwards TCP to Redis; the first request holding ``cut_on`` reaches Redis, but its reply
    never reaches the client: the connection is closed instead."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.cut_on: bytes | None = None
        self.cuts = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        cut = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                if self.cut_on is not None and self.cut_on in data:
                    self.cut_on, self.cuts = None, self.cuts + 1
                    cut.set()  # from now on no reply reaches the client
                up_writer.write(data)
                await up_writer.drain()
                if cut.is_set():
                    await asyncio.sleep(0.1)  # Redis runs the call
                    return

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if cut.is_set():
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if cut.is_set() or tasks[0].done():
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in (writer, up_writer):
            w.close()


@pytest.fixture
async def proxied(
    redis_server: RedisServer, redis_url: str
) -> AsyncIterator[tuple[EventQueue, CuttingProxy]]:
    proxy = CuttingProxy(redis_server.port)
    port = await proxy.start()
    queue = EventQueue.from_url(f"redis://127.0.0.1:{port}/0", reconnect_once=True)
    for name in scripts.ALL:  # loaded: a cut call runs its script instead of meeting NOSCRIPT
        await queue.redis.script_load(scripts.source(name))
    yield queue, proxy
    await queue.close()
    await proxy.close()


def sha(queue: EventQueue, script: str) -> bytes:
    return queue._scripts[script].sha.encode()


async def test_a_resent_delete_answers_deleted(
    proxied: tuple[EventQueue, CuttingProxy],
) -> None:
    queue, proxy = proxied
    added = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    proxy.cut_on = sha(queue, "delete")
    deleted = await queue.delete(added.event_id)
    assert proxy.cuts == 1
    assert deleted.event_id == added.event_id
    assert [e.outcome for e in (await queue.history()).entries] == ["deleted"]  # once


async def test_a_resent_add_answers_with_the_event_it_made(
    proxied: tuple[EventQueue, CuttingProxy],
) -> None:
    queue, proxy = proxied
    await queue.enqueue(NewEvent(account_id="DU0", exec_command=ExecCommand.REBALANCE))
    proxy.cut_on = sha(queue, "enqueue")
    result = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE),
                                 idempotency_key="manual:op-1")
    assert proxy.cuts == 1
    assert result.replayed
    assert (await queue.stats()).total_events == 2
    assert (await queue.get(result.event_id)).state is EventState.QUEUED


async def test_a_resent_retry_and_audit_happen_once(
    proxied: tuple[EventQueue, CuttingProxy],
) -> None:
    queue, proxy = proxied
    await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    event = await queue.claim("c1", timeout=1)
    assert event is not None
    await queue.fail(event, "c1", "boom", requeue_delay=60)
    proxy.cut_on = sha(queue, "retry_now")
    retried = await queue.retry_now(event.event_id)
    assert proxy.cuts == 1 and retried.state is EventState.QUEUED
    proxy.cut_on = sha(queue, "audit")
    await queue.record_audit({"action": "retry"})
    assert proxy.cuts == 2
    assert len(await queue.audit_log()) == 1
    await queue.delete(event.event_id)


async def test_the_management_service_answers_a_resent_add_and_delete_with_their_outcome(
    proxied: tuple[EventQueue, CuttingProxy], tmp_path: Path
) -> None:
    queue, proxy = proxied
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text("accounts:\n  - account_id: DU1111111\n", encoding="utf-8")
    settings = make_settings(f"redis://127.0.0.1:{proxy.port}/0", ACCOUNTS_FILE=str(accounts))
    with serving(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10,
                                     headers={"X-API-Key": API_KEY}) as admin:
            proxy.cut_on = sha(queue, "enqueue")
            added = await admin.post("/queue/events", json={"account_id": "DU1111111",
                                                            "exec_command": "rebalance"})
            assert proxy.cuts == 1
            assert added.status_code == 201, added.text  # not 409: the resend found its event
            proxy.cut_on = sha(queue, "delete")
            deleted = await admin.delete(f"/queue/events/{added.json()['event_id']}")
            assert proxy.cuts == 2
            assert deleted.status_code == 200, deleted.text  # not 404
    assert (await queue.stats()).total_events == 0
