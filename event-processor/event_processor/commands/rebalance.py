"""Rebalance commands: ``rebalance`` and ``print-rebalance``.

``rebalance`` is made effectively once although events run at least once: it first cancels the
account's open orders (leftovers of an earlier run of this event), then plans from the positions,
cash and live quotes it reads now, places the SELLs and waits for their fills, reads the cash and
quotes again, fits the BUYs to them, places the BUYs and waits for their fills; every order with
``orderRef`` = the event id. MOC orders are waited for like the others, until the close auction
fills them: the BUYs go in only once the SELLs' proceeds are cash, so a MOC rebalance ends at the
targets like a MKT one (README: "MOC rebalances"). Running it twice converges instead of doubling.
Any failure raises, so the event is requeued; it never reports success for work not done.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass
from typing import Any

from event_processor.commands.base import CommandContext
from event_processor.config import Settings
from event_processor.rebalancing.costs import CommissionPlan, Costs
from event_processor.rebalancing.currency import trading_cash
from event_processor.rebalancing.planner import (
    Plan,
    PlannedOrder,
    Tolerance,
    make_plan,
    refit_buys,
)
from event_processor.rebalancing.quotes import QuotePolicy, tradable_prices
from event_processor.rebalancing.targets import TargetResolver, Targets
from event_processor.services.ibkr_client import (
    AccountEquity,
    Broker,
    IBKRError,
    OrderRequest,
    OrderResult,
    Quote,
)
from event_queue import Event


class RebalanceIncomplete(IBKRError):
    """An order of the rebalance failed; says which orders were done before it."""

    def __init__(self, error: Exception, done: list[OrderResult]) -> None:
        summary = ", ".join(f"{r.action} {r.filled:g}/{r.quantity:g} {r.symbol}" for r in done)
        super().__init__(f"{type(error).__name__}: {error}; done before: [{summary}]")
        self.done = done


@dataclass(frozen=True)
class Snapshot:
    """The account as read just before planning."""

    positions: dict[str, float]
    equity: AccountEquity
    quotes: dict[str, Quote]


class RebalanceCommand:
    """``rebalance`` (``place=True``) or ``print-rebalance`` (``place=False``, read-only)."""

    def __init__(self, settings: Settings, resolver: TargetResolver, *, place: bool) -> None:
        rebalance = settings.rebalance
        self.settings = settings
        self.resolver = resolver
        self.place = place
        self.costs = Costs(CommissionPlan.from_config(rebalance.commissions),
                           rebalance.slippage_percent)
        self.tolerance = Tolerance(rebalance.drift_band_percent, rebalance.min_order_value)
        self.policy = QuotePolicy(rebalance.max_spread_percent, rebalance.allow_delayed_quotes)

    async def __call__(self, event: Event, context: CommandContext) -> dict[str, Any]:
        """Plan (and, for ``rebalance``, trade) the event's account toward its targets."""
        targets = self.resolver.resolve(event.account_id, event.data)
        broker, account = context.broker, event.account_id
        cancelled = await broker.cancel_open_orders(account) if self.place else 0
        snapshot = await read_snapshot(broker, account, list(targets.allocations))
        plan = self._plan(account, snapshot, targets)
        result: dict[str, Any] = {"account_id": account, "targets": targets.to_dict(),
                                  "plan": plan.to_dict()}
        if not self.place:
            return result
        trade = _Trade(plan)
        await self._trade(event, broker, trade, targets)
        return {**result, "cancelled_orders": cancelled,
                "orders": [asdict(o) for o in trade.done], "symbols": trade.symbols()}

    def _plan(self, account: str, snapshot: Snapshot, targets: Targets) -> Plan:
        cash = trading_cash(account, snapshot.equity,
                            allow_other_currencies=self.settings.rebalance.allow_other_currencies)
        return make_plan(
            positions=snapshot.positions, prices=tradable_prices(snapshot.quotes, self.policy),
            cash=cash, targets=targets.allocations,
            cash_reserve_percent=targets.cash_reserve_percent, costs=self.costs,
            tolerance=self.tolerance)

    async def _trade(self, event: Event, broker: Broker, trade: _Trade, targets: Targets) -> None:
        try:
            await self._place_all(event, broker, trade, trade.plan.sells, targets)
            buys = await self._fitted_buys(event, broker, trade)
            await self._place_all(event, broker, trade, buys, targets)
        except Exception as exc:
            raise RebalanceIncomplete(exc, trade.done) from exc

    async def _place_all(self, event: Event, broker: Broker, trade: _Trade,
                         orders: list[PlannedOrder], targets: Targets) -> None:
        """MKT and LMT orders one after the other; MOC orders all at once, for the same close."""
        if targets.order_type != "MOC":
            for order in orders:
                trade.done.append(await self._place(event, broker, order, targets))
            return
        outcomes = await asyncio.gather(
            *(self._place(event, broker, order, targets) for order in orders),
            return_exceptions=True)
        trade.done.extend(o for o in outcomes if isinstance(o, OrderResult))
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _fitted_buys(self, event: Event, broker: Broker, trade: _Trade) -> list[PlannedOrder]:
        """The plan's BUYs fitted to the cash there is now (the SELLs filled) at current quotes."""
        plan = trade.plan
        if not plan.buys:
            return []
        account = event.account_id
        positions = {p.symbol: p.quantity for p in await broker.positions(account)}
        cash = trading_cash(account, await broker.equity(account),
                            allow_other_currencies=self.settings.rebalance.allow_other_currencies)
        quotes = await broker.quotes(sorted({o.symbol for o in plan.buys} | set(positions)))
        buys, reasons = refit_buys(plan, positions=positions, cash=cash,
                                   prices=tradable_prices(quotes, self.policy), costs=self.costs,
                                   tolerance=self.tolerance)
        trade.reasons.update(reasons)
        return buys

    async def _place(self, event: Event, broker: Broker, order: PlannedOrder,
                     targets: Targets) -> OrderResult:
        limit = None
        if targets.order_type == "LMT":
            quote = await broker.quotes([order.symbol])
            price = tradable_prices(quote, self.policy)[order.symbol]
            limit = marketable_limit(order.action, price.ask if order.action == "BUY" else price.bid)
        timeout = self.settings.rebalance.moc_fill_timeout if targets.order_type == "MOC" else None
        request = OrderRequest(symbol=order.symbol, action=order.action, quantity=order.quantity,
                               order_type=targets.order_type, order_ref=event.event_id,
                               limit_price=limit, fill_timeout=timeout)
        return await broker.place_order(event.account_id, request)


