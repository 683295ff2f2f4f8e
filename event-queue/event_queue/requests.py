"""What a sender may ask for: the event request and the command parameters it carries.

The broker's webhook body and the management service's manual event share this model, so both accept
and reject exactly the same input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from event_queue.accounts import Accounts
from event_queue.events import ExecCommand, NewEvent, validate_account_id
from event_queue.weights import (
    MAX_CASH_RESERVE_PERCENT,
    InvalidTargets,
    check_cash_reserve,
    check_weights,
)

Symbol = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9.]{0,11}$")]

__all__ = ["Allocation", "CommandData", "EventRequest", "InvalidTargets", "check_allocations",
           "check_cash_reserve", "check_weights"]


def check_allocations(allocations: Sequence[Allocation]) -> None:
    """Refuse an allocation list naming a symbol twice, or whose weights cannot be met."""
    symbols = [a.symbol for a in allocations]
    repeated = sorted({s for s in symbols if symbols.count(s) > 1})
    if repeated:
        raise InvalidTargets(f"symbols listed twice: {', '.join(repeated)}")
    check_weights({a.symbol: a.allocation for a in allocations})


class Allocation(BaseModel):
    """A target weight for one symbol, in percent of the account's investable value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: Symbol
    allocation: float = Field(ge=0, le=100, allow_inf_nan=False)


class CommandData(BaseModel):
    """Parameters of a command. Everything is optional; the account's defaults fill the gaps.

    ``allocations``, when given, must list at least one symbol: an empty list is refused rather than
    read as "not given", which would trade the account's default strategy instead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    allocations: list[Allocation] | None = Field(default=None, max_length=500)
    cash_reserve_percent: float | None = Field(
        default=None, allow_inf_nan=False,
        json_schema_extra={"minimum": 0, "exclusiveMaximum": MAX_CASH_RESERVE_PERCENT})
    order_type: Literal["MKT", "LMT", "MOC"] | None = None

    @field_validator("allocations")
    @classmethod
    def _sane_allocations(cls, allocations: list[Allocation] | None) -> list[Allocation] | None:
        if allocations is not None:
            check_allocations(allocations)
        return allocations

    @field_validator("cash_reserve_percent")
    @classmethod
    def _sane_reserve(cls, percent: float | None) -> float | None:
        if percent is not None:
            check_cash_reserve(percent)
        return percent


class EventRequest(BaseModel):
    """An event as a sender asks for it. ``exec`` is accepted as another name for ``exec_command``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    account_id: str
    exec_command: ExecCommand = Field(validation_alias=AliasChoices("exec_command", "exec"))
    data: CommandData = Field(default_factory=CommandData)

    _check_account = field_validator("account_id")(validate_account_id)

    def to_new_event(self, accounts: Accounts) -> NewEvent:
        """Check the account against the accounts file and build the event to enqueue.

        Raises UnknownAccount or AccountDisabled.
        """
        accounts.require_enabled(self.account_id)  # defaults are applied when the command runs
        # Every field was validated by this model, with NewEvent's own rules: not checked again.
        return NewEvent.model_construct(
            account_id=self.account_id,
            exec_command=self.exec_command,
            data=self.data.model_dump(exclude_none=True),
        )
