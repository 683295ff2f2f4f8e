"""Rebalance scenarios against the simulator: the real worker and Redis queue, IBBroker over TCP
through ib_async and ib_insync, the simulator charging IBKR's commissions. One scenario per promise
of the rebalance: exact money math, live prices only, the same validation as the other doors,
currencies, MOC, and a result that says what happened to every symbol."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from event_processor.commands.factory import create_registry
from event_processor.config import Settings
from event_processor.core.event_processor import EventProcessor
from event_queue import Event, EventQueue, ExecCommand, HistoryQuery, NewEvent
from ibkr_simulator import Simulator, start_simulator
from tests.processor.conftest import fast_settings
from tests.processor.harness import wait_until
from tests.processor.ibkr import ACCT, LIBRARIES, ibkr_config, sim_config
from tests.refused_data import REFUSED_CASES, REFUSED_IDS

CLIENT_ID = 11
STRATEGIES = {"balanced": [{"symbol": "SPY", "allocation": 60}, {"symbol": "AGG", "allocation": 38}]}
# Exact arithmetic to check against: no band, no minimum order, no slippage margin.
EXACT = {"drift_band_percent": 0, "min_order_value": 0, "slippage_percent": 0}


@pytest.fixture(params=LIBRARIES)
def library(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Desk:
    """A processor trading against a simulator, and the queue to give it events."""

    queue: EventQueue
    sim: Simulator

    async def enqueue(self, command: str = "rebalance", **data: Any) -> str:
        added = await self.queue.enqueue(NewEvent(account_id=ACCT,
                                                  exec_command=ExecCommand(command), data=data))
        return added.event_id

    async def run(self, command: str = "rebalance", **data: Any) -> dict[str, Any]:
        """Enqueue, wait until the event completed, return its result."""
        return await self.finished(await self.enqueue(command, **data))

    async def finished(self, event_id: str, timeout: float = 20) -> dict[str, Any]:
        async def done() -> bool:
            page = await self.queue.history(HistoryQuery(limit=100))
            return any(h.event_id == event_id for h in page.entries)

        await wait_until(done, timeout=timeout)
        page = await self.queue.history(HistoryQuery(limit=100))
        [entry] = [h for h in page.entries if h.event_id == event_id]
        assert entry.outcome == "completed", entry
        result = entry.result
        return dict(json.loads(result) if isinstance(result, str) else result)

    async def fail(self, command: str = "rebalance", **data: Any) -> Event:
        """Enqueue, wait until the event failed once, return it."""
        event_id = await self.enqueue(command, **data)

        async def failed() -> bool:
            return (await self.queue.get(event_id)).times_queued > 1

        await wait_until(failed, timeout=20)
        return await self.queue.get(event_id)

    async def account(self) -> dict[str, Any]:
        return dict((await self.sim.admin.state())["accounts"][ACCT])

    async def orders(self) -> list[dict[str, Any]]:
        return list((await self.sim.admin.state())["orders"])


OpenDesk = Callable[..., Awaitable[Desk]]


@pytest.fixture
async def open_desk(redis_url: str, queue: EventQueue, library: str,
                    tmp_path: Path) -> AsyncIterator[OpenDesk]:
    """Start a simulator (the demo state, changed by ``change``) and a processor trading on it."""
    running: list[tuple[EventProcessor, asyncio.Task[None]]] = []
    simulators: list[Any] = []

    async def open_desk(change: Callable[[dict[str, Any]], None] | None = None, *,
                        rebalance: dict[str, Any] | None = None,
                        ibkr: dict[str, Any] | None = None,
                        account: dict[str, Any] | None = None) -> Desk:
        raw = sim_config()
        if change is not None:
            change(raw)
        context = start_simulator(raw, port=0)
        sim = await context.__aenter__()
        simulators.append(context)
        accounts = tmp_path / "accounts.yaml"
        accounts.write_text(yaml.safe_dump({"accounts": [{"account_id": ACCT, **(account or {})}]}))
        base = fast_settings(redis_url, requeue_delay=60)
        settings = Settings(
            redis=base.redis, processing=base.processing,
            ibkr=ibkr_config(sim.port, library, client_id=CLIENT_ID, **(ibkr or {})),
            strategies=STRATEGIES,
            rebalance={"accounts_file": accounts, **(rebalance or {})})
        processor = EventProcessor.from_settings(settings, create_registry(settings))
        running.append((processor, asyncio.create_task(processor.run())))
        return Desk(queue, sim)

    yield open_desk
    for processor, task in running:
        processor.request_stop("test over")
        await asyncio.wait_for(task, 20)
        await processor.close()
    for context in simulators:
        await context.__aexit__(None, None, None)


def only(symbol: str, bid: float, ask: float, last: float, *, cash: float,
         positions: list[dict[str, Any]] | None = None) -> Callable[[dict[str, Any]], None]:
    """The demo account holding only ``cash`` (and ``positions``), ``symbol`` priced as given."""
    def change(raw: dict[str, Any]) -> None:
        raw["prices"][symbol] = {"bid": bid, "ask": ask, "last": last, "close": last}
        raw["accounts"][0].update(cash=cash, positions=positions or [])
    return change


def value(account: dict[str, Any]) -> float:
    return float(account["values"]["NetLiquidation"])


# -- exact money math -----------------------------------------------------------------------------


async def test_the_minimum_commission_is_budgeted_so_the_buy_is_not_refused(
        open_desk: OpenDesk) -> None:
    """Cash 300.70, 100 % to a $30.00 ask: BUY 10 would need 301.00 with the $1 minimum."""
    desk = await open_desk(only("XYZ", 29.98, 30.00, 29.99, cash=300.70), rebalance=EXACT)
    result = await desk.run(allocations=[{"symbol": "XYZ", "allocation": 100}])
    assert [(o["action"], o["quantity"], o["status"]) for o in result["orders"]] == [
        ("BUY", 9.0, "Filled")]
    account = await desk.account()
    assert account["cash"] == pytest.approx(300.70 - 9 * 30.00 - 1.00)
    [xyz] = result["symbols"]
    assert "allow 9 of the 10 shares" in xyz["reason"]


async def test_the_reserve_holds_after_the_commission(open_desk: OpenDesk) -> None:
    """Cash 310, 3 % reserve: BUY 10 at 30.00 + $1 would leave 9.00 < 9.30."""
    desk = await open_desk(only("XYZ", 29.98, 30.00, 29.99, cash=310.0), rebalance=EXACT)
    await desk.run(allocations=[{"symbol": "XYZ", "allocation": 100}], cash_reserve_percent=3)
    account = await desk.account()
    assert account["positions"]["XYZ"]["quantity"] == 9
    assert account["cash"] >= 0.03 * value(account)


async def test_tiered_commissions_are_charged_within_their_budget(open_desk: OpenDesk) -> None:
    def tiered(raw: dict[str, Any]) -> None:
        raw["commissions"] = {"model": "tiered"}
        raw["accounts"][0]["cash"] = 2_000.0

    desk = await open_desk(tiered, rebalance={"commissions": {"model": "tiered"}, **EXACT})
    result = await desk.run(allocations=[{"symbol": "SPY", "allocation": 60},
                                         {"symbol": "AGG", "allocation": 40}],
                            cash_reserve_percent=1)
    budget = {o["symbol"]: o["commission"] for o in result["plan"]["orders"]}
    state = await desk.sim.admin.state()
    charged = {e["symbol"]: e["commission"] for e in state["executions"]}
    assert set(charged) == set(budget) == {"SPY", "AGG"}
    assert all(charged[s] <= budget[s] for s in charged), (charged, budget)
    account = state["accounts"][ACCT]
    assert account["cash"] >= 0.01 * value(account)


async def test_a_fully_invested_account_ends_within_one_share_of_every_target(
        open_desk: OpenDesk) -> None:
    """The sale of the overweight symbol rounds to the nearest share and pays for the buys."""
    def invested(raw: dict[str, Any]) -> None:
        raw["prices"].update({"AAA": {"bid": 96.99, "ask": 97.01, "last": 97.0},
                              "BBB": {"bid": 40.99, "ask": 41.01, "last": 41.0},
                              "CCC": {"bid": 12.99, "ask": 13.01, "last": 13.0}})
        raw["accounts"][0].update(cash=12.0, positions=[
            {"symbol": "AAA", "quantity": 100, "avg_cost": 90.0},
            {"symbol": "BBB", "quantity": 40, "avg_cost": 40.0},
            {"symbol": "CCC", "quantity": 150, "avg_cost": 12.0}])

    desk = await open_desk(invested, rebalance=EXACT)
    targets = {"AAA": 40.0, "BBB": 35.0, "CCC": 25.0}
    await desk.run(allocations=[{"symbol": s, "allocation": a} for s, a in targets.items()])
    account = await desk.account()
    net, prices = value(account), {"AAA": 97.0, "BBB": 41.0, "CCC": 13.0}
    for symbol, weight in targets.items():
        wanted = net * weight / 100 / prices[symbol]
        assert abs(account["positions"][symbol]["quantity"] - wanted) < 1, (symbol, wanted)
    assert account["cash"] >= 0


async def test_an_immediate_second_rebalance_places_no_order(open_desk: OpenDesk) -> None:
    desk = await open_desk(account={"strategy": "balanced", "cash_reserve_percent": 2})
    first = await desk.run()
    assert [o["status"] for o in first["orders"]] == ["Filled", "Filled"]
    executions = len((await desk.sim.admin.state())["executions"])
    second = await desk.run()
    assert not second["orders"]  # (the history stores an empty list as {})
    assert len((await desk.sim.admin.state())["executions"]) == executions
    assert all(s["reason"] for s in second["symbols"])  # each one says why it was left alone


async def test_a_small_holding_outside_the_targets_is_sold_whatever_its_size(
        open_desk: OpenDesk) -> None:
    def tiny(raw: dict[str, Any]) -> None:
        raw["prices"]["TINY"] = {"bid": 2.99, "ask": 3.01, "last": 3.0}
        raw["accounts"][0]["positions"].append({"symbol": "TINY", "quantity": 1, "avg_cost": 5.0})

    desk = await open_desk(tiny, rebalance={"min_order_value": 100},
                           account={"strategy": "balanced"})
    result = await desk.run()
    assert ("SELL", "TINY", 1.0) in [(o["action"], o["symbol"], o["filled"])
                                     for o in result["orders"]]
    assert "TINY" not in (await desk.account())["positions"]
    [tiny_line] = [s for s in result["symbols"] if s["symbol"] == "TINY"]
    assert (tiny_line["target_weight"], tiny_line["ordered"], tiny_line["filled"]) == (0, -1, -1)


async def test_every_symbol_of_the_result_says_what_happened_and_why(open_desk: OpenDesk) -> None:
    def big(raw: dict[str, Any]) -> None:
        raw["prices"]["BIG"] = {"bid": 5_999.0, "ask": 6_001.0, "last": 6_000.0}
        raw["accounts"][0].update(cash=10_000.0, positions=[])

    desk = await open_desk(big, rebalance=EXACT)
    result = await desk.run(allocations=[{"symbol": "BIG", "allocation": 20},
                                         {"symbol": "AGG", "allocation": 80}])
    lines = {s["symbol"]: s for s in result["symbols"]}
    assert set(lines) == {"AGG", "BIG"}
    agg = lines["AGG"]
    assert agg["target_weight"] == 80 and agg["price"] == 98.5 and agg["current"] == 0
    assert agg["ordered"] == agg["filled"] == round(agg["target_shares"]) > 0
    assert agg["reason"] is None
    assert lines["BIG"]["ordered"] == 0
    assert "less than half a share" in lines["BIG"]["reason"]


# -- live prices only -----------------------------------------------------------------------------


async def test_a_close_only_quote_fails_the_rebalance_naming_the_symbol(
        open_desk: OpenDesk) -> None:
    desk = await open_desk(account={"strategy": "balanced"})
    await desk.sim.admin.set_price("AGG", bid=0, ask=0, last=0)
    event = await desk.fail()
    assert event.last_error is not None
    assert "no tradable quote for AGG" in event.last_error
    assert "only a close (98.4)" in event.last_error
    assert await desk.orders() == []


async def test_a_spread_wider_than_the_maximum_fails_naming_the_symbol(
        open_desk: OpenDesk) -> None:
    desk = await open_desk(account={"strategy": "balanced"}, rebalance={"max_spread_percent": 1})
    await desk.sim.admin.set_price("SPY", bid=500.0, ask=520.0, last=510.0)
    event = await desk.fail()
    assert event.last_error is not None and "SPY: spread 3.92 %" in event.last_error
    assert await desk.orders() == []


async def test_without_live_data_nothing_is_traded(open_desk: OpenDesk) -> None:
    desk = await open_desk(account={"strategy": "balanced"})
    await desk.sim.admin.set_market_data("AGG", live=False)
    event = await desk.fail()
    assert event.last_error is not None and "AGG: no bid or ask (IBKR 354" in event.last_error
    assert await desk.orders() == []


async def test_delayed_data_is_refused_unless_configured(open_desk: OpenDesk) -> None:
    desk = await open_desk(account={"strategy": "balanced"}, ibkr={"market_data_type": 3})
    await desk.sim.admin.set_market_data("AGG", live=False)
    event = await desk.fail()
    assert event.last_error is not None
    assert "AGG: delayed data; set rebalance.allow_delayed_quotes" in event.last_error
    assert await desk.orders() == []


async def test_delayed_data_is_traded_on_when_configured(open_desk: OpenDesk) -> None:
    desk = await open_desk(account={"strategy": "balanced"}, ibkr={"market_data_type": 3},
                           rebalance={"allow_delayed_quotes": True})
    await desk.sim.admin.set_market_data("AGG", live=False)
    result = await desk.run()
    assert [(o["symbol"], o["status"]) for o in result["orders"]] == [
        ("AGG", "Filled"), ("SPY", "Filled")]


# -- the same validation as the broker and the management service ---------------------------------


@pytest.mark.parametrize(("data", "phrase"), REFUSED_CASES, ids=REFUSED_IDS)
async def test_targets_no_portfolio_can_meet_fail_the_event_and_trade_nothing(
        open_desk: OpenDesk, data: dict[str, Any], phrase: str) -> None:
    """Written into Redis behind the broker's back: the planner refuses it the same way."""
    desk = await open_desk(account={"strategy": "balanced"})
    event = await desk.fail(**data)
    assert event.last_error is not None and phrase in event.last_error
    assert await desk.orders() == []


