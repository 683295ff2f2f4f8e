"""The rebalancer trades US stocks, in USD: which cash may pay for them.

An account that reports in another base currency, or holds cash in another currency, is refused
unless ``rebalance.allow_other_currencies`` is set; then only its USD cash and its USD stocks are
rebalanced (targets are percentages of that USD part), and other currencies are left alone. Cash in
another currency is never spent on a USD stock: IBKR would convert it, or lend USD against it.
"""

from __future__ import annotations

from collections.abc import Mapping

from event_processor.services.ibkr_client import AccountEquity, IBKRError

TRADING_CURRENCY = "USD"
# A balance smaller than this (in its currency) is rounding, not cash.
CASH_EPSILON = 0.005


class CurrencyNotTraded(IBKRError):
    """The account's base currency or cash is not the trading currency (USD)."""

    def __init__(self, account_id: str, base: str, other_cash: Mapping[str, float]) -> None:
        held = ", ".join(f"{c} {v:,.2f}" for c, v in sorted(other_cash.items()))
        super().__init__(
            f"account {account_id} reports in {base}" + (f" and holds {held} cash" if held else "")
            + f"; the rebalancer trades {TRADING_CURRENCY} stocks with {TRADING_CURRENCY} cash. "
            "Set rebalance.allow_other_currencies: true to rebalance only its USD cash and USD "
            "stocks, leaving the other currencies alone")
        self.account_id = account_id
        self.base = base
        self.other_cash = dict(other_cash)


def trading_cash(account_id: str, equity: AccountEquity, *, allow_other_currencies: bool) -> float:
    """The USD cash a rebalance of the account may plan with; CurrencyNotTraded if it may not."""
    other = {c: v for c, v in equity.cash_balances.items()
             if c != TRADING_CURRENCY and abs(v) >= CASH_EPSILON}
    if (equity.currency != TRADING_CURRENCY or other) and not allow_other_currencies:
        raise CurrencyNotTraded(account_id, equity.currency, other)
    if equity.cash_balances:
        return equity.cash_balances.get(TRADING_CURRENCY, 0.0)  # a currency not listed is not held
    if equity.currency == TRADING_CURRENCY:
        return equity.cash  # no per-currency ledger: all cash is in the base currency, USD
    raise IBKRError(f"IBKR sent no cash per currency ($LEDGER:ALL) for {account_id}, which "
                    f"reports in {equity.currency}: its USD cash is unknown")
