"""Simulator configuration: accounts, prices, market data, currencies and commissions, from YAML."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from event_queue.cli import ConfigProblem, read_yaml

from .commissions import CommissionPlan, plan_from_dict

TRADING_CURRENCY = "USD"
MIN_SERVER_VERSION = 157
MAX_SERVER_VERSION = 178
DEFAULT_SERVER_VERSION = 157


class ConfigError(ConfigProblem, ValueError):
    """The configuration file or mapping is not valid."""


@dataclass
class InstrumentConfig:
    """A US stock or ETF the simulator knows, with its opening quote."""

    symbol: str
    bid: float
    ask: float
    last: float
    close: float
    con_id: int = 0
    primary_exchange: str = "NASDAQ"
    stock_type: str = "COMMON"
    long_name: str = ""
    live_data: bool = True  # False: the login has no live subscription, only delayed data


@dataclass
class PositionConfig:
    """An opening position: quantity and average cost per share."""

    symbol: str
    quantity: float
    avg_cost: float


@dataclass
class AccountConfig:
    """An opening account: id, USD cash, positions, base currency and cash in other currencies."""

    account_id: str
    cash: float
    positions: list[PositionConfig] = field(default_factory=list)
    base_currency: str = TRADING_CURRENCY
    other_cash: dict[str, float] = field(default_factory=dict)


@dataclass
class SimulatorConfig:
    """Everything the simulator needs to start: accounts, instruments, commissions."""

    accounts: list[AccountConfig]
    instruments: list[InstrumentConfig]
    commissions: CommissionPlan = field(default_factory=CommissionPlan)
    server_version: int = DEFAULT_SERVER_VERSION
    fx_rates: dict[str, float] = field(default_factory=dict)  # USD per unit of each currency

    def __post_init__(self) -> None:
        validate(self)


def stable_con_id(symbol: str) -> int:
    """A deterministic contract id for a symbol that has none configured."""
    return 100_000 + zlib.crc32(symbol.encode()) % 900_000_000


def validate(config: SimulatorConfig) -> None:
    """Raise ConfigError when the configuration cannot be simulated."""
    if not config.accounts:
        raise ConfigError("at least one account is required (clients need a managed account)")
    ids = [a.account_id for a in config.accounts]
    if len(set(ids)) != len(ids) or any("," in i or not i for i in ids):
        raise ConfigError(f"account ids must be unique, non-empty and without commas: {ids}")
    symbols = {i.symbol for i in config.instruments}
    if len(symbols) != len(config.instruments):
        raise ConfigError("instrument symbols must be unique")
    con_ids = [i.con_id for i in config.instruments]
    if len(set(con_ids)) != len(con_ids):
        raise ConfigError("contract ids must be unique")
    for account in config.accounts:
        for pos in account.positions:
            if pos.symbol not in symbols:
                raise ConfigError(f"{account.account_id}: position in unpriced symbol {pos.symbol}")
    _validate_currencies(config)
    if not MIN_SERVER_VERSION <= config.server_version <= MAX_SERVER_VERSION:
        raise ConfigError(
            f"server_version must be in {MIN_SERVER_VERSION}..{MAX_SERVER_VERSION}"
        )


def _validate_currencies(config: SimulatorConfig) -> None:
    if any(rate <= 0 for rate in config.fx_rates.values()):
        raise ConfigError("fx_rates must be positive (USD per unit of the currency)")
    for account in config.accounts:
        used = {account.base_currency, *account.other_cash} - {TRADING_CURRENCY}
        missing = sorted(used - set(config.fx_rates))
        if missing:
            raise ConfigError(f"{account.account_id}: no fx_rates for {', '.join(missing)}")
        if TRADING_CURRENCY in account.other_cash:
            raise ConfigError(f"{account.account_id}: USD cash is 'cash', not in cash_balances")


def _instrument(symbol: str, raw: dict[str, Any]) -> InstrumentConfig:
    last = float(raw.get("last", 0.0))
    return InstrumentConfig(
        symbol=symbol,
        bid=float(raw.get("bid", last)),
        ask=float(raw.get("ask", last)),
        last=last,
        close=float(raw.get("close", last)),
        con_id=int(raw.get("con_id", 0)) or stable_con_id(symbol),
        primary_exchange=str(raw.get("primary_exchange", "NASDAQ")),
        stock_type=str(raw.get("stock_type", "COMMON")).upper(),
        long_name=str(raw.get("long_name", symbol)),
        live_data=bool(raw.get("live_data", True)),
    )


def _account(raw: Any, index: int) -> AccountConfig:
    where = f"accounts[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping with id, cash and positions")
    if "id" not in raw:
        hint = (" (account_id is the services' accounts file, config/accounts.yaml; the "
                "simulator's file is like ibkr-simulator/accounts.demo.yaml)"
                if "account_id" in raw else "")
        raise ConfigError(f"{where}: missing 'id', the IBKR account id{hint}")
    positions = []
    for number, p in enumerate(raw.get("positions") or []):
        if not isinstance(p, dict) or "symbol" not in p or "quantity" not in p:
            raise ConfigError(f"{where}.positions[{number}]: needs symbol and quantity "
                              "(and optionally avg_cost)")
        positions.append(PositionConfig(symbol=str(p["symbol"]), quantity=float(p["quantity"]),
                                        avg_cost=float(p.get("avg_cost", 0.0))))
    return AccountConfig(
        str(raw["id"]), float(raw.get("cash", 0.0)), positions,
        base_currency=str(raw.get("base_currency", TRADING_CURRENCY)).upper(),
        other_cash={str(c).upper(): float(v) for c, v in (raw.get("cash_balances") or {}).items()},
    )


def _commissions(raw: dict[str, Any]) -> CommissionPlan:
    """The ``commissions`` block, or the older ``commission_per_share`` / ``min_commission`` keys
    (a fixed commission with no pass-through fees)."""
    if "commissions" in raw:
        return plan_from_dict(dict(raw["commissions"] or {}))
    return CommissionPlan(per_share=float(raw.get("commission_per_share", 0.005)),
                          minimum=float(raw.get("min_commission", 1.0)))


def config_from_dict(raw: dict[str, Any]) -> SimulatorConfig:
    """Build a configuration from the mapping a YAML file holds (see accounts.demo.yaml)."""
    try:
        accounts = [_account(a, i) for i, a in enumerate(raw.get("accounts") or [])]
        prices = raw.get("prices") or {}
        if not isinstance(prices, dict):
            raise ConfigError("prices: must map each symbol to its bid, ask, last and close")
        instruments = [_instrument(str(s), dict(p)) for s, p in prices.items()]
        return SimulatorConfig(
            accounts=accounts,
            instruments=instruments,
            commissions=_commissions(raw),
            server_version=int(raw.get("server_version", DEFAULT_SERVER_VERSION)),
            fx_rates={str(c).upper(): float(r) for c, r in (raw.get("fx_rates") or {}).items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid simulator configuration: {exc}") from None


def load_config(path: str | Path) -> SimulatorConfig:
    """Read a YAML configuration file; ConfigError names the file and what is wrong."""
    try:
        raw = read_yaml(path, what="simulator configuration") or {}
    except ConfigProblem as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (accounts, prices, ...)")
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