# -- currencies -----------------------------------------------------------------------------------


def in_euros(raw: dict[str, Any]) -> None:
    raw["fx_rates"] = {"EUR": 1.25}
    raw["accounts"][0].update(base_currency="EUR", cash=10_000.0,
                              cash_balances={"EUR": 5_000.0}, positions=[])


async def test_an_account_in_another_currency_is_refused(open_desk: OpenDesk) -> None:
    desk = await open_desk(in_euros)
    event = await desk.fail(allocations=[{"symbol": "SPY", "allocation": 50}])
    assert event.last_error is not None
    assert f"account {ACCT} reports in EUR and holds EUR 5,000.00 cash" in event.last_error
    assert await desk.orders() == []


async def test_allowed_other_currencies_rebalance_the_usd_part_only(open_desk: OpenDesk) -> None:
    desk = await open_desk(in_euros, rebalance={"allow_other_currencies": True, **EXACT})
    result = await desk.run(allocations=[{"symbol": "SPY", "allocation": 50}])
    assert result["plan"]["cash_before"] == 10_000.0  # the USD cash, not the EUR
    account = await desk.account()
    assert account["cash_balances"] == {"EUR": 5_000.0}
    assert account["positions"]["SPY"]["quantity"] == 10  # 50 % of 10,000 USD at 510.02
    assert account["cash"] >= 0


