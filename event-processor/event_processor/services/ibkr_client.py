"""The typed interface between the commands and IBKR: values, errors, the Broker protocol.

Commands talk to :class:`Broker` only. :class:`~event_processor.services.ib_broker.IBBroker` (the
one module that imports ib_async / ib_insync) implements it; :class:`UnconfiguredBroker` makes every
command fail its event with a clear error when ``ibkr.enabled`` is false. :func:`connect_ib` is the
plan's connection retry (Phase 2.3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from event_processor.config import IBKRConfig
from event_processor.utils.retry import retry_with_config

OrderType = Literal["MKT", "LMT", "MOC"]
# reqMarketDataType / the ticker's marketDataType: what kind of data a quote is.
LIVE, FROZEN, DELAYED, DELAYED_FROZEN = 1, 2, 3, 4
MARKET_DATA_TYPES = {LIVE: "live", FROZEN: "frozen", DELAYED: "delayed",
                     DELAYED_FROZEN: "delayed frozen"}


class IBKRError(Exception):
    """Base class of the adapter's errors."""


class IBKRNotConfigured(IBKRError):
    """No IBKR adapter is wired (``ibkr.enabled: false``); the command cannot run."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"IBKR adapter not configured (cannot {operation})")
        self.operation = operation


class IBKRUnavailable(IBKRError):
    """IB Gateway could not be reached after every attempt of the connection retry."""

    def __init__(self, attempts: int, reason: str) -> None:
        super().__init__(f"IBKR unavailable after {attempts} connection attempts: {reason}")
        self.attempts = attempts
        self.reason = reason


class IBKRCircuitOpen(IBKRUnavailable):
    """A connection cycle failed moments ago: fail at once instead of queueing another cycle."""

    def __init__(self, seconds_left: float, reason: str) -> None:
        IBKRError.__init__(
            self, f"IBKR unavailable: the last connection cycle failed ({reason}); the next "
            f"attempt is allowed in {seconds_left:.1f} s")
        self.attempts = 0
        self.reason = reason
        self.seconds_left = seconds_left


class IBKRTimeout(IBKRError):
    """IBKR did not answer a request in time."""

    def __init__(self, operation: str, seconds: float) -> None:
        super().__init__(f"IBKR did not answer {operation} within {seconds:g} s")
        self.operation = operation
        self.seconds = seconds


class IBKRConnectionLost(IBKRError):
    """The connection to IBKR dropped while a command waited for IBKR's answer."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"IBKR connection lost while waiting for {operation}")
        self.operation = operation


