"""The one adapter between the commands and IBKR: a small typed interface and its implementations.

Commands talk to :class:`Broker` only. The real ib_async-backed broker is a later step; until it is
wired, :class:`UnconfiguredBroker` makes every command fail its event with a clear error instead of
pretending to succeed. :func:`connect_ib` (the plan's connection retry, Phase 2.3) is already here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from event_processor.config import IBKRConfig
from event_processor.utils.retry import retry_with_config

if TYPE_CHECKING:
    from ib_async import IB


class IBKRError(Exception):
    """Base class of the adapter's errors."""


class IBKRNotConfigured(IBKRError):
    """No IBKR adapter is wired yet; the command cannot run."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"IBKR adapter not configured (cannot {operation})")
        self.operation = operation


class IBKRUnavailable(IBKRError):
    """IB Gateway could not be reached after every attempt of the connection retry."""

    def __init__(self, attempts: int, reason: str) -> None:
        super().__init__(f"IBKR unavailable after {attempts} connection attempts: {reason}")
        self.attempts = attempts
        self.reason = reason


@dataclass(frozen=True)
class Position:
    """One holding of an account."""

    symbol: str
    quantity: float
    market_price: float
    market_value: float


@dataclass(frozen=True)
class AccountEquity:
    """The account's value and cash, in its base currency."""

    net_liquidation: float
    cash: float
    currency: str


@dataclass(frozen=True)
class OpenOrder:
    """An order that is still working."""

    order_id: int
    symbol: str
    action: str
    quantity: float
    order_type: str
    order_ref: str


class Broker(Protocol):
    """What the commands need from IBKR, and nothing more."""

    async def positions(self, account_id: str) -> list[Position]:
        """The account's current holdings."""
        ...

    async def equity(self, account_id: str) -> AccountEquity:
        """The account's net liquidation value and cash."""
        ...

    async def open_orders(self, account_id: str) -> list[OpenOrder]:
        """The account's working orders."""
        ...

    async def cancel_open_orders(self, account_id: str) -> int:
        """Cancel every working order of the account; returns how many were cancelled."""
        ...


class UnconfiguredBroker:
    """The default until the ib_async adapter is wired: every call fails the event, clearly."""

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


async def connect_ib(ib: IB, config: IBKRConfig) -> None:
    """Connect ``ib`` with the plan's fixed-delay connection retry; fail fast when it runs out.

    Raises IBKRUnavailable (carrying the number of attempts) after ``max_retries`` retries.
    """
    retry = config.connection_retry

    async def attempt() -> None:
        await ib.connectAsync(
            config.host, config.port, clientId=config.client_id, timeout=config.connect_timeout
        )

    # Refused connections and connect timeouts are both OSError (TimeoutError is one since 3.3).
    try:
        await retry_with_config(attempt, retry, "ibkr connect", retry_on=(OSError,))
    except OSError as exc:
        raise IBKRUnavailable(retry.max_retries + 1, f"{type(exc).__name__}: {exc}") from exc
