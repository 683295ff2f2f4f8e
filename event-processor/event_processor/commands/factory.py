"""The command factory: the six commands of the plan. There is no ``health`` command any more."""

from __future__ import annotations

from event_processor.commands.account import print_equity, print_positions
from event_processor.commands.base import Command, Registry
from event_processor.commands.orders import cancel_orders, print_orders
from event_processor.commands.rebalance import RebalanceCommand
from event_processor.config import Settings
from event_processor.rebalancing.targets import TargetResolver
from event_queue import ExecCommand


def create_registry(settings: Settings) -> Registry:
    """The registry the processor runs by default (``processing.commands``).

    Loads the accounts file and checks that every account's strategy is configured, so a bad
    setup stops the start-up (AccountsFileError / UnknownStrategy, both ValueError).
    """
    resolver = TargetResolver.from_settings(settings)
    commands: dict[ExecCommand, Command] = {
        ExecCommand.REBALANCE: RebalanceCommand(settings, resolver, place=True),
        ExecCommand.PRINT_REBALANCE: RebalanceCommand(settings, resolver, place=False),
        ExecCommand.PRINT_POSITIONS: print_positions,
        ExecCommand.PRINT_EQUITY: print_equity,
        ExecCommand.PRINT_ORDERS: print_orders,
        ExecCommand.CANCEL_ORDERS: cancel_orders,
    }
    return {command.value: handler for command, handler in commands.items()}