class AccountNotManaged(IBKRError):
    """The account is not one of the accounts this IBKR login manages."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} is not managed by this IBKR login")
        self.account_id = account_id


class UnknownSymbol(IBKRError):
    """IBKR knows no (unambiguous) US stock for these symbols."""

    def __init__(self, symbols: list[str]) -> None:
        super().__init__(f"unknown symbol(s) at IBKR (STK SMART USD): {', '.join(symbols)}")
        self.symbols = symbols


class NoPrice(IBKRError):
    """No usable bid/ask/last/close for a symbol."""

    def __init__(self, symbol: str) -> None:
        super().__init__(f"no market price for {symbol}")
        self.symbol = symbol


class UnsupportedPosition(IBKRError):
    """The account holds something the rebalancer cannot value (not a USD stock)."""

    def __init__(self, account_id: str, description: str) -> None:
        super().__init__(f"account {account_id} holds an unsupported position: {description}")
        self.account_id = account_id


class OrdersNotCancelled(IBKRError):
    """Some open orders of the account could not be cancelled (or not confirmed in time)."""

    def __init__(self, account_id: str, order_ids: list[int], reason: str) -> None:
        super().__init__(f"open orders {order_ids} of {account_id} not cancelled: {reason}")
        self.account_id = account_id
        self.order_ids = order_ids


class OrderNotAcknowledged(IBKRError):
    """IBKR did not acknowledge a placement; nothing was placed, so it is safe to try again."""

    def __init__(self, description: str, reason: str) -> None:
        super().__init__(f"order {description} not acknowledged: {reason}")
        self.description = description


class OrderRejected(IBKRError):
    """IBKR rejected or cancelled an order (e.g. error 201)."""

    def __init__(self, description: str, code: int, text: str, filled: float = 0.0) -> None:
        super().__init__(f"order {description} rejected by IBKR (error {code}): {text}"
                         + (f"; {filled:g} filled before" if filled else ""))
        self.code = code
        self.text = text
        self.filled = filled


class OrderNotFilled(IBKRError):
    """An order did not fill completely (timeout or cancelled); its remainder was cancelled."""

    def __init__(self, description: str, status: str, filled: float, quantity: float) -> None:
        super().__init__(f"order {description} not filled: status {status}, "
                         f"{filled:g} of {quantity:g} filled")
        self.status = status
        self.filled = filled
        self.quantity = quantity


@dataclass(frozen=True)
class Position:
    """One holding of an account, valued at its market price (never its average cost); price and
    value are None when IBKR has no price for it (no market data), rather than a made-up one."""

    symbol: str
    quantity: float
    market_price: float | None
    market_value: float | None
    avg_cost: float


@dataclass(frozen=True)
class AccountEquity:
    """The account's value and cash, in its base currency (from the account summary), and its
    cash in each currency it holds (the ``$LEDGER:ALL`` summary; empty when IBKR sent none)."""

    net_liquidation: float
    cash: float
    available_funds: float
    buying_power: float
    gross_position_value: float
    currency: str
    cash_balances: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenOrder:
    """An order that is still working."""

    order_id: int
    perm_id: int
    client_id: int
    symbol: str
    action: str
    quantity: float
    filled: float
    order_type: str
    limit_price: float | None
    status: str
    order_ref: str


@dataclass(frozen=True)
class Quote:
    """Bid, ask, last and close of a symbol (None when unknown), the kind of data it is (live,
    frozen, delayed: :data:`MARKET_DATA_TYPES`), and what IBKR said about the request, if anything
    (e.g. error 354, no market data subscription)."""

    symbol: str
    bid: float | None
    ask: float | None
    last: float | None
    close: float | None
    data_type: int = LIVE
    notice: str | None = None

    @property
    def price(self) -> float:
        """The market price to value a holding with (``print-positions``): last when it lies within
        bid/ask, else the mid, else last, else close. Never a price to trade on: a rebalance takes
        only live two-sided quotes (``rebalancing/quotes.py``)."""
        mid = self.mid
        if self.last and (mid is None or _within(self.last, self.bid, self.ask)):
            return self.last
        for candidate in (mid, self.last, self.close):
            if candidate:
                return candidate
        raise NoPrice(self.symbol)

    @property
    def mid(self) -> float | None:
        """Halfway between bid and ask, when both are known and not crossed."""
        if self.bid and self.ask and self.ask >= self.bid:
            return (self.bid + self.ask) / 2
        return None


def _within(value: float, low: float | None, high: float | None) -> bool:
    return low is not None and high is not None and low <= value <= high


@dataclass(frozen=True)
class OrderRequest:
    """One order to place. ``order_ref`` is the event id, so every order names its event."""

    symbol: str
    action: Literal["BUY", "SELL"]
    quantity: float
    order_type: OrderType
    order_ref: str
    limit_price: float | None = None
    fill_timeout: float | None = None  # seconds to wait for the fill; None: ibkr.order_timeout

    def describe(self) -> str:
        """``BUY 10 SPY MKT ref=...``, for errors and logs."""
        return f"{self.action} {self.quantity:g} {self.symbol} {self.order_type} ref={self.order_ref}"


@dataclass(frozen=True)
class OrderResult:
    """What became of a placed order."""

    order_id: int
    perm_id: int
    symbol: str
    action: str
    quantity: float
    order_type: str
    status: str
    filled: float
    avg_price: float
    order_ref: str
    adopted: bool = False


class Broker(Protocol):
    """What the commands need from IBKR, and nothing more. Every call acts on one account only."""

    async def positions(self, account_id: str) -> list[Position]:
        """The account's current holdings, valued at market prices."""
        ...

    async def equity(self, account_id: str) -> AccountEquity:
        """The account's net liquidation value and cash."""
        ...

    async def open_orders(self, account_id: str) -> list[OpenOrder]:
        """The account's working orders."""
        ...

    async def cancel_open_orders(self, account_id: str) -> int:
        """Cancel every working order of the account, confirmed; returns how many were cancelled."""
        ...

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """A quote per symbol; UnknownSymbol when IBKR does not know one."""
        ...

    async def place_order(self, account_id: str, request: OrderRequest) -> OrderResult:
        """Place an order for the account and wait until it is filled (or fails)."""
        ...

    async def close(self) -> None:
        """Disconnect; safe to call when never connected."""
        ...


class UnconfiguredBroker:
    """The broker for ``ibkr.enabled: false``: every call fails the event, clearly."""

    async def positions(self, account_id: str) -> list[Position]:
        """Always raises IBKRNotConfigured."""
        raise IBKRNotConfigured("read positions")

    async def equity(self, account_id: str) -> AccountEquity:
        """Always raises IBKRNotConfigured."""
        raise IBKRNotConfigured("read account equity")

    async def open_orders(self, account_id: str) -> list[OpenOrder]:
        """Always raises IBKRNotConfigured."""
        raise IBKRNotConfigured("read open orders")

    async def cancel_open_orders(self, account_id: str) -> int:
        """Always raises IBKRNotConfigured."""
        raise IBKRNotConfigured("cancel orders")

    async def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """Always raises IBKRNotConfigured."""
        raise IBKRNotConfigured("read quotes")

    async def place_order(self, account_id: str, request: OrderRequest) -> OrderResult:
        """Always raises IBKRNotConfigured."""
        raise IBKRNotConfigured("place orders")

    async def close(self) -> None:
        """Nothing to close."""


def create_broker(config: IBKRConfig, *, on_retry: Callable[[str], None] | None = None) -> Broker:
    """The processor's default broker: :class:`IBBroker` unless ``ibkr.enabled`` is false.

    ``on_retry`` is called with the operation's name before each connection or order retry.
    """
    if not config.enabled:
        return UnconfiguredBroker()
    from event_processor.services.ib_broker import IBBroker

    return IBBroker(config, on_retry=on_retry)


async def connect_ib(ib: Any, config: IBKRConfig, *,
                     on_retry: Callable[[str], None] | None = None) -> None:
    """Connect ``ib`` (an ib_async or ib_insync ``IB``) with the plan's fixed-delay connection retry.

    Raises IBKRUnavailable (carrying the number of attempts) after ``max_retries`` retries.
    """
    retry = config.connection_retry

    async def attempt() -> None:
        await ib.connectAsync(
            config.host, config.port, clientId=config.client_id, timeout=config.connect_timeout
        )

    # Refused connections and connect timeouts are both OSError (TimeoutError is one since 3.3).
    try:
        await retry_with_config(attempt, retry, "ibkr connect", retry_on=(OSError,),
                                on_retry=on_retry)
    except OSError as exc:
        raise IBKRUnavailable(retry.max_retries + 1, f"{type(exc).__name__}: {exc}") from exc
