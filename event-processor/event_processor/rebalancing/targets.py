"""Which allocation a rebalance aims for, with which cash reserve and order type.

Inline ``data.allocations`` win; else ``data.strategy``; else the account's ``strategy`` from the
accounts file; each strategy is looked up in the processor config's ``strategies`` section.
``cash_reserve_percent`` comes from the data, else the account, else 0. No targets fail the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from event_processor.config import Settings
from event_processor.services.ibkr_client import OrderType
from event_queue.accounts import Account, Accounts, load_accounts
from event_queue.requests import Allocation, CommandData


class NoTargets(ValueError):
    """Neither the event nor the account names an allocation."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"no target allocation for {account_id}: the event has no allocations or "
                         "strategy and the account has no strategy in the accounts file")
        self.account_id = account_id


class UnknownStrategy(ValueError):
    """A strategy name that is not in the processor config's ``strategies`` section."""

    def __init__(self, name: str, where: str) -> None:
        super().__init__(f"unknown strategy {name!r} ({where}); not in the config's strategies")
        self.name = name


@dataclass(frozen=True)
class Targets:
    """Percent per symbol, cash reserve, order type, and where the allocation came from."""

    allocations: Mapping[str, float]
    cash_reserve_percent: float
    order_type: OrderType
    source: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary."""
        return {"allocations": dict(self.allocations), "source": self.source,
                "cash_reserve_percent": self.cash_reserve_percent, "order_type": self.order_type}


class TargetResolver:
    """Resolves an event's targets from its data, the accounts file and the configured strategies."""

    def __init__(self, strategies: Mapping[str, list[Allocation]], accounts: Accounts | None,
                 *, default_order_type: OrderType = "MKT") -> None:
        self.strategies = strategies
        self.accounts = accounts
        self.default_order_type = default_order_type
        self._check_account_strategies()

    @classmethod
    def from_settings(cls, settings: Settings) -> TargetResolver:
        """Load the accounts file (``rebalance.accounts_file`` / ``ACCOUNTS_FILE``) if one is set.

        Raises AccountsFileError or UnknownStrategy, so a bad setup stops the start-up.
        """
        path = settings.rebalance.accounts_file
        accounts = load_accounts(path) if path is not None else None
        return cls(settings.strategies, accounts,
                   default_order_type=settings.rebalance.default_order_type)

    def _check_account_strategies(self) -> None:
        for account in self.accounts.accounts if self.accounts else []:
            if account.strategy is not None and account.strategy not in self.strategies:
                raise UnknownStrategy(account.strategy, f"account {account.account_id}")

    def resolve(self, account_id: str, data: Mapping[str, Any]) -> Targets:
        """The targets of an event; NoTargets, UnknownStrategy, UnknownAccount or ValidationError."""
        params = CommandData.model_validate(dict(data))
        account = self._account(account_id)
        allocations, source = self._allocations(account_id, params, account)
        reserve = params.cash_reserve_percent
        if reserve is None:
            reserve = account.cash_reserve_percent if account is not None else 0.0
        return Targets(allocations, reserve, params.order_type or self.default_order_type, source)

    def _account(self, account_id: str) -> Account | None:
        if self.accounts is None:
            return None
        return self.accounts.require_enabled(account_id)

    def _allocations(self, account_id: str, params: CommandData,
                     account: Account | None) -> tuple[dict[str, float], str]:
        if params.allocations is not None:  # an empty list never reaches here: it is refused
            return {a.symbol: a.allocation for a in params.allocations}, "event allocations"
        if params.strategy is not None:
            return self._strategy(params.strategy, "event data"), f"strategy {params.strategy}"
        if account is not None and account.strategy is not None:
            return (self._strategy(account.strategy, "accounts file"),
                    f"strategy {account.strategy} (account default)")
        raise NoTargets(account_id)

    def _strategy(self, name: str, where: str) -> dict[str, float]:
        allocations = self.strategies.get(name)
        if allocations is None:
            raise UnknownStrategy(name, where)
        return {a.symbol: a.allocation for a in allocations}
