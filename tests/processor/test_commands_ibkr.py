"""The six commands end to end: real worker, real Redis queue, IBBroker over TCP to the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from event_processor.commands.factory import create_registry
from event_processor.config import Settings
from event_processor.core.event_processor import EventProcessor
from event_processor.services.ib_broker import IBBroker
from event_queue import Event, EventQueue, ExecCommand, FinishedEvent, NewEvent
from ibkr_simulator import Simulator, start_simulator
from tests.processor.conftest import fast_settings
from tests.processor.harness import wait_until
from tests.processor.ibkr import ACCT, ibkr_config, place_resting_limits, sim_config, working_orders

STRATEGIES = {"balanced": [{"symbol": "SPY", "allocation": 60}, {"symbol": "AGG", "allocation": 38}]}
CLIENT_ID = 11

Run = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with start_simulator(sim_config(), port=0) as simulator:
        yield simulator


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml.safe_dump({"accounts": [
        {"account_id": ACCT, "strategy": "balanced", "cash_reserve_percent": 2.0}]}))
    return path


@pytest.fixture
async def processor(redis_url: str, sim: Simulator,
                    accounts_file: Path) -> AsyncIterator[EventProcessor]:
    import asyncio

    base = fast_settings(redis_url, requeue_delay=60)
    settings = Settings(
        redis=base.redis, processing=base.processing,
        ibkr=ibkr_config(sim.port, client_id=CLIENT_ID),
        strategies=STRATEGIES, rebalance={"accounts_file": accounts_file, "min_order_value": 100})
    proc = EventProcessor.from_settings(settings, create_registry(settings))
    task = asyncio.create_task(proc.run())
    yield proc
    proc.request_stop("test over")
    await asyncio.wait_for(task, 20)
    await proc.close()


async def run_event(queue: EventQueue, command: str, **data: Any) -> dict[str, Any]:
    """Enqueue, wait until the event completed, return its history entry."""
    enqueued = await queue.enqueue(NewEvent(account_id=ACCT, exec_command=ExecCommand(command),
                                            data=data))

    async def finished() -> bool:
        return isinstance(await queue.lookup(enqueued.event_id), FinishedEvent)

    await wait_until(finished, timeout=15)
    entry = await queue.lookup(enqueued.event_id)
    assert isinstance(entry, FinishedEvent) and entry.outcome == "completed", entry
    return entry.model_dump()


async def run_failing(queue: EventQueue, command: str, **data: Any) -> Event:
    """Enqueue, wait until the event failed once, return it."""
    enqueued = await queue.enqueue(NewEvent(account_id=ACCT, exec_command=ExecCommand(command),
                                            data=data))

    async def failed() -> bool:
        return (await queue.get(enqueued.event_id)).times_queued > 1

    await wait_until(failed, timeout=15)
    return await queue.get(enqueued.event_id)


def weights(state: dict[str, Any]) -> tuple[dict[str, float], dict[str, float], float]:
    account = state["accounts"][ACCT]
    prices = {s: p["last"] for s, p in state["prices"].items()}
    held = {s: h["quantity"] for s, h in account["positions"].items() if h["quantity"]}
    net = account["cash"] + sum(q * prices[s] for s, q in held.items())
    return held, prices, net


@pytest.mark.usefixtures("processor")
async def test_rebalance_reaches_the_targets_and_a_second_run_places_nothing(
        queue: EventQueue, sim: Simulator) -> None:
    first = await run_event(queue, "rebalance")
    assert first["result"]["targets"]["source"].startswith("strategy balanced")
    assert [o["status"] for o in first["result"]["orders"]] == ["Filled", "Filled"]
    state = await sim.admin.state()
    held, prices, net = weights(state)
    for symbol, percent in {"SPY": 60, "AGG": 38}.items():
        wanted = net * 0.98 * percent / 100 / prices[symbol]
        assert abs(held[symbol] - wanted) <= 1, (symbol, held[symbol], wanted)
    assert all(e["order_ref"] == first["event_id"] for e in state["executions"])
    assert state["accounts"][ACCT]["cash"] >= 0.98 * 0.02 * net

    second = await run_event(queue, "rebalance")
    assert second["result"]["orders"] == []
    assert len((await sim.admin.state())["executions"]) == len(state["executions"])


@pytest.mark.usefixtures("processor")
async def test_rebalance_cancels_a_left_over_order_first(queue: EventQueue, sim: Simulator) -> None:
    await place_resting_limits(sim.port, "ib_async", CLIENT_ID, [(ACCT, "SPY", 400.0)])
    done = await run_event(queue, "rebalance", allocations=[{"symbol": "SPY", "allocation": 50}],
                           cash_reserve_percent=5)
    assert done["result"]["cancelled_orders"] == 1
    state = await sim.admin.state()
    assert working_orders(state, ACCT) == []
    assert {o["order_ref"]: o["status"] for o in state["orders"]}["left-over"] == "Cancelled"
    assert [(o["action"], o["symbol"]) for o in done["result"]["orders"]] == [
        ("SELL", "AGG"), ("BUY", "SPY")]


@pytest.mark.usefixtures("processor")
async def test_a_rejected_order_fails_the_event(queue: EventQueue, sim: Simulator) -> None:
    await sim.admin.reject_next_order(201, "Order rejected - reason: test")
    event = await run_failing(queue, "rebalance")
    assert event.times_queued == 2
    assert event.last_error is not None and "error 201" in event.last_error
    assert (await sim.admin.state())["executions"] == []


@pytest.mark.usefixtures("processor")
async def test_print_rebalance_plans_and_places_nothing(queue: EventQueue, sim: Simulator) -> None:
    done = await run_event(queue, "print-rebalance", strategy="balanced")
    plan = done["result"]["plan"]
    assert [(o["action"], o["symbol"]) for o in plan["orders"]] == [("BUY", "AGG"), ("BUY", "SPY")]
    assert "orders" not in done["result"]
    assert (await sim.admin.state())["orders"] == []


@pytest.mark.usefixtures("processor")
async def test_read_only_commands_and_cancel_orders(queue: EventQueue, sim: Simulator) -> None:
    await place_resting_limits(sim.port, "ib_insync", CLIENT_ID, [(ACCT, "SPY", 400.0),
                                                                  (ACCT, "AGG", 90.0)])
    positions = (await run_event(queue, "print-positions"))["result"]["positions"]
    assert {p["symbol"]: p["market_value"] for p in positions} == {"AGG": 19_700.0, "SPY": 51_000.0}
    equity = (await run_event(queue, "print-equity"))["result"]
    assert equity["net_liquidation"] == pytest.approx(170_700.0)
    orders = (await run_event(queue, "print-orders"))["result"]["orders"]
    assert sorted(o["symbol"] for o in orders) == ["AGG", "SPY"]
    assert (await run_event(queue, "cancel-orders"))["result"]["cancelled"] == 2
    assert working_orders(await sim.admin.state(), ACCT) == []


async def test_ibkr_unreachable_fails_the_event_and_keeps_it(
        queue: EventQueue, sim: Simulator, processor: EventProcessor) -> None:
    await sim.admin.refuse_connections(True)
    event = await run_failing(queue, "print-equity")
    assert event.times_queued == 2
    assert event.last_error is not None and "IBKRUnavailable" in event.last_error
    assert (await queue.stats()).retry_waiting == 1
    assert isinstance(processor.context.broker, IBBroker)
