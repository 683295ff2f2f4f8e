"""IBBroker: the :class:`~event_processor.services.ibkr_client.Broker` over a real IBKR client.

This is the only module that imports ib_async or ib_insync (``ibkr.library``, imported by name on
first use, inside the running loop). It connects lazily with :func:`connect_ib` (the plan's
connection retry), reconnects when the connection was lost, and bounds every call with a timeout,
because the client libraries wait forever by default (``IB.RequestTimeout = 0``). After a whole
connection cycle failed, a short circuit breaker (``ibkr.circuit_breaker_seconds``) fails every
command at once instead of queueing each behind another full cycle, so "fail fast" stays true when
many events arrive while IBKR is unreachable.

Every operation names one account and touches only that account: positions and orders are filtered
by account, orders are cancelled one by one (never ``reqGlobalCancel``), and every order carries
``account`` and ``orderRef``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from event_processor.config import IBKRConfig
from event_processor.services.ibkr_client import (
    LIVE,
    AccountEquity,
    AccountNotManaged,
    IBKRCircuitOpen,
    IBKRConnectionLost,
    IBKRError,
    IBKRTimeout,
    IBKRUnavailable,
    NoPrice,
    OpenOrder,
    OrderNotAcknowledged,
    OrderNotFilled,
    OrderRejected,
    OrderRequest,
    OrderResult,
    OrdersNotCancelled,
    Position,
    Quote,
    UnknownSymbol,
    UnsupportedPosition,
    connect_ib,
)
from event_processor.utils.retry import retry_with_config

T = TypeVar("T")

log = logging.getLogger(__name__)

# The account's values in its base currency, and its cash per currency ($LEDGER:ALL).
SUMMARY_TAGS = ("NetLiquidation,TotalCashValue,AvailableFunds,BuyingPower,GrossPositionValue,"
                "$LEDGER:ALL")
LEDGER_CASH_TAG = "CashBalance"
LEDGER_TOTAL = "BASE"  # the ledger's currency for its totals in the base currency
# IBKR messages that are not about one request (data farm status).
FARM_STATUS_CODES = range(2100, 2200)
# Statuses before IBKR has acknowledged an order.
UNACKNOWLEDGED = frozenset({"PendingSubmit", "ApiPending"})
# Order statuses that mean the order ended without (fully) filling.
UNFILLED_ENDS = frozenset({"Cancelled", "ApiCancelled", "Inactive"})


class _Circuit:
    """Open for ``seconds`` after a failed connection cycle: callers fail at once meanwhile."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.open_until = 0.0
        self.reason = ""

    def check(self) -> None:
        """Raise IBKRCircuitOpen while open."""
        left = self.open_until - time.monotonic()
        if left > 0:
            raise IBKRCircuitOpen(left, self.reason)

    def trip(self, error: IBKRUnavailable) -> None:
        """A connection cycle failed."""
        if self.seconds:
            self.open_until = time.monotonic() + self.seconds
            self.reason = error.reason
            log.warning("IBKR connection cycle failed; failing fast", extra={
                "seconds": self.seconds, "error": error.reason})

    def reset(self) -> None:
        """A connection worked."""
        self.open_until = 0.0


@dataclass
class _Placed:
    """An order of ours at IBKR: a live trade, or only the fills of one found after a retry."""

    trade: Any = None
    fills: list[Any] = field(default_factory=list)
    adopted: bool = False


@dataclass(frozen=True)
class _Baseline:
    """Orders and executions with the same orderRef, symbol and side that existed before placing."""

    perm_ids: frozenset[int]
    exec_ids: frozenset[str]


