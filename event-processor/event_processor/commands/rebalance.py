"""Rebalance commands: ``rebalance`` and ``print-rebalance``.

``rebalance`` is made effectively once although events run at least once: it first cancels the
account's open orders (leftovers of an earlier run of this event), then plans from the positions,
cash and prices it reads now, places the SELLs and waits for them, re-reads the cash, and places the
BUYs, every order with ``orderRef`` = the event id. Running it twice converges instead of doubling.
Any failure raises, so the event is requeued; it never reports success for work not done.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from event_processor.commands.base import CommandContext
from event_processor.config import Settings
from event_processor.rebalancing.planner import Plan, PlannedOrder, fit_buys, make_plan
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
        self.settings = settings
        self.resolver = resolver
        self.place = place

    async def __call__(self, event: Event, context: CommandContext) -> dict[str, Any]:
        """Plan (and, for ``rebalance``, trade) the event's account toward its targets."""
        targets = self.resolver.resolve(event.account_id, event.data)
        broker, account = context.broker, event.account_id
        cancelled = await broker.cancel_open_orders(account) if self.place else 0
        snapshot = await read_snapshot(broker, account, list(targets.allocations))
        plan = self._plan(snapshot, targets)
        result: dict[str, Any] = {"account_id": account, "targets": targets.to_dict(),
                                  "plan": plan.to_dict()}
        if not self.place:
            return result
        orders = await self._trade(event, broker, plan, targets)
        return {**result, "cancelled_orders": cancelled, "orders": [asdict(o) for o in orders]}

    def _plan(self, snapshot: Snapshot, targets: Targets) -> Plan:
        rebalance = self.settings.rebalance
        return make_plan(
            positions=snapshot.positions,
            prices={s: q.price for s, q in snapshot.quotes.items()},
            cash=snapshot.equity.cash, targets=targets.allocations,
            cash_reserve_percent=targets.cash_reserve_percent,
            min_order_value=rebalance.min_order_value,
            buy_cost_buffer_percent=rebalance.buy_cost_buffer_percent)

    async def _trade(self, event: Event, broker: Broker, plan: Plan,
                     targets: Targets) -> list[OrderResult]:
        done: list[OrderResult] = []
        try:
            for order in plan.sells:
                done.append(await self._place(event, broker, order, targets))
            for order in await self._fitted_buys(event, broker, plan, targets):
                done.append(await self._place(event, broker, order, targets))
        except Exception as exc:
            raise RebalanceIncomplete(exc, done) from exc
        return done

    async def _fitted_buys(self, event: Event, broker: Broker, plan: Plan,
                           targets: Targets) -> list[PlannedOrder]:
        """The plan's buys, re-fitted to the cash there really is now at the current asks.

        MOC sells fill only at the close, so MOC buys are paid from the cash held before.
        """
        buys = plan.buys
        if not buys:
            return []
        cash = plan.cash_before if targets.order_type == "MOC" else \
            (await broker.equity(event.account_id)).cash
        quotes = await broker.quotes([o.symbol for o in buys])
        priced = [PlannedOrder(o.symbol, "BUY", o.quantity,
                               max(o.price, quotes[o.symbol].execution_price("BUY")))
                  for o in buys]
        rebalance = self.settings.rebalance
        fitted, _, _ = fit_buys(priced, budget=cash - plan.reserve,
                                cost_factor=1 + rebalance.buy_cost_buffer_percent / 100,
                                min_order_value=rebalance.min_order_value)
        return fitted

    async def _place(self, event: Event, broker: Broker, order: PlannedOrder,
                     targets: Targets) -> OrderResult:
        limit = None
        if targets.order_type == "LMT":
            quote = (await broker.quotes([order.symbol]))[order.symbol]
            limit = marketable_limit(order.action, quote.execution_price(order.action))
        request = OrderRequest(symbol=order.symbol, action=order.action, quantity=order.quantity,
                               order_type=targets.order_type,
                               order_ref=event.event_id, limit_price=limit)
        return await broker.place_order(event.account_id, request)


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
