"""Account ledgers: cash, positions, fills and the values IB reports for an account.

The model is a US cash account: positions are fully paid, so the initial and maintenance
margin equal the gross position value and the available funds equal the cash. Stocks trade in
USD against the USD cash; an account may also hold cash in other currencies and report in another
base currency (``base_currency``), its values converted at the market's exchange rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .market import Market

TRADING_CURRENCY = "USD"
# Tags of the per-currency ledger (reqAccountSummary with "$LEDGER", "$LEDGER:ALL", "$LEDGER:EUR").
LEDGER_TAGS = ("CashBalance", "TotalCashBalance", "StockMarketValue", "NetLiquidationByCurrency",
               "ExchangeRate")


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
    cash: float  # USD, the currency every trade settles in
    holdings: dict[str, Holding] = field(default_factory=dict)
    base_currency: str = TRADING_CURRENCY
    other_cash: dict[str, float] = field(default_factory=dict)  # cash in other currencies

    def cash_in_usd(self, market: Market) -> float:
        """All cash, in USD at the market's exchange rates."""
        return self.cash + sum(v * market.usd_per(c) for c, v in self.other_cash.items())

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
    """The numeric account tags, in the account's base currency, consistent with cash, positions
    and prices."""
    to_base = 1.0 / market.usd_per(account.base_currency)
    rows = value_holdings(account, market)
    long_value = sum(r.market_value for r in rows if r.quantity > 0) * to_base
    gross = sum(abs(r.market_value) for r in rows) * to_base
    cash = account.cash_in_usd(market) * to_base
    net_liq = cash + sum(r.market_value for r in rows) * to_base
    margin = gross
    available = net_liq - margin
    return {
        "NetLiquidation": net_liq,
        "TotalCashValue": cash,
        "SettledCash": cash,
        "CashBalance": cash,
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
        "UnrealizedPnL": sum(r.unrealized_pnl for r in rows) * to_base,
        "RealizedPnL": sum(r.realized_pnl for r in rows) * to_base,
    }


def account_tags(account: Account, market: Market) -> list[tuple[str, str, str]]:
    """(tag, value, currency) rows as IB reports them for an account, in its base currency."""
    base = account.base_currency
    rows = [
        ("AccountCode", account.account_id, ""),
        ("AccountType", "INDIVIDUAL", ""),
        ("Currency", base, base),
    ]
    for tag, value in account_values(account, market).items():
        rows.append((tag, f"{value:.2f}" if tag not in ("Cushion", "Leverage") else f"{value:.4f}",
                     base))
    return rows


def ledger_tags(account: Account, market: Market, which: str) -> list[tuple[str, str, str]]:
    """The per-currency ledger rows for ``$LEDGER`` (``which`` "BASE"), ``$LEDGER:ALL`` ("ALL")
    or ``$LEDGER:<currency>``: cash, stock value and net liquidation per currency, and "BASE" totals."""
    base_rate = market.usd_per(account.base_currency)
    stocks = sum(r.market_value for r in value_holdings(account, market))
    balances = {TRADING_CURRENCY: account.cash, **account.other_cash}
    wanted = [*balances, "BASE"] if which == "ALL" else [which]
    rows = []
    for currency in wanted:
        if currency == "BASE":
            cash = account.cash_in_usd(market) / base_rate
            values = (cash, cash, stocks / base_rate, cash + stocks / base_rate, 1.0)
        elif currency in balances:
            cash = balances[currency]
            held = stocks if currency == TRADING_CURRENCY else 0.0
            values = (cash, cash, held, cash + held, market.usd_per(currency) / base_rate)
        else:
            continue
        rows += [(tag, f"{value:.2f}" if tag != "ExchangeRate" else f"{value:.6f}", currency)
                 for tag, value in zip(LEDGER_TAGS, values, strict=True)]
    return rows