class IBBroker:
    """The Broker over ib_async (default) or ib_insync, one connection shared by all commands."""

    def __init__(self, config: IBKRConfig, *,
                 on_retry: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._on_retry = on_retry
        self._ib: Any = None
        self._lib: ModuleType | None = None
        self._connect_lock = asyncio.Lock()
        self._circuit = _Circuit(config.circuit_breaker_seconds)
        # ib clients key these requests by a fixed name, so two at once would clobber each other.
        self._positions_lock = asyncio.Lock()
        self._orders_lock = asyncio.Lock()
        self._contracts: dict[str, Any] = {}

    # -- connection -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the client is connected."""
        return self._ib is not None and bool(self._ib.isConnected())

    def _library(self) -> ModuleType:
        if self._lib is None:
            self._lib = importlib.import_module(self.config.library)
        return self._lib

    async def _client(self) -> Any:
        """The connected client; connects (with the connection retry) when not connected.

        Raises IBKRCircuitOpen, without waiting for the connection lock, while the last
        connection cycle failed less than ``circuit_breaker_seconds`` ago; callers that waited
        for the lock during that cycle fail at once too.
        """
        if not self.connected:
            self._circuit.check()
        async with self._connect_lock:
            if not self.connected:
                self._circuit.check()
                try:
                    await self._connect()
                except IBKRUnavailable as exc:
                    self._circuit.trip(exc)
                    raise
                self._circuit.reset()
            return self._ib

    async def _connect(self) -> None:
        if self._ib is not None:
            self._ib.disconnect()
        ib = self._library().IB()
        self._ib = ib
        await connect_ib(ib, self.config, on_retry=self._on_retry)
        if self.config.market_data_type != 1:
            ib.reqMarketDataType(self.config.market_data_type)
        log.info("connected to IBKR", extra={
            "host": self.config.host, "port": self.config.port,
            "client_id": self.config.client_id, "library": self.config.library})

    async def _account_client(self, account_id: str) -> Any:
        ib = await self._client()
        if account_id not in ib.managedAccounts():
            raise AccountNotManaged(account_id)
        return ib

    async def close(self) -> None:
        """Disconnect (idempotent)."""
        if self._ib is not None:
            self._ib.disconnect()
            self._ib = None
            await asyncio.sleep(0)

    async def _request(self, operation: str, awaitable: Awaitable[T],
                       timeout: float | None = None) -> T:
        seconds = timeout or self.config.request_timeout
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except TimeoutError as exc:
            raise IBKRTimeout(operation, seconds) from exc
        except ConnectionError as exc:
            raise IBKRError(f"IBKR connection lost during {operation}: {exc}") from exc

    # -- reading --------------------------------------------------------------------------------

    async def positions(self, account_id: str) -> list[Position]:
        """The account's holdings, each valued at its market price from a fresh quote."""
        ib = await self._account_client(account_id)
        async with self._positions_lock:
            raw = await self._request("positions", ib.reqPositionsAsync())
        held = {p.contract.conId: p for p in raw if p.account == account_id}
        held = {k: p for k, p in held.items() if p.position}
        for p in held.values():
            if p.contract.secType != "STK" or p.contract.currency != "USD":
                raise UnsupportedPosition(account_id, f"{p.contract.secType} {p.contract.symbol} "
                                                      f"{p.contract.currency}")
        quotes = await self.quotes(sorted({p.contract.symbol for p in held.values()}))
        return sorted((_position(p, quotes[p.contract.symbol]) for p in held.values()),
                      key=lambda p: p.symbol)

    async def equity(self, account_id: str) -> AccountEquity:
        """A fresh account summary of the account (NetLiquidation, TotalCashValue, ...)."""
        ib = await self._account_client(account_id)
        req_id = ib.client.getReqId()
        future = ib.wrapper.startReq(req_id)
        ib.client.reqAccountSummary(req_id, "All", SUMMARY_TAGS)
        try:
            await self._request("account summary", future)
        finally:
            if ib.isConnected():
                ib.client.cancelAccountSummary(req_id)
        values = [v for v in ib.wrapper.acctSummary.values() if v.account == account_id]
        return _equity(account_id, values)

    async def open_orders(self, account_id: str) -> list[OpenOrder]:
        """The account's working orders, whichever client placed them."""
        ib = await self._account_client(account_id)
        return [_open_order(t) for t in await self._open_trades(ib, account_id)]

    async def _open_trades(self, ib: Any, account_id: str) -> list[Any]:
        async with self._orders_lock:
            trades = await self._request("open orders", ib.reqAllOpenOrdersAsync())
        unique = {(t.order.clientId, t.order.orderId, t.order.permId): t for t in trades}
        return [t for t in unique.values() if t.order.account == account_id and not t.isDone()]

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """A snapshot quote per symbol (STK, SMART, USD), with the kind of data it is and what
        IBKR said about its request (e.g. error 354: no market data subscription)."""
        if not symbols:
            return {}
        ib = await self._client()
        contracts = await self._contracts_for(ib, symbols)
        notices: dict[int, str] = {}

        def on_error(req_id: int, code: int, text: str, contract: Any = None, *_: Any) -> None:
            if contract is not None and code not in FARM_STATUS_CODES:
                notices[contract.conId] = f"IBKR {code}: {text}"

        ib.errorEvent += on_error
        try:
            tickers = await self._request(
                "market data", ib.reqTickersAsync(*(contracts[s] for s in symbols)))
        finally:
            ib.errorEvent -= on_error
        return {s: _quote(s, t, notices.get(contracts[s].conId))
                for s, t in zip(symbols, tickers, strict=True)}

    async def _contracts_for(self, ib: Any, symbols: Iterable[str]) -> dict[str, Any]:
        lib = self._library()
        missing = [s for s in dict.fromkeys(symbols) if s not in self._contracts]
        if missing:
            contracts = [lib.Stock(s, "SMART", "USD") for s in missing]
            await self._request("contract details", ib.qualifyContractsAsync(*contracts))
            unknown = [s for s, c in zip(missing, contracts, strict=True) if not c.conId]
            if unknown:
                raise UnknownSymbol(unknown)
            self._contracts.update(zip(missing, contracts, strict=True))
        return {s: self._contracts[s] for s in symbols}

    # -- cancelling -----------------------------------------------------------------------------

    async def cancel_open_orders(self, account_id: str) -> int:
        """Cancel the account's working orders one by one and wait until IBKR confirms each.

        Orders placed by another API client cannot be cancelled from here; then nothing is cancelled
        and OrdersNotCancelled is raised, since trading next to them could double an order.
        """
        ib = await self._account_client(account_id)
        trades = await self._open_trades(ib, account_id)
        foreign = [t.order.orderId for t in trades if t.order.clientId != ib.client.clientId]
        if foreign:
            raise OrdersNotCancelled(account_id, foreign, "placed by another API client")
        for trade in trades:
            ib.cancelOrder(trade.order)
        await self._wait_done(ib, trades, self.config.request_timeout, account_id)
        return sum(1 for t in trades if t.orderStatus.status in UNFILLED_ENDS)

    async def _wait_done(self, ib: Any, trades: list[Any], timeout: float, account_id: str) -> None:
        async def all_done() -> None:
            for trade in trades:
                await _until(ib, trade.isDone, trade.statusEvent,
                             what=f"the cancellation of order {trade.order.orderId}")

        try:
            await asyncio.wait_for(all_done(), timeout)
        except TimeoutError as exc:
            pending = [t.order.orderId for t in trades if not t.isDone()]
            raise OrdersNotCancelled(account_id, pending, f"not confirmed within {timeout:g} s") \
                from exc

    # -- placing --------------------------------------------------------------------------------

    async def place_order(self, account_id: str, request: OrderRequest) -> OrderResult:
        """Place one order under ``ibkr.order_retry`` and wait for its outcome.

        Only an order IBKR never acknowledged is retried. Before each retry the account's open
        orders and executions are searched for one with this orderRef, symbol and side that was not
        there before the first attempt; if found it is adopted instead of placing another. Every
        order is then waited for until it ends (``request.fill_timeout``, else
        ``ibkr.order_timeout``; an unfilled remainder is cancelled and OrderNotFilled raised): a MOC
        order until the close auction filled it.
        """
        ib = await self._account_client(account_id)
        contract = (await self._contracts_for(ib, [request.symbol]))[request.symbol]
        baseline = await self._baseline(ib, account_id, request)
        attempts: list[int] = []

        async def attempt() -> _Placed:
            attempts.append(1)
            return await self._attempt(account_id, request, contract, baseline, len(attempts))

        placed = await retry_with_config(attempt, self.config.order_retry,
                                         f"place order {request.describe()}",
                                         retry_on=(OrderNotAcknowledged,),
                                         on_retry=self._on_retry)
        return await self._outcome(account_id, request, placed)

    async def _attempt(self, account_id: str, request: OrderRequest, contract: Any,
                       baseline: _Baseline, number: int) -> _Placed:
        ib = await self._account_client(account_id)
        if number > 1:
            found = await self._find_placed(ib, account_id, request, baseline)
            if found is not None:
                log.warning("order found at IBKR after an unacknowledged attempt; adopting it",
                            extra={"order": request.describe()})
                return found
        trade = ib.placeOrder(contract, self._make_order(account_id, request))
        await self._wait_acknowledged(ib, trade, request)
        return _Placed(trade=trade)

    def _make_order(self, account_id: str, request: OrderRequest) -> Any:
        lib = self._library()
        order = lib.Order(action=request.action, totalQuantity=request.quantity,
                          orderType=request.order_type, tif="DAY")
        if request.order_type == "LMT":
            if request.limit_price is None:
                raise ValueError(f"LMT order without a limit price: {request.describe()}")
            order.lmtPrice = request.limit_price
        order.account = account_id
        order.orderRef = request.order_ref
        return order

    async def _wait_acknowledged(self, ib: Any, trade: Any, request: OrderRequest) -> None:
        def acknowledged() -> bool:
            return trade.orderStatus.status not in UNACKNOWLEDGED

        with contextlib.suppress(TimeoutError, IBKRConnectionLost):
            await asyncio.wait_for(
                _until(ib, acknowledged, trade.statusEvent, what=f"order {request.describe()}"),
                self.config.request_timeout)
        if trade.orderStatus.status in UNACKNOWLEDGED:
            if ib.isConnected():
                # Sent after the placement on the same socket, so TWS sees it second: the
                # unacknowledged order cannot come alive after we place a replacement.
                ib.cancelOrder(trade.order)
            reason = "connection lost" if not ib.isConnected() else \
                f"no answer within {self.config.request_timeout:g} s"
            raise OrderNotAcknowledged(request.describe(), reason)
        _raise_if_rejected(trade, request)

    async def _baseline(self, ib: Any, account_id: str, request: OrderRequest) -> _Baseline:
        trades = await self._matching_trades(ib, account_id, request)
        fills = await self._matching_fills(ib, account_id, request)
        return _Baseline(frozenset(t.order.permId for t in trades),
                         frozenset(f.execution.execId for f in fills))

    async def _find_placed(self, ib: Any, account_id: str, request: OrderRequest,
                           baseline: _Baseline) -> _Placed | None:
        for trade in await self._matching_trades(ib, account_id, request):
            if trade.order.permId not in baseline.perm_ids:
                return _Placed(trade=trade, adopted=True)
        fills = [f for f in await self._matching_fills(ib, account_id, request)
                 if f.execution.execId not in baseline.exec_ids]
        return _Placed(fills=fills, adopted=True) if fills else None

    async def _matching_trades(self, ib: Any, account_id: str, request: OrderRequest) -> list[Any]:
        return [t for t in await self._open_trades(ib, account_id)
                if t.order.orderRef == request.order_ref and t.contract.symbol == request.symbol
                and t.order.action == request.action]

    async def _matching_fills(self, ib: Any, account_id: str, request: OrderRequest) -> list[Any]:
        flt = self._library().ExecutionFilter(acctCode=account_id)
        fills = await self._request("executions", ib.reqExecutionsAsync(flt))
        side = "BOT" if request.action == "BUY" else "SLD"
        return [f for f in fills if f.execution.orderRef == request.order_ref
                and f.contract.symbol == request.symbol and f.execution.side == side
                and f.execution.acctNumber == account_id]

    async def _outcome(self, account_id: str, request: OrderRequest, placed: _Placed) -> OrderResult:
        if placed.trade is None:
            return _result_from_fills(request, placed.fills)
        trade = placed.trade
        if not trade.isDone():
            await self._wait_filled(account_id, trade, request)
        _raise_if_rejected(trade, request)
        result = _result_from_trade(request, trade, adopted=placed.adopted)
        if result.status != "Filled":
            raise OrderNotFilled(request.describe(), result.status, result.filled, request.quantity)
        return result

    async def _wait_filled(self, account_id: str, trade: Any, request: OrderRequest) -> None:
        """Wait until the order ends; IBKRConnectionLost at once if the connection drops.

        A fill cannot arrive over a lost connection, so waiting out ``order_timeout`` would only
        delay the failure (and a graceful stop). The event is requeued; its next run recomputes
        the orders from the positions IBKR reports then, whatever this order did meanwhile.
        """
        ib = self._ib  # the client that placed the order: never a reconnected one
        timeout = request.fill_timeout or self.config.order_timeout
        try:
            await asyncio.wait_for(
                _until(ib, trade.isDone, trade.statusEvent, what=f"the fill of {request.describe()}"),
                timeout)
            return
        except TimeoutError:
            log.warning("order not filled in time; cancelling the remainder",
                        extra={"order": request.describe()})
        ib.cancelOrder(trade.order)
        await self._wait_done(ib, [trade], self.config.request_timeout, account_id)
        status = trade.orderStatus
        raise OrderNotFilled(request.describe(), f"{status.status} after order_timeout",
                             status.filled, request.quantity)


async def _until(ib: Any, done: Callable[[], bool], event: Any, *, what: str) -> None:
    """Wait until ``done()``, re-checking at every emit of ``event``.

    Raises IBKRConnectionLost as soon as the client disconnects: the libraries emit no status
    event when the socket drops, so a plain wait would last until its timeout. Both handlers are
    attached before this coroutine first yields, so no emit can fall between the check of
    ``done()`` and the wait (a waiting task would only subscribe on its first step, after
    messages already queued on the loop had been handled: the status it waits for, missed).
    """
    loop = asyncio.get_running_loop()
    lost = loop.create_future()
    changed: asyncio.Future[None] = loop.create_future()

    def on_disconnected(*_: Any) -> None:
        if not lost.done():
            lost.set_result(None)

    def on_emit(*_: Any) -> None:
        if not changed.done():
            changed.set_result(None)

    ib.disconnectedEvent += on_disconnected
    event += on_emit
    try:
        while not done():
            if lost.done() or not ib.isConnected():
                raise IBKRConnectionLost(what)
            await asyncio.wait({changed, lost}, return_when=asyncio.FIRST_COMPLETED)
            if changed.done():
                changed = loop.create_future()
    finally:
        event -= on_emit
        ib.disconnectedEvent -= on_disconnected


def _raise_if_rejected(trade: Any, request: OrderRequest) -> None:
    if trade.orderStatus.status not in UNFILLED_ENDS:
        return
    errors = [e for e in trade.log if getattr(e, "errorCode", 0)]
    if errors:
        last = errors[-1]
        raise OrderRejected(request.describe(), last.errorCode, last.message,
                            trade.orderStatus.filled)


def _result_from_trade(request: OrderRequest, trade: Any, *, adopted: bool) -> OrderResult:
    status = trade.orderStatus
    return OrderResult(
        order_id=trade.order.orderId, perm_id=trade.order.permId, symbol=request.symbol,
        action=request.action, quantity=request.quantity, order_type=request.order_type,
        status=status.status, filled=float(status.filled), avg_price=float(status.avgFillPrice),
        order_ref=request.order_ref, adopted=adopted)


def _result_from_fills(request: OrderRequest, fills: list[Any]) -> OrderResult:
    shares = sum(f.execution.shares for f in fills)
    value = sum(f.execution.shares * f.execution.price for f in fills)
    first = fills[0].execution
    status = "Filled" if shares >= request.quantity else "Cancelled"
    result = OrderResult(
        order_id=first.orderId, perm_id=first.permId, symbol=request.symbol,
        action=request.action, quantity=request.quantity, order_type=request.order_type,
        status=status, filled=float(shares), avg_price=value / shares if shares else 0.0,
        order_ref=request.order_ref, adopted=True)
    if status != "Filled":
        raise OrderNotFilled(request.describe(), status, shares, request.quantity)
    return result


def _number(value: Any) -> float | None:
    """A usable price: positive and finite, else None (the clients use nan and -1 for unknown)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def _quote(symbol: str, ticker: Any, notice: str | None) -> Quote:
    return Quote(symbol=symbol, bid=_number(ticker.bid), ask=_number(ticker.ask),
                 last=_number(ticker.last), close=_number(ticker.close),
                 data_type=int(ticker.marketDataType or LIVE), notice=notice)


def _position(raw: Any, quote: Quote) -> Position:
    try:
        price: float | None = quote.price
    except NoPrice:
        price = None  # the rebalance refuses it by name; print-positions shows it unpriced
    quantity = float(raw.position)
    return Position(symbol=raw.contract.symbol, quantity=quantity, market_price=price,
                    market_value=None if price is None else quantity * price,
                    avg_cost=float(raw.avgCost))


def _open_order(trade: Any) -> OpenOrder:
    order, status = trade.order, trade.orderStatus
    return OpenOrder(
        order_id=order.orderId, perm_id=order.permId, client_id=order.clientId,
        symbol=trade.contract.symbol, action=order.action, quantity=float(order.totalQuantity),
        filled=float(status.filled), order_type=order.orderType,
        limit_price=_number(order.lmtPrice) if order.orderType == "LMT" else None,
        status=status.status, order_ref=order.orderRef)


def _equity(account_id: str, values: list[Any]) -> AccountEquity:
    net = [v for v in values if v.tag == "NetLiquidation" and v.currency]
    if not net:
        raise IBKRError(f"account summary of {account_id} has no NetLiquidation")
    currency = net[0].currency
    tags = {v.tag: float(v.value) for v in values if v.currency == currency and _is_float(v.value)}
    missing = {"NetLiquidation", "TotalCashValue"} - set(tags)
    if missing:
        raise IBKRError(f"account summary of {account_id} lacks {', '.join(sorted(missing))}")
    balances = {v.currency: float(v.value) for v in values
                if v.tag == LEDGER_CASH_TAG and v.currency not in ("", LEDGER_TOTAL)
                and _is_float(v.value)}
    return AccountEquity(
        net_liquidation=tags["NetLiquidation"], cash=tags["TotalCashValue"],
        available_funds=tags.get("AvailableFunds", 0.0),
        buying_power=tags.get("BuyingPower", 0.0),
        gross_position_value=tags.get("GrossPositionValue", 0.0), currency=currency,
        cash_balances=balances)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True
