"""The simulated broker: accounts, prices, orders and executions shared by all sessions.

Everything here is synchronous and runs on the event loop thread. Sessions subscribe
as listeners and translate the notifications into protocol messages.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from .accounts import Account, account_values
from .config import SimulatorConfig
from .faults import Faults
from .market import ContractQuery, Instrument, Market
from .messages import ERR_NO_SECURITY, ERR_REJECTED, ERR_UNSUPPORTED_ORDER, OrderStateView
from .orders import (
    SUPPORTED_ORDER_TYPES,
    Execution,
    OrderRequest,
    SimOrder,
    fill_price,
    reference_price,
)

FIRST_PERM_ID = 1_000_001


class BrokerListener(Protocol):
    """What a session hears from the broker."""

    def order_changed(self, order: SimOrder) -> None:
        """An order was accepted, modified or changed status (not a fill)."""

    def order_filled(self, order: SimOrder, execution: Execution) -> None:
        """An order (partly) filled."""

    def order_cancelled(self, order: SimOrder) -> None:
        """An order was cancelled."""

    def account_changed(self, account_id: str) -> None:
        """Cash, positions or position prices of an account changed."""

    def quote_changed(self, symbol: str) -> None:
        """A symbol's quote changed."""


@dataclass
class Rejection:
    """An order or request the broker refused: IB error code and text."""

    code: int
    text: str


def ib_time(moment: datetime | None = None) -> str:
    """IB's 'yyyymmdd hh:mm:ss TZ' format, in UTC."""
    return (moment or datetime.now(UTC)).strftime("%Y%m%d %H:%M:%S UTC")


