"""What a command is, what it gets to run with, and how the registry resolves one."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from event_processor.config import Settings
from event_processor.services.ibkr_client import Broker
from event_queue import Event


@dataclass(frozen=True)
class CommandContext:
    """Everything a command may use besides its event."""

    settings: Settings
    broker: Broker
    consumer_id: str


class Command(Protocol):
    """An async callable that runs one event and returns a JSON-able result (or raises)."""

    async def __call__(self, event: Event, context: CommandContext) -> Any:
        """Run the command for ``event``; any exception fails the event."""
        ...


Registry = Mapping[str, Command]
RegistryFactory = Callable[[Settings], Registry]


class CommandError(Exception):
    """An event cannot be run: its record is malformed or its command is unknown."""


class MalformedEvent(CommandError):
    """The stored record did not decode."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed event record: {reason}")
        self.reason = reason


class UnknownCommand(CommandError):
    """No command of this name is registered."""

    def __init__(self, exec_command: str) -> None:
        super().__init__(f"unknown command {exec_command!r}")
        self.exec_command = exec_command


def resolve_command(registry: Registry, event: Event) -> Command:
    """The command to run for ``event``; MalformedEvent or UnknownCommand when there is none."""
    if event.malformed:
        raise MalformedEvent(event.malformed)
    command = registry.get(event.exec_command)
    if command is None:
        raise UnknownCommand(event.exec_command)
    return command


def load_registry(spec: str, settings: Settings) -> Registry:
    """Import ``package.module:attribute`` and build the registry from it.

    The attribute is either a mapping of command names to commands, or a factory taking the
    settings and returning one. Raises ValueError naming ``processing.commands`` when it is neither.
    """
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"processing.commands: cannot load {spec!r}: {exc}") from exc
    registry = target if isinstance(target, Mapping) else target(settings)
    if not isinstance(registry, Mapping):
        raise ValueError(f"processing.commands: {spec!r} did not give a mapping of commands")
    return registry