class _Trade:
    """A plan being traded: the orders done so far and why BUYs were cut after the SELLs."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.done: list[OrderResult] = []
        self.reasons: dict[str, str] = {}

    def symbols(self) -> list[dict[str, Any]]:
        """Per symbol: target weight, price used, target shares, current, ordered, filled, why."""
        done = {r.symbol: r for r in self.done}
        rows = []
        for line in self.plan.lines:
            result = done.get(line.symbol)
            signed = -1 if result is not None and result.action == "SELL" else 1
            rows.append({
                "symbol": line.symbol, "target_weight": line.target_weight,
                "price": line.price.mark, "bid": line.price.bid, "ask": line.price.ask,
                "target_shares": round(line.target_shares, 4), "current": line.current,
                "ordered": signed * result.quantity if result else 0,
                "filled": signed * result.filled if result else 0,
                "avg_price": result.avg_price if result else None,
                "reason": self.reasons.get(line.symbol, line.reason),
            })
        return rows


def marketable_limit(action: str, price: float) -> float:
    """A limit at the touch, on the cent grid: BUY rounded up, SELL rounded down."""
    cents = price * 100
    return (math.ceil(cents - 1e-6) if action == "BUY" else math.floor(cents + 1e-6)) / 100


async def read_snapshot(broker: Broker, account_id: str, target_symbols: list[str]) -> Snapshot:
    """Positions, equity and a quote for every held and every target symbol, read now."""
    positions = {p.symbol: p.quantity for p in await broker.positions(account_id)}
    equity = await broker.equity(account_id)
    symbols = sorted(set(target_symbols) | set(positions))
    return Snapshot(positions, equity, await broker.quotes(symbols))
