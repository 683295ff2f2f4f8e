"""Account ledgers: cash, positions, fills and the values IB reports for an account.

The model is a US cash account: positions are fully paid, so the initial and maintenance
margin equal the gross position value and the available funds equal the cash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .market import Market

BASE_CURRENCY = "USD"


@dataclass
class Holding:
    """A position in one symbol; avg_cost includes commissions, as IB reports it."""

    quantity: float
    avg_cost: float
    realized_pnl: float = 0.0


@dataclass
class FillResult:
    """What a fill did to the account: the realized P&L of this execution, if any."""

    realized_pnl: float | None


@dataclass
class Account:
    """One managed account."""

    account_id: str
    cash: float
    holdings: dict[str, Holding] = field(default_factory=dict)

    def set_position(self, symbol: str, quantity: float, avg_cost: float) -> None:
        """Overwrite a position (quantity 0 removes it)."""
        if quantity == 0:
            self.holdings.pop(symbol, None)
        else:
            self.holdings[symbol] = Holding(float(quantity), float(avg_cost))

    def quantity(self, symbol: str) -> float:
        """Shares held in a symbol (0 when none)."""
        holding = self.holdings.get(symbol)
        return holding.quantity if holding else 0.0

    def apply_fill(self, symbol: str, signed_qty: float, price: float, commission: float) -> FillResult:
        """Book a fill: cash moves by the trade value and the commission."""
        self.cash -= signed_qty * price + commission
        holding = self.holdings.get(symbol)
        if holding is None:
            holding = self.holdings[symbol] = Holding(0.0, 0.0)
        realized = _apply_to_holding(holding, signed_qty, price, commission)
        if holding.quantity == 0:
            self.holdings.pop(symbol, None)
        return FillResult(realized)


def _apply_to_holding(
    holding: Holding, signed_qty: float, price: float, commission: float
) -> float | None:
    """Update quantity and average cost; return the realized P&L when the fill reduces."""
    old_qty = holding.quantity
    new_qty = old_qty + signed_qty
    if old_qty == 0 or (old_qty > 0) == (signed_qty > 0):
        cost = old_qty * holding.avg_cost + signed_qty * price + commission
        holding.quantity = new_qty
        holding.avg_cost = cost / new_qty if new_qty else 0.0
        return None
    closed = min(abs(signed_qty), abs(old_qty))
    direction = 1.0 if old_qty > 0 else -1.0
    realized = closed * direction * (price - holding.avg_cost) - commission
    holding.realized_pnl += realized
    holding.quantity = new_qty
    if new_qty != 0 and (new_qty > 0) != (old_qty > 0):
        holding.avg_cost = price
    return realized


@dataclass
class Valuation:
    """A position valued at the market price."""

    symbol: str
    quantity: float
    market_price: float
    market_value: float
    avg_cost: float
    unrealized_pnl: float
    realized_pnl: float


def value_holdings(account: Account, market: Market) -> list[Valuation]:
    """Every position of an account valued at its symbol's mark price."""
    rows = []
    for symbol, holding in sorted(account.holdings.items()):
        price = market.quote(symbol).mark()
        value = holding.quantity * price
        rows.append(
            Valuation(
                symbol,
                holding.quantity,
                price,
                value,
                holding.avg_cost,
                value - holding.quantity * holding.avg_cost,
                holding.realized_pnl,
            )
        )
    return rows


def account_values(account: Account, market: Market) -> dict[str, float]:
    """The numeric account tags (all in USD) consistent with cash, positions and prices."""
    rows = value_holdings(account, market)
    long_value = sum(r.market_value for r in rows if r.quantity > 0)
    gross = sum(abs(r.market_value) for r in rows)
    net_liq = account.cash + sum(r.market_value for r in rows)
    margin = gross
    available = net_liq - margin
    return {
        "NetLiquidation": net_liq,
        "TotalCashValue": account.cash,
        "SettledCash": account.cash,
        "CashBalance": account.cash,
        "AccruedCash": 0.0,
        "StockMarketValue": long_value,
        "GrossPositionValue": gross,
        "EquityWithLoanValue": net_liq,
        "PreviousDayEquityWithLoanValue": net_liq,
        "RegTEquity": net_liq,
        "RegTMargin": margin,
        "SMA": available,
        "InitMarginReq": margin,
        "MaintMarginReq": margin,
        "FullInitMarginReq": margin,
        "FullMaintMarginReq": margin,
        "AvailableFunds": available,
        "FullAvailableFunds": available,
        "ExcessLiquidity": available,
        "FullExcessLiquidity": available,
        "BuyingPower": max(available, 0.0),
        "Cushion": available / net_liq if net_liq else 0.0,
        "Leverage": gross / net_liq if net_liq else 0.0,
        "UnrealizedPnL": sum(r.unrealized_pnl for r in rows),
        "RealizedPnL": sum(r.realized_pnl for r in rows),
    }


def account_tags(account: Account, market: Market) -> list[tuple[str, str, str]]:
    """(tag, value, currency) rows as IB reports them for an account."""
    rows = [
        ("AccountCode", account.account_id, ""),
        ("AccountType", "INDIVIDUAL", ""),
        ("Currency", BASE_CURRENCY, BASE_CURRENCY),
    ]
    for tag, value in account_values(account, market).items():
        rows.append((tag, f"{value:.2f}" if tag not in ("Cushion", "Leverage") else f"{value:.4f}",
                     BASE_CURRENCY))
    return rows
