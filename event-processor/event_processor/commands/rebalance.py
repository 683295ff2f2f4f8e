"""Rebalance commands: ``rebalance`` and ``print-rebalance``.

The rebalancer (targets, order sizing, ``orderRef`` = event id) is a later step. Until it exists both
commands read the account through the broker and then fail the event with a clear error, so an
event is never reported done when nothing was traded.
"""

from __future__ import annotations

from typing import Any, NoReturn

from event_queue import Event

from event_processor.commands.base import CommandContext


class RebalancerNotBuilt(Exception):
    """The rebalancing logic is not wired yet."""

    def __init__(self, exec_command: str) -> None:
        super().__init__(f"{exec_command}: the rebalancer is not built yet")


async def rebalance(event: Event, context: CommandContext) -> NoReturn:
    """Bring the account to its target allocation (not built yet: always fails the event)."""
    await _read_account(event, context)
    raise RebalancerNotBuilt("rebalance")


async def print_rebalance(event: Event, context: CommandContext) -> NoReturn:
    """Show the orders a rebalance would place (not built yet: always fails the event)."""
    await _read_account(event, context)
    raise RebalancerNotBuilt("print-rebalance")


async def _read_account(event: Event, context: CommandContext) -> dict[str, Any]:
    positions = await context.broker.positions(event.account_id)
    equity = await context.broker.equity(event.account_id)
    return {"positions": positions, "equity": equity}
