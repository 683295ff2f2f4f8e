"""The whole system as an operator runs it: every service a real process, a real Redis, the
simulator as IB Gateway. A webhook goes in through the broker; the processor trades it against the
simulator; the management service reports it; nothing is mocked."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from event_queue.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "end-to-end-token-0123456789"
API_KEY = "end-to-end-api-key-0123456789"


@dataclass
class Stack:
    broker: str
    management: str
    simulator_admin: str


def start(module: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT,
                            env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_ready(url: str, *, timeout: float = 20.0) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(int(timeout * 10)):
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered 200")


@pytest.fixture
def redis_for_stack() -> Iterator[RedisServer]:
    with RedisServer(appendfsync="always") as server:
        yield server


@pytest.fixture
def ib_library() -> str:
    """The processor's IB client library (``ibkr.library``); tests parametrize it to run both."""
    return "ib_async"


@pytest.fixture
async def stack(redis_for_stack: RedisServer, tmp_path: Path, ib_library: str) -> AsyncIterator[Stack]:
    ports = {name: free_port() for name in ("broker", "management", "ib", "admin", "processor")}
    common = {"REDIS_URL": redis_for_stack.url,
              "ACCOUNTS_FILE": str(ROOT / "config" / "accounts.yaml")}
    processes = [
        start("ibkr_simulator", {}, "--port", str(ports["ib"]), "--admin-port",
              str(ports["admin"]), "--accounts", str(ROOT / "ibkr-simulator/accounts.demo.yaml")),
        start("event_processor", {**common, "IB_HOST": "127.0.0.1", "IB_PORT": str(ports["ib"]),
                                  "PROCESSOR_PORT": str(ports["processor"]),
                                  "PROCESSOR_PROCESSING__REQUEUE_DELAY": "1",
                                  "PROCESSOR_IBKR__LIBRARY": ib_library}),
        start("event_broker", {**common, "WEBHOOK_TOKEN": TOKEN, "PORT": str(ports["broker"])}),
        start("management_service", {**common, "MANAGEMENT_API_KEY": API_KEY,
                                     "MANAGEMENT_PORT": str(ports["management"])}),
    ]
    stack = Stack(f"http://127.0.0.1:{ports['broker']}",
                  f"http://127.0.0.1:{ports['management']}",
                  f"http://127.0.0.1:{ports['admin']}")
    try:
        for url in (f"{stack.broker}/health/live", f"{stack.management}/health/live",
                    f"{stack.simulator_admin}/state"):
            await wait_ready(url)
        yield stack
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


async def post_event(client: httpx.AsyncClient, stack: Stack, body: dict[str, object]) -> httpx.Response:
    return await client.post(f"{stack.broker}/events", json=body,
                             headers={"Authorization": f"Bearer {TOKEN}"})


async def wait_until_idle(client: httpx.AsyncClient, stack: Stack, *, timeout: float = 30) -> None:
    for _ in range(int(timeout * 5)):
        status = (await client.get(f"{stack.management}/queue/status")).json()
        if status["total_events"] == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"events still live: {status}")


@pytest.mark.parametrize("ib_library", ["ib_async", "ib_insync"])
async def test_a_webhook_rebalances_the_account_in_the_simulator(stack: Stack) -> None:
    targets = {"SPY": 60.0, "AGG": 38.0}
    allocations = [{"symbol": s, "allocation": a} for s, a in targets.items()]
    async with httpx.AsyncClient(timeout=10) as client:
        queued = await post_event(client, stack, {
            "account_id": "DU1234567", "exec": "rebalance", "data": {"allocations": allocations}})
        duplicate = await post_event(client, stack, {"account_id": "DU1234567", "exec": "rebalance"})
        assert queued.status_code == 202
        assert duplicate.status_code == 200
        assert duplicate.json()["event_id"] == queued.json()["event_id"]

        await wait_until_idle(client, stack)

        state = (await client.get(f"{stack.simulator_admin}/state")).json()
        account = state["accounts"]["DU1234567"]
        net = float(account["values"]["NetLiquidation"])
        for symbol, allocation in targets.items():
            held = account["positions"][symbol]["quantity"]
            weight = held * state["prices"][symbol]["last"] / net * 100
            # 2 % cash reserve for this account (config/accounts.yaml): targets scale by 0.98
            assert abs(weight - allocation * 0.98) < 1.0, (symbol, weight)
        assert all(e["order_ref"] == queued.json()["event_id"] for e in state["executions"])
        health = await client.get(f"{stack.management}/health")
        assert health.status_code == 200, health.text


async def test_a_failing_command_turns_health_red_until_an_operator_deletes_it(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        queued = await post_event(client, stack, {
            "account_id": "DU7654321", "exec": "rebalance",
            "data": {"allocations": [{"symbol": "NOSUCH", "allocation": 50}]}})
        event_id = queued.json()["event_id"]
        for _ in range(150):
            health = await client.get(f"{stack.management}/health")
            if health.status_code == 503:
                break
            await asyncio.sleep(0.2)
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "unhealthy"
        assert body["events_requeued"] == 1
        event = (await client.get(f"{stack.management}/queue/events/{event_id}")).json()
        assert event["times_queued"] >= 2
        assert "NOSUCH" in event["last_error"]

        for _ in range(50):  # it may be mid-retry (409) for a moment
            deleted = await client.delete(f"{stack.management}/queue/events/{event_id}",
                                          headers={"X-API-Key": API_KEY})
            if deleted.status_code != 409:
                break
            await asyncio.sleep(0.1)
        assert deleted.status_code == 200
        assert (await client.get(f"{stack.management}/health")).status_code == 200
