"""The accounts file: the allow-list of tradable accounts and their command defaults.

Shared by the broker (webhook validation), the management service (manual events) and the processor
(defaults for a rebalance), so that all three accept exactly the same accounts.

```yaml
accounts:
  - account_id: DU1234567
    enabled: true
    strategy: balanced
    cash_reserve_percent: 2.0
```
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from event_queue.cli import ConfigProblem, clean, read_yaml
from event_queue.events import validate_account_id
from event_queue.weights import check_cash_reserve


class AccountsFileError(ConfigProblem, ValueError):
    """The accounts file is missing or invalid; the message names the file and the bad entry."""


class UnknownAccount(ValueError):
    """The account is not in the accounts file."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} is not in the accounts file")
        self.account_id = account_id


class AccountDisabled(ValueError):
    """The account is in the accounts file but disabled."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} is disabled in the accounts file")
        self.account_id = account_id


class Account(BaseModel):
    """One tradable account and its defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: str
    enabled: bool = True
    strategy: str | None = None
    cash_reserve_percent: float = Field(default=0.0, allow_inf_nan=False)

    _check_account = field_validator("account_id")(validate_account_id)

    @field_validator("cash_reserve_percent")
    @classmethod
    def _sane_reserve(cls, percent: float) -> float:
        check_cash_reserve(percent)
        return percent


class Accounts(BaseModel):
    """The parsed accounts file, indexed by account id (look-ups are O(1) on every request)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: list[Account] = Field(default_factory=list)
    _by_id: dict[str, Account] = PrivateAttr(default_factory=dict)

    @field_validator("accounts")
    @classmethod
    def _unique(cls, accounts: list[Account]) -> list[Account]:
        counts = Counter(a.account_id for a in accounts)
        duplicates = sorted(i for i, n in counts.items() if n > 1)
        if duplicates:
            raise ValueError(f"account ids listed twice: {', '.join(duplicates)}")
        return accounts

    def model_post_init(self, context: Any, /) -> None:
        self._by_id = {a.account_id: a for a in self.accounts}

    def get(self, account_id: str) -> Account | None:
        return self._by_id.get(account_id)

    def require_enabled(self, account_id: str) -> Account:
        """The account, or UnknownAccount / AccountDisabled."""
        account = self.get(account_id)
        if account is None:
            raise UnknownAccount(account_id)
        if not account.enabled:
            raise AccountDisabled(account_id)
        return account


def load_accounts(path: str | Path) -> Accounts:
    """Read and validate an accounts file; AccountsFileError names the file, entry and key."""
    try:
        raw = read_yaml(path, what="accounts file") or {}
    except ConfigProblem as exc:
        raise AccountsFileError(str(exc)) from None
    if isinstance(raw, dict) and "accounts" in raw and isinstance(raw["accounts"], list) \
            and any(isinstance(a, dict) and "id" in a and "account_id" not in a
                    for a in raw["accounts"]):
        raise AccountsFileError(
            f"{path}: this looks like an ibkr-simulator file (accounts with 'id'); the accounts "
            "file lists account_id, enabled, strategy, cash_reserve_percent (config/accounts.yaml)")
    try:
        return Accounts.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {clean(err['msg'])}" for err in exc.errors()
        )
        raise AccountsFileError(f"{path}: invalid accounts file: {details}") from None
