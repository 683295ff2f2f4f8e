"""Read-only account commands: ``print-positions`` and ``print-equity``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from event_processor.commands.base import CommandContext
from event_queue import Event


async def print_positions(event: Event, context: CommandContext) -> dict[str, Any]:
    """The account's holdings, as the result of the event."""
    positions = await context.broker.positions(event.account_id)
    return {"account_id": event.account_id, "positions": [asdict(p) for p in positions]}


async def print_equity(event: Event, context: CommandContext) -> dict[str, Any]:
    """The account's net liquidation value and cash."""
    equity = await context.broker.equity(event.account_id)
    return {"account_id": event.account_id, **asdict(equity)}