# -- MOC ------------------------------------------------------------------------------------------


async def test_a_moc_rebalance_buys_after_the_sales_fill_and_ends_at_the_targets(
        open_desk: OpenDesk) -> None:
    def little_cash(raw: dict[str, Any]) -> None:
        raw["accounts"][0]["cash"] = 1_000.0

    desk = await open_desk(little_cash, rebalance={"moc_fill_timeout": 30, **EXACT})
    targets = {"AAPL": 40.0, "MSFT": 30.0, "SPY": 20.0}
    event_id = await desk.enqueue(order_type="MOC", allocations=[
        {"symbol": s, "allocation": a} for s, a in targets.items()])

    async def working(action: str) -> int:
        return sum(o["status"] == "PreSubmitted" and o["action"] == action
                   for o in await desk.orders())

    async def both_working(action: str) -> bool:
        return await working(action) == 2

    await wait_until(lambda: both_working("SELL"), timeout=10)  # SELL AGG, SELL SPY
    await asyncio.sleep(0.3)
    assert await working("BUY") == 0  # the buys wait for the sales' cash
    assert await desk.sim.admin.run_close_auction() == 2
    await wait_until(lambda: both_working("BUY"), timeout=10)  # BUY AAPL, BUY MSFT
    assert await desk.sim.admin.run_close_auction() == 2
    result = await desk.finished(event_id)
    assert {(o["action"], o["symbol"], o["order_type"], o["status"]) for o in result["orders"]} == {
        ("SELL", "AGG", "MOC", "Filled"), ("SELL", "SPY", "MOC", "Filled"),
        ("BUY", "AAPL", "MOC", "Filled"), ("BUY", "MSFT", "MOC", "Filled")}
    account = await desk.account()
    net = value(account)
    marks = {"AAPL": 190.0, "MSFT": 415.0, "SPY": 510.0}
    for symbol, weight in targets.items():
        wanted = net * weight / 100 / marks[symbol]
        assert abs(account["positions"][symbol]["quantity"] - wanted) < 1, (symbol, wanted)
    assert "AGG" not in account["positions"]
