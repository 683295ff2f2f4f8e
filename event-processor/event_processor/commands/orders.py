"""Order commands: ``print-orders`` and ``cancel-orders``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from event_processor.commands.base import CommandContext
from event_queue import Event


async def print_orders(event: Event, context: CommandContext) -> dict[str, Any]:
    """The account's working orders."""
    orders = await context.broker.open_orders(event.account_id)
    return {"account_id": event.account_id, "orders": [asdict(o) for o in orders]}


async def cancel_orders(event: Event, context: CommandContext) -> dict[str, Any]:
    """Cancel every working order of the account."""
    cancelled = await context.broker.cancel_open_orders(event.account_id)
    return {"account_id": event.account_id, "cancelled": cancelled}
