"""The command registry: one async callable per ``exec_command``."""

from event_processor.commands.base import Command, CommandContext, CommandError, Registry

__all__ = ["Command", "CommandContext", "CommandError", "Registry"]
