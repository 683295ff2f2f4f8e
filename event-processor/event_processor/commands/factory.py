"""The command factory: the six commands of the plan. There is no ``health`` command any more."""

from __future__ import annotations

from event_queue import ExecCommand

from event_processor.commands.account import print_equity, print_positions
from event_processor.commands.base import Command, Registry
from event_processor.commands.orders import cancel_orders, print_orders
from event_processor.commands.rebalance import print_rebalance, rebalance
from event_processor.config import Settings

COMMANDS: dict[ExecCommand, Command] = {
    ExecCommand.REBALANCE: rebalance,
    ExecCommand.PRINT_REBALANCE: print_rebalance,
    ExecCommand.PRINT_POSITIONS: print_positions,
    ExecCommand.PRINT_EQUITY: print_equity,
    ExecCommand.PRINT_ORDERS: print_orders,
    ExecCommand.CANCEL_ORDERS: cancel_orders,
}


def create_registry(settings: Settings) -> Registry:
    """The registry the processor runs by default (``processing.commands``)."""
    return {command.value: handler for command, handler in COMMANDS.items()}