class Broker:
    """Accounts, market, orders and executions, plus the order matching rules."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.market = Market(config.instruments, config.fx_rates)
        self.accounts: dict[str, Account] = {}
        for acct in config.accounts:
            account = self.accounts[acct.account_id] = Account(
                acct.account_id, acct.cash, base_currency=acct.base_currency,
                other_cash=dict(acct.other_cash))
            for pos in acct.positions:
                account.set_position(pos.symbol, pos.quantity, pos.avg_cost)
        self.orders: dict[int, SimOrder] = {}
        self.executions: list[Execution] = []
        self.faults = Faults()
        self.listeners: list[BrokerListener] = []
        self._perm_ids = itertools.count(FIRST_PERM_ID)
        self._exec_seq = itertools.count(1)
        self._timers: dict[int, asyncio.TimerHandle] = {}

    # ------------------------------------------------------------ queries

    @property
    def account_ids(self) -> list[str]:
        """Managed account ids, in configuration order."""
        return list(self.accounts)

    def next_order_id(self) -> int:
        """Lowest order id above every order id used so far."""
        return max((o.order_id for o in self.orders.values()), default=0) + 1

    def find_order(self, client_id: int, order_id: int) -> SimOrder | None:
        """The order a client placed under an order id."""
        for order in self.orders.values():
            if order.client_id == client_id and order.order_id == order_id:
                return order
        return None

    def open_orders(self) -> list[SimOrder]:
        """Orders still working."""
        return [o for o in self.orders.values() if o.is_active]

    def completed_orders(self) -> list[SimOrder]:
        """Orders filled, cancelled or rejected."""
        return [o for o in self.orders.values() if not o.is_active]

    def instrument(self, symbol: str) -> Instrument:
        """The instrument of a known symbol."""
        return self.market.instruments[symbol]

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain data."""
        return {
            "accounts": {
                acct_id: {
                    "cash": acct.cash,
                    "base_currency": acct.base_currency,
                    "cash_balances": dict(acct.other_cash),
                    "positions": {
                        s: {"quantity": h.quantity, "avg_cost": h.avg_cost,
                            "realized_pnl": h.realized_pnl}
                        for s, h in acct.holdings.items()
                    },
                    "values": account_values(acct, self.market),
                }
                for acct_id, acct in self.accounts.items()
            },
            "prices": self.market.snapshot(),
            "orders": [o.to_dict() for o in self.orders.values()],
            "executions": [e.to_dict() for e in self.executions],
            "faults": self.faults.to_dict(),
        }

    # ------------------------------------------------------------ admin changes

    def set_price(self, symbol: str, **prices: float | None) -> None:
        """Change a quote, tell subscribers and re-check resting orders in the symbol."""
        self.market.set_quote(symbol, **prices)
        self._notify(lambda lst: lst.quote_changed(symbol))
        for acct in self.accounts.values():
            if symbol in acct.holdings:
                self._notify_account(acct.account_id)
        for order in self.open_orders():
            if order.symbol == symbol:
                order.hold_remainder = False
                self._work(order)

    def set_cash(self, account_id: str, cash: float, currency: str = "USD") -> None:
        """Overwrite an account's cash in one currency (USD, the trading currency, by default)."""
        account = self._account(account_id)
        if currency == "USD":
            account.cash = float(cash)
        else:
            self.market.usd_per(currency)  # KeyError for a currency without an exchange rate
            account.other_cash[currency] = float(cash)
        self._notify_account(account_id)

    def set_live_data(self, symbol: str, live: bool) -> None:
        """Give or take away the login's live market data for a symbol (else: delayed only)."""
        self.market.set_live_data(symbol, live)

    def set_position(self, account_id: str, symbol: str, quantity: float, avg_cost: float) -> None:
        """Overwrite a position (0 removes it); unknown symbols are added unpriced."""
        self.market.ensure(symbol)
        self._account(account_id).set_position(symbol, quantity, avg_cost)
        self._notify_account(account_id)

    def run_close_auction(self, prices: dict[str, float] | None = None) -> list[Execution]:
        """Fill every MOC order at its symbol's closing price (given, else the last price).

        The closing price becomes the symbol's close.
        """
        prices = prices or {}
        fills = []
        for symbol in sorted({o.symbol for o in self.open_orders() if o.order_type == "MOC"}):
            quote = self.market.quote(symbol)
            price = float(prices.get(symbol, quote.mark()))
            self.market.set_quote(symbol, close=price)
            self._notify(lambda lst, s=symbol: lst.quote_changed(s))
            for order in self.open_orders():
                if order.symbol == symbol and order.order_type == "MOC":
                    fills.append(self._execute(order, order.remaining, price))
        return fills

    def stop(self) -> None:
        """Cancel pending delayed fills."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # ------------------------------------------------------------ orders

    def resolve(self, query: ContractQuery) -> Instrument | None:
        """The instrument a contract designates."""
        return self.market.resolve(query)

    def submit(self, client_id: int, req: OrderRequest) -> SimOrder | Rejection:
        """Accept a new order (and try to fill it) or return why it is rejected."""
        checked = self._check(req)
        if isinstance(checked, Rejection):
            return checked
        inst, account_id = checked
        fault = self.faults.take_rejection()
        rejection = (Rejection(fault.code, fault.text) if fault
                     else self._check_funds(account_id, inst.symbol, req))
        order = SimOrder(
            client_id, req.order_id, next(self._perm_ids), account_id, inst.symbol, req.action,
            req.quantity, req.order_type, req.lmt_price, req.tif, req.order_ref,
        )
        self.orders[order.perm_id] = order
        if rejection is not None:
            order.status = "Cancelled"
            order.completed_time = ib_time()
            order.completed_status = rejection.text
            return Rejection(rejection.code, rejection.text)
        order.status = "PreSubmitted" if req.order_type == "MOC" else "Submitted"
        self._notify(lambda lst: lst.order_changed(order))
        self._work(order)
        return order

    def modify(self, order: SimOrder, req: OrderRequest) -> Rejection | None:
        """Change quantity, limit price or order type of a working order."""
        if req.order_type not in SUPPORTED_ORDER_TYPES or req.quantity < order.filled:
            return Rejection(ERR_REJECTED, "Order rejected - reason:Invalid modification")
        order.quantity = req.quantity
        order.lmt_price = req.lmt_price
        order.order_type = req.order_type
        order.order_ref = req.order_ref
        order.hold_remainder = False
        self._notify(lambda lst: lst.order_changed(order))
        self._work(order)
        return None

    def what_if(self, req: OrderRequest) -> OrderStateView | Rejection:
        """Margin and commission figures the order would have, without placing it."""
        checked = self._check(req)
        if isinstance(checked, Rejection):
            return checked
        inst, account_id = checked
        rejection = self._check_funds(account_id, inst.symbol, req)
        if rejection:
            return rejection
        return self._what_if_state(account_id, inst.symbol, req)

    def cancel(self, order: SimOrder) -> None:
        """Cancel a working order."""
        if not order.is_active:
            return
        order.status = "Cancelled"
        order.completed_time = ib_time()
        order.completed_status = "Cancelled by client"
        self._notify(lambda lst: lst.order_cancelled(order))

    def global_cancel(self) -> None:
        """Cancel every working order of every client."""
        for order in self.open_orders():
            self.cancel(order)

    # ------------------------------------------------------------ internals

    def _account(self, account_id: str) -> Account:
        try:
            return self.accounts[account_id]
        except KeyError:
            raise KeyError(f"unknown account {account_id!r}") from None

    def _notify(self, call: Any) -> None:
        for listener in list(self.listeners):
            call(listener)

    def _notify_account(self, account_id: str) -> None:
        self._notify(lambda lst: lst.account_changed(account_id))

    def _check(self, req: OrderRequest) -> tuple[Instrument, str] | Rejection:
        """Static checks: contract, order type, quantity, price and account."""
        inst = self.market.resolve(
            ContractQuery(req.con_id, req.symbol, req.sec_type, req.exchange,
                          req.primary_exchange, req.currency)
        )
        if inst is None:
            return Rejection(*ERR_NO_SECURITY)
        if req.order_type not in SUPPORTED_ORDER_TYPES or req.action not in ("BUY", "SELL"):
            return Rejection(*ERR_UNSUPPORTED_ORDER)
        if req.quantity <= 0:
            return Rejection(ERR_REJECTED, "Order rejected - reason:The order size must be positive")
        if req.order_type == "LMT" and (req.lmt_price is None or req.lmt_price <= 0):
            return Rejection(ERR_REJECTED, "Order rejected - reason:A limit price is required")
        account_id = req.account
        if not account_id and len(self.accounts) == 1:
            account_id = self.account_ids[0]
        if not account_id:
            return Rejection(436, "You must specify an allocation (either a single account, "
                                  "group, or profile).")
        if account_id not in self.accounts:
            return Rejection(ERR_REJECTED, f"Order rejected - reason:Unknown account {account_id}")
        return inst, account_id

    def _estimate(self, symbol: str, order_type: str, action: str, lmt: float | None,
                  qty: float) -> tuple[float, float]:
        price = reference_price(order_type, action, lmt, self.market.quote(symbol))
        return price, self.config.commissions.charge(action, qty, price)

    def _reserved_cash(self, account_id: str) -> float:
        total = 0.0
        for o in self.open_orders():
            if o.account == account_id and o.action == "BUY":
                price, fee = self._estimate(o.symbol, o.order_type, o.action, o.lmt_price,
                                            o.remaining)
                total += o.remaining * price + fee
        return total

    def _check_funds(self, account_id: str, symbol: str, req: OrderRequest
                     ) -> Rejection | None:
        """A BUY must fit in the available cash; a SELL in the shares held (cash account)."""
        account = self.accounts[account_id]
        if req.action == "SELL":
            pending = sum(o.remaining for o in self.open_orders()
                          if o.account == account_id and o.symbol == symbol
                          and o.action == "SELL")
            if req.quantity > account.quantity(symbol) - pending + 1e-9:
                return Rejection(ERR_REJECTED, "Order rejected - reason:Short selling is not "
                                               "permitted in a cash account")
            return None
        price, fee = self._estimate(symbol, req.order_type, req.action, req.lmt_price,
                                    req.quantity)
        needed = req.quantity * price + fee
        available = account.cash - self._reserved_cash(account_id)  # trades settle in USD
        if needed > available + 1e-6:
            return Rejection(
                ERR_REJECTED,
                f"Order rejected - reason:Insufficient funds: the order needs {needed:.2f} USD "
                f"but only {available:.2f} USD are available",
            )
        return None

    def _what_if_state(self, account_id: str, symbol: str, req: OrderRequest) -> OrderStateView:
        values = account_values(self.accounts[account_id], self.market)
        price, fee = self._estimate(symbol, req.order_type, req.action, req.lmt_price,
                                    req.quantity)
        change = (1 if req.action == "BUY" else -1) * req.quantity * price
        before = [values["InitMarginReq"], values["MaintMarginReq"],
                  values["EquityWithLoanValue"]]
        delta = [change, change, -fee]
        after = [b + d for b, d in zip(before, delta, strict=True)]
        margins = [f"{v:.2f}" for v in (*before, *delta, *after)]
        return OrderStateView("PreSubmitted", margins, f"{fee:.2f}", f"{fee:.2f}", f"{fee:.2f}",
                              "USD")

    def _work(self, order: SimOrder) -> None:
        """Fill the order now, later (fill delay fault) or leave it resting."""
        if order.fill_scheduled or not order.is_active or order.hold_remainder:
            return
        if fill_price(order, self.market.quote(order.symbol)) is None:
            return
        delay = self.faults.fill_delay
        if delay > 0:
            order.fill_scheduled = True
            loop = asyncio.get_running_loop()
            self._timers[order.perm_id] = loop.call_later(delay, self._delayed_fill, order)
            return
        self._fill_now(order)

    def _delayed_fill(self, order: SimOrder) -> None:
        self._timers.pop(order.perm_id, None)
        order.fill_scheduled = False
        if order.is_active and fill_price(order, self.market.quote(order.symbol)) is not None:
            self._fill_now(order)

    def _fill_now(self, order: SimOrder) -> None:
        price = fill_price(order, self.market.quote(order.symbol))
        if price is None:
            return
        qty = order.remaining
        partial = self.faults.take_partial()
        if partial is not None and 0 < partial < qty:
            qty = partial
            order.hold_remainder = True
        self._execute(order, qty, price)

    def _execute(self, order: SimOrder, qty: float, price: float) -> Execution:
        """Book one fill and tell everyone."""
        account = self.accounts[order.account]
        fee = self.config.commissions.charge(order.action, qty, price)
        result = account.apply_fill(order.symbol, order.sign * qty, price, fee)
        order.record_fill(qty, price, fee)
        now = datetime.now(UTC)
        if order.status == "Filled":
            order.completed_time = ib_time(now)
            order.completed_status = "Filled"
        execution = Execution(
            exec_id=f"0000{next(self._exec_seq):04x}.{int(now.timestamp()):08x}.01.01",
            time=ib_time(now), client_id=order.client_id, order_id=order.order_id,
            perm_id=order.perm_id, account=order.account, symbol=order.symbol,
            side="BOT" if order.action == "BUY" else "SLD", shares=qty, price=price,
            cum_qty=order.filled, avg_price=order.avg_fill_price, order_ref=order.order_ref,
            commission=fee, realized_pnl=result.realized_pnl,
        )
        self.executions.append(execution)
        self._notify(lambda lst: lst.order_filled(order, execution))
        self._notify_account(order.account)
        return execution
