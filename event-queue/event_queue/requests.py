"""What a sender may ask for: the event request and the command parameters it carries.

The broker's webhook body and the management service's manual event share this model, so both accept
and reject exactly the same input.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from event_queue.accounts import Accounts
from event_queue.events import ExecCommand, NewEvent, validate_account_id

Symbol = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9.]{0,11}$")]


class Allocation(BaseModel):
    """A target weight for one symbol, in percent of the account's investable value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: Symbol
    allocation: float = Field(ge=0, le=100)


class CommandData(BaseModel):
    """Parameters of a command. Everything is optional; the account's defaults fill the gaps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    allocations: list[Allocation] | None = Field(default=None, max_length=500)
    cash_reserve_percent: float | None = Field(default=None, ge=0, le=100)
    order_type: Literal["MKT", "LMT", "MOC"] | None = None

    @field_validator("allocations")
    @classmethod
    def _sane_allocations(cls, allocations: list[Allocation] | None) -> list[Allocation] | None:
        if allocations is None:
            return None
        symbols = [a.symbol for a in allocations]
        repeated = sorted({s for s in symbols if symbols.count(s) > 1})
        if repeated:
            raise ValueError(f"symbols listed twice: {', '.join(repeated)}")
        if sum(a.allocation for a in allocations) > 100.0 + 1e-9:
            raise ValueError("allocations add up to more than 100 percent")
        return allocations


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
        return NewEvent(
            account_id=self.account_id,
            exec_command=self.exec_command,
            data=self.data.model_dump(exclude_none=True),
        )
