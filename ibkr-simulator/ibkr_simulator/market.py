"""Instruments (US stocks and ETFs on SMART), their quotes, and exchange rates."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .config import InstrumentConfig, stable_con_id


@dataclass
class Instrument:
    """Static contract data for one symbol."""

    symbol: str
    con_id: int
    primary_exchange: str
    stock_type: str
    long_name: str
    currency: str = "USD"
    sec_type: str = "STK"
    live_data: bool = True  # False: only delayed data (no live subscription for this login)


@dataclass
class Quote:
    """Current bid, ask, last and previous close of one symbol."""

    bid: float
    ask: float
    last: float
    close: float

    def mark(self) -> float:
        """The price positions are valued at: last, else the midpoint, else the close."""
        if self.last > 0:
            return self.last
        if self.bid > 0 and self.ask > 0:
            return (self.bid + self.ask) / 2
        return self.close


@dataclass
class ContractQuery:
    """The contract fields a client sends to identify an instrument."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""


class Market:
    """All known instruments, their current quotes, and the USD value of other currencies."""

    def __init__(self, instruments: list[InstrumentConfig],
                 fx_rates: dict[str, float] | None = None) -> None:
        self.instruments: dict[str, Instrument] = {}
        self.quotes: dict[str, Quote] = {}
        self.fx_rates: dict[str, float] = {"USD": 1.0, **(fx_rates or {})}
        for cfg in instruments:
            self.add(cfg)

    def add(self, cfg: InstrumentConfig) -> None:
        """Add or replace an instrument and its quote."""
        self.instruments[cfg.symbol] = Instrument(
            cfg.symbol, cfg.con_id, cfg.primary_exchange, cfg.stock_type, cfg.long_name,
            live_data=cfg.live_data,
        )
        self.quotes[cfg.symbol] = Quote(cfg.bid, cfg.ask, cfg.last, cfg.close)

    def ensure(self, symbol: str) -> Instrument:
        """The instrument for a symbol, created with an empty quote when unknown."""
        if symbol not in self.instruments:
            self.add(InstrumentConfig(symbol, 0.0, 0.0, 0.0, 0.0, stable_con_id(symbol)))
        return self.instruments[symbol]

    def usd_per(self, currency: str) -> float:
        """USD per unit of ``currency`` (1 for USD)."""
        return self.fx_rates[currency]

    def set_live_data(self, symbol: str, live: bool) -> None:
        """Give (True) or take away (False) the login's live data for a symbol."""
        self.ensure(symbol).live_data = live

    def quote(self, symbol: str) -> Quote:
        """The quote of a known symbol."""
        return self.quotes[symbol]

    def set_quote(
        self,
        symbol: str,
        bid: float | None = None,
        ask: float | None = None,
        last: float | None = None,
        close: float | None = None,
    ) -> Quote:
        """Change some of a symbol's prices (unknown symbols are added)."""
        self.ensure(symbol)
        quote = self.quotes[symbol]
        if bid is not None:
            quote.bid = float(bid)
        if ask is not None:
            quote.ask = float(ask)
        if last is not None:
            quote.last = float(last)
        if close is not None:
            quote.close = float(close)
        return quote

    def resolve(self, query: ContractQuery) -> Instrument | None:
        """The instrument a client's contract designates, or None (IB error 200)."""
        if query.con_id > 0:
            found = [i for i in self.instruments.values() if i.con_id == query.con_id]
            return found[0] if found else None
        instrument = self.instruments.get(query.symbol.upper())
        if instrument is None:
            return None
        if query.sec_type not in ("", "STK") or query.currency not in ("", "USD"):
            return None
        if query.exchange not in ("", "SMART", instrument.primary_exchange):
            return None
        return instrument

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Instruments and quotes as plain data."""
        return {
            symbol: {**asdict(self.instruments[symbol]), **asdict(quote)}
            for symbol, quote in self.quotes.items()
        }
