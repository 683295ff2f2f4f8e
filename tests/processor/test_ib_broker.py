"""IBBroker against the simulator over TCP, through ib_async and ib_insync."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import eventkit
import pytest

from event_processor.config import RetryConfig
from event_processor.services.ib_broker import IBBroker, _until
from event_processor.services.ibkr_client import (
    AccountNotManaged,
    IBKRCircuitOpen,
    IBKRConnectionLost,
    IBKRUnavailable,
    OrderNotFilled,
    OrderRejected,
    OrderRequest,
    UnknownSymbol,
)
from ibkr_simulator import Simulator, start_simulator
from tests.processor.harness import wait_until
from tests.processor.ibkr import (
    ACCT,
    LIBRARIES,
    OTHER,
    ibkr_config,
    place_resting_limits,
    sim_config,
    working_orders,
)

MakeBroker = Callable[..., IBBroker]


@pytest.fixture(params=LIBRARIES)
def library(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with start_simulator(sim_config(), port=0) as simulator:
        yield simulator


@pytest.fixture
async def make_broker(sim: Simulator, library: str) -> AsyncIterator[MakeBroker]:
    made: list[IBBroker] = []

    def make(**overrides: Any) -> IBBroker:
        broker = IBBroker(ibkr_config(sim.port, library, **overrides))
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


def order(symbol: str, action: str, quantity: float, ref: str = "ev-1", **kw: Any) -> OrderRequest:
    return OrderRequest(symbol=symbol, action=action, quantity=quantity,  # type: ignore[arg-type]
                        order_type=kw.pop("order_type", "MKT"), order_ref=ref, **kw)


async def test_positions_and_equity_are_valued_at_market_not_avg_cost(
        make_broker: MakeBroker, sim: Simulator) -> None:
    broker = make_broker()
    await sim.admin.set_price("SPY", bid=519.9, ask=520.1, last=520.0)
    positions = {p.symbol: p for p in await broker.positions(ACCT)}
    assert set(positions) == {"SPY", "AGG"}
    assert (positions["SPY"].quantity, positions["SPY"].market_price) == (100, 520.0)
    assert positions["SPY"].market_value == pytest.approx(52_000.0)  # not 100 x 450 avg cost
    assert positions["SPY"].avg_cost == 450.0
    equity = await broker.equity(ACCT)
    values = (await sim.admin.state())["accounts"][ACCT]["values"]
    assert equity.cash == pytest.approx(100_000.0)
    assert equity.net_liquidation == pytest.approx(float(values["NetLiquidation"]))
    assert equity.net_liquidation == pytest.approx(100_000 + 52_000 + 200 * 98.5)
    assert equity.available_funds == pytest.approx(100_000.0)
    assert [p.symbol for p in await broker.positions(OTHER)] == ["AAPL"]


async def test_quotes_and_unknown_symbols(make_broker: MakeBroker) -> None:
    broker = make_broker()
    quotes = await broker.quotes(["AAPL", "SPY"])
    assert (quotes["AAPL"].bid, quotes["AAPL"].ask, quotes["AAPL"].last) == (189.95, 190.05, 190.0)
    assert quotes["SPY"].price == 510.0
    with pytest.raises(UnknownSymbol, match="NOPE"):
        await broker.quotes(["AAPL", "NOPE"])


async def test_quotes_say_what_kind_of_data_they_are_and_what_ibkr_said(
        make_broker: MakeBroker, sim: Simulator) -> None:
    await sim.admin.set_market_data("AGG", live=False)
    await sim.admin.set_price("AAPL", bid=0, ask=0, last=0)
    live = await make_broker().quotes(["AGG", "AAPL", "SPY"])
    assert (live["AGG"].bid, live["AGG"].ask) == (None, None)
    assert live["AGG"].notice is not None and live["AGG"].notice.startswith("IBKR 354:")
    assert (live["AAPL"].bid, live["AAPL"].last, live["AAPL"].close) == (None, None, 188.5)
    assert (live["SPY"].data_type, live["SPY"].notice) == (1, None)
    delayed = await make_broker(market_data_type=3, client_id=12).quotes(["AGG", "SPY"])
    assert (delayed["AGG"].data_type, delayed["AGG"].bid) == (3, 98.49)
    assert delayed["AGG"].notice is not None and "10167" in delayed["AGG"].notice
    assert delayed["SPY"].data_type == 1  # live where the login has it


async def test_a_holding_without_any_price_is_listed_unpriced(
        make_broker: MakeBroker, sim: Simulator) -> None:
    await sim.admin.set_market_data("AGG", live=False)
    positions = {p.symbol: p for p in await make_broker().positions(ACCT)}
    assert (positions["AGG"].quantity, positions["AGG"].market_price) == (200, None)
    assert positions["AGG"].market_value is None
    assert positions["SPY"].market_value == pytest.approx(51_000.0)


async def test_equity_carries_the_cash_of_each_currency(make_broker: MakeBroker) -> None:
    equity = await make_broker().equity(ACCT)
    assert (equity.currency, dict(equity.cash_balances)) == ("USD", {"USD": 100_000.0})


async def test_a_moc_order_is_waited_for_until_the_close_auction_fills_it(
        make_broker: MakeBroker, sim: Simulator) -> None:
    broker = make_broker()
    placing = asyncio.ensure_future(broker.place_order(
        ACCT, order("AAPL", "BUY", 5, order_type="MOC", fill_timeout=10)))

    async def resting() -> bool:
        return len(working_orders(await sim.admin.state(), ACCT)) == 1

    await wait_until(resting, timeout=5)
    assert not placing.done()
    assert await sim.admin.run_close_auction({"AAPL": 191.0}) == 1
    result = await asyncio.wait_for(placing, 5)
    assert (result.status, result.filled, result.avg_price) == ("Filled", 5, 191.0)


async def test_a_moc_order_not_filled_in_time_is_cancelled(
        make_broker: MakeBroker, sim: Simulator) -> None:
    with pytest.raises(OrderNotFilled, match="after order_timeout"):
        await make_broker().place_order(
            ACCT, order("AAPL", "BUY", 5, order_type="MOC", fill_timeout=0.3))
    assert working_orders(await sim.admin.state(), ACCT) == []


async def test_an_account_this_login_does_not_manage_is_refused(make_broker: MakeBroker) -> None:
    with pytest.raises(AccountNotManaged):
        await make_broker().positions("DU9999999")


async def test_market_order_fills_with_the_event_id_as_order_ref(
        make_broker: MakeBroker, sim: Simulator) -> None:
    broker = make_broker()
    result = await broker.place_order(ACCT, order("AAPL", "BUY", 10, ref="event-42"))
    assert (result.status, result.filled, result.avg_price) == ("Filled", 10, 190.05)
    [execution] = (await sim.admin.state())["executions"]
    assert (execution["account"], execution["order_ref"], execution["shares"]) == (
        ACCT, "event-42", 10)


async def test_a_rejected_order_raises_with_its_code_and_is_not_retried(
        make_broker: MakeBroker, sim: Simulator) -> None:
    broker = make_broker()
    await sim.admin.reject_next_order(201, "Order rejected - reason: not enough cash")
    with pytest.raises(OrderRejected) as info:
        await broker.place_order(ACCT, order("AAPL", "BUY", 10))
    assert info.value.code == 201
    assert "not enough cash" in str(info.value)
    state = await sim.admin.state()
    assert state["executions"] == []
    assert len(state["orders"]) == 1


async def test_cancel_touches_only_the_accounts_own_orders(
        make_broker: MakeBroker, sim: Simulator, library: str) -> None:
    await place_resting_limits(sim.port, library, 11, [(ACCT, "AAPL", 150.0),
                                                      (ACCT, "SPY", 400.0),
                                                      (OTHER, "AAPL", 150.0)])
    broker = make_broker()
    assert len(await broker.open_orders(ACCT)) == 2
    assert await broker.cancel_open_orders(ACCT) == 2
    state = await sim.admin.state()
    assert working_orders(state, ACCT) == []
    assert len(working_orders(state, OTHER)) == 1  # the other account's order survives
    assert await broker.open_orders(ACCT) == []
    assert await broker.cancel_open_orders(ACCT) == 0


async def test_refused_connections_fail_fast_after_max_retries_plus_one_attempts(
        make_broker: MakeBroker, sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    await sim.admin.refuse_connections(True)
    broker = make_broker(circuit_breaker_seconds=0.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="event_processor.utils.retry"), \
            pytest.raises(IBKRUnavailable) as info:
        await broker.equity(ACCT)
    elapsed = time.monotonic() - started
    assert info.value.attempts == 3
    attempts = [r for r in caplog.records if r.getMessage().startswith("ibkr connect failed")]
    assert len(attempts) == 3
    assert 0.1 <= elapsed < 1.5  # two fixed delays of 0.05 s, no backoff
    await sim.admin.refuse_connections(False)
    with pytest.raises(IBKRCircuitOpen):  # the breaker: no new cycle right after a failed one
        await broker.equity(ACCT)
    await asyncio.sleep(0.5)
    assert (await broker.equity(ACCT)).cash == pytest.approx(100_000.0)


async def test_after_a_failed_cycle_waiting_commands_fail_at_once_not_one_cycle_each(
        library: str) -> None:
    # IBKR behind a firewall that drops packets: connections are accepted, nothing answers.
    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; closes when the client gives up
        writer.close()

    server = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    broker = IBBroker(ibkr_config(port, library, connect_timeout=0.4,
                                  connection_retry=RetryConfig(max_retries=1, delay=0.1)))
    try:
        started = time.monotonic()
        outcomes = await asyncio.gather(*(broker.equity(ACCT) for _ in range(4)),
                                        return_exceptions=True)
        elapsed = time.monotonic() - started
    finally:
        await broker.close()
        server.close()
    assert all(isinstance(o, IBKRUnavailable) for o in outcomes), outcomes
    assert sum(isinstance(o, IBKRCircuitOpen) for o in outcomes) == 3
    # One cycle (two attempts of 0.4 s and a delay of 0.1 s), not four cycles one after another.
    assert elapsed < 2.0, elapsed


async def test_reconnects_after_the_connection_drops(make_broker: MakeBroker, sim: Simulator) -> None:
    broker = make_broker()
    assert (await broker.equity(ACCT)).cash == pytest.approx(100_000.0)
    await sim.admin.drop_connections()

    async def disconnected() -> bool:
        return not broker.connected

    await wait_until(disconnected, timeout=2)
    assert [p.symbol for p in await broker.positions(ACCT)] == ["AGG", "SPY"]
    assert broker.connected


async def test_an_unacknowledged_order_is_retried_once_and_never_doubled(
        make_broker: MakeBroker, sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    broker = make_broker(request_timeout=0.5)
    await broker.quotes(["AAPL"])  # connected, contract known
    await sim.admin.leave_unanswered("placeOrder")

    async def answer_after_first_attempt() -> None:
        async def failed_once() -> bool:
            return any("(attempt 1 of 2)" in r.getMessage() for r in caplog.records)

        await wait_until(failed_once, timeout=5, interval=0.01)
        await sim.admin.leave_unanswered("placeOrder", False)

    with caplog.at_level(logging.WARNING, logger="event_processor.utils.retry"):
        helper = asyncio.create_task(answer_after_first_attempt())
        result = await broker.place_order(ACCT, order("AAPL", "BUY", 5, ref="event-7"))
        await helper
    assert (result.status, result.filled) == ("Filled", 5)
    executions = (await sim.admin.state())["executions"]
    assert [(e["order_ref"], e["shares"]) for e in executions] == [("event-7", 5)]


async def test_a_lost_connection_ends_the_wait_for_a_fill_at_once(
        make_broker: MakeBroker, sim: Simulator) -> None:
    broker = make_broker(order_timeout=30)
    await broker.quotes(["AAPL"])
    await sim.admin.set_fill_delay(20)
    placing = asyncio.create_task(broker.place_order(ACCT, order("AAPL", "BUY", 5, ref="ev-9")))

    async def working() -> bool:
        return len(working_orders(await sim.admin.state(), ACCT)) == 1

    await wait_until(working, timeout=5)
    dropped_at = time.monotonic()
    await sim.admin.drop_connections()
    with pytest.raises(IBKRConnectionLost, match="the fill of"):
        await asyncio.wait_for(placing, 10)
    assert time.monotonic() - dropped_at < 2  # not the 30 s order_timeout


async def test_a_status_already_queued_on_the_loop_is_not_missed() -> None:
    """The wait subscribes before it first yields: a status message handled in the same loop turn
    (as a burst from the socket is) still wakes it, instead of leaving it to its timeout."""
    status, disconnected = eventkit.Event("status"), eventkit.Event("disconnected")
    loop = asyncio.get_running_loop()
    done = {"filled": False, "arrived": False}

    class Client:
        disconnectedEvent = disconnected

        def isConnected(self) -> bool:
            return True

    def fill() -> None:
        done["filled"] = True
        status.emit()

    def filled() -> bool:
        if not done["arrived"]:  # the fill arrives (is queued) just as the wait checks
            done["arrived"] = True
            loop.call_soon(fill)
        return done["filled"]

    await asyncio.wait_for(_until(Client(), filled, status, what="a fill"), 1.0)
    assert len(status) == 0 and len(disconnected) == 0  # its handlers are gone again
