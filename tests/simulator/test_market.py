"""Contract details and market data."""

from __future__ import annotations

from .conftest import stock, until


async def test_qualify_stock_and_etf(lib, connect):
    ib = await connect(1)
    aapl, spy = stock(lib, "AAPL"), stock(lib, "SPY")
    qualified = await ib.qualifyContractsAsync(aapl, spy)
    assert [c.conId for c in qualified] == [265598, 756733]
    assert aapl.primaryExchange == "NASDAQ"
    [details] = await ib.reqContractDetailsAsync(stock(lib, "SPY"))
    assert details.stockType == "ETF"
    assert details.minTick == 0.01
    assert details.contract.exchange == "SMART"


async def test_unknown_symbol_is_error_200(lib, connect):
    ib = await connect(1)
    errors: list[int] = []
    ib.errorEvent += lambda req_id, code, *args: errors.append(code)
    result = await ib.qualifyContractsAsync(stock(lib, "NOPE"))
    assert [c for c in result if c] == []
    assert errors == [200]


async def test_snapshot_has_bid_ask_last_close(lib, connect):
    ib = await connect(1)
    contract = stock(lib, "AAPL")
    await ib.qualifyContractsAsync(contract)
    [ticker] = await ib.reqTickersAsync(contract)
    assert (ticker.bid, ticker.ask, ticker.last, ticker.close) == (99.9, 100.1, 100.0, 98.0)
    assert ticker.bidSize > 0 and ticker.askSize > 0


async def test_streaming_follows_price_changes(lib, connect, sim):
    ib = await connect(1)
    contract = stock(lib, "SPY")
    await ib.qualifyContractsAsync(contract)
    ticker = ib.reqMktData(contract)
    await until(ib, lambda: ticker.bid == 499.9)
    await sim.admin.set_price("SPY", bid=510.0, ask=510.2, last=510.1)
    await until(ib, lambda: (ticker.bid, ticker.ask, ticker.last) == (510.0, 510.2, 510.1))
    ib.cancelMktData(contract)


async def test_a_delayed_request_gets_live_data_where_the_login_has_it(lib, connect):
    ib = await connect(1)
    ib.reqMarketDataType(3)
    contract = stock(lib, "AAPL")
    await ib.qualifyContractsAsync(contract)
    [ticker] = await ib.reqTickersAsync(contract)
    assert ticker.marketDataType == 1
    assert (ticker.bid, ticker.ask, ticker.last, ticker.close) == (99.9, 100.1, 100.0, 98.0)


async def test_without_a_live_subscription_live_requests_get_354_and_delayed_ones_delayed_data(
        lib, connect, sim):
    await sim.admin.set_market_data("AAPL", live=False)
    ib = await connect(1)
    errors: list[int] = []
    ib.errorEvent += lambda req_id, code, *args: errors.append(code)
    contract = stock(lib, "AAPL")
    await ib.qualifyContractsAsync(contract)
    [live] = await ib.reqTickersAsync(contract)
    assert errors == [354]
    assert not any(_known(p) for p in (live.bid, live.ask, live.last, live.close))
    ib.reqMarketDataType(3)
    [delayed] = await ib.reqTickersAsync(contract)
    assert errors == [354, 10167]
    assert delayed.marketDataType == 3
    assert (delayed.bid, delayed.ask, delayed.last, delayed.close) == (99.9, 100.1, 100.0, 98.0)


async def test_a_close_only_quote_has_no_bid_ask_or_last(lib, connect, sim):
    await sim.admin.set_price("AAPL", bid=0, ask=0, last=0)
    ib = await connect(1)
    contract = stock(lib, "AAPL")
    await ib.qualifyContractsAsync(contract)
    [ticker] = await ib.reqTickersAsync(contract)
    assert ticker.close == 98.0
    assert not any(_known(p) for p in (ticker.bid, ticker.ask, ticker.last))


def _known(price: float) -> bool:
    return price == price and price > 0  # the clients use nan (and -1) for unknown
