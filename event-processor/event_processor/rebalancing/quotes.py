"""Which quotes a rebalance may trade on: live (delayed only when configured), two-sided, and with
a spread no wider than ``rebalance.max_spread_percent``. A close alone is never a price to trade on.

Every symbol of a rebalance, held or targeted, needs such a quote: the account's value, and so
every target, is computed from them. One bad symbol fails the command, naming every bad symbol and
why, before any order is placed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from event_processor.rebalancing.planner import Price
from event_processor.services.ibkr_client import (
    DELAYED,
    LIVE,
    MARKET_DATA_TYPES,
    IBKRError,
    Quote,
)


class UnusableQuotes(IBKRError):
    """Symbols without a quote the rebalance may trade on; ``problems`` says why for each."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        listed = "; ".join(f"{symbol}: {why}" for symbol, why in sorted(problems.items()))
        super().__init__(f"no tradable quote for {', '.join(sorted(problems))} ({listed}); "
                         "nothing was traded")
        self.problems = dict(problems)


@dataclass(frozen=True)
class QuotePolicy:
    """What a quote must be to trade on it."""

    max_spread_percent: float
    allow_delayed: bool = False

    def accepted_types(self) -> frozenset[int]:
        """Live data, and delayed data when allowed; frozen data never (it is yesterday's)."""
        return frozenset({LIVE, DELAYED} if self.allow_delayed else {LIVE})


def tradable_prices(quotes: Mapping[str, Quote], policy: QuotePolicy) -> dict[str, Price]:
    """A :class:`Price` per symbol, or UnusableQuotes naming every symbol that has none."""
    prices: dict[str, Price] = {}
    problems: dict[str, str] = {}
    for symbol, quote in quotes.items():
        problem = quote_problem(quote, policy)
        if problem is None:
            prices[symbol] = _price(quote)
        else:
            problems[symbol] = problem
    if problems:
        raise UnusableQuotes(problems)
    return prices


def quote_problem(quote: Quote, policy: QuotePolicy) -> str | None:
    """Why the quote may not be traded on, or None."""
    kind = MARKET_DATA_TYPES.get(quote.data_type, f"type {quote.data_type}")
    if quote.data_type not in policy.accepted_types():
        hint = "; set rebalance.allow_delayed_quotes to trade on it" \
            if quote.data_type == DELAYED else ""
        return f"{kind} data{hint}"
    if quote.bid is None or quote.ask is None:
        return _missing_side(quote)
    if quote.ask < quote.bid:
        return f"crossed quote (bid {quote.bid:g} > ask {quote.ask:g})"
    spread = (quote.ask - quote.bid) / ((quote.ask + quote.bid) / 2) * 100
    if spread > policy.max_spread_percent:
        return (f"spread {spread:.2f} % (bid {quote.bid:g}, ask {quote.ask:g}) is wider than "
                f"max_spread_percent {policy.max_spread_percent:g}")
    return None


def _missing_side(quote: Quote) -> str:
    sides = [name for name, value in (("bid", quote.bid), ("ask", quote.ask)) if value is None]
    if quote.last is None and quote.close is not None:
        what = f"only a close ({quote.close:g}), no bid, ask or last"
    else:
        what = f"no {' or '.join(sides)}"
    return what + (f" ({quote.notice})" if quote.notice else "")


def _price(quote: Quote) -> Price:
    assert quote.bid is not None and quote.ask is not None
    mid = (quote.bid + quote.ask) / 2
    mark = quote.last if quote.last is not None and quote.bid <= quote.last <= quote.ask else mid
    return Price(bid=quote.bid, ask=quote.ask, mark=mark)
