"""The in-process simulator: broker state, TWS API listener and optional HTTP admin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .admin import Admin
from .config import SimulatorConfig, config_from_dict, load_config
from .http_admin import AdminHttpServer
from .server import TwsServer
from .state import Broker

ConfigSource = SimulatorConfig | dict[str, Any] | str | Path


def as_config(source: ConfigSource) -> SimulatorConfig:
    """A configuration from an object, a YAML-shaped mapping or a YAML file path."""
    if isinstance(source, SimulatorConfig):
        return source
    if isinstance(source, dict):
        return config_from_dict(source)
    return load_config(source)


class Simulator:
    """An IB Gateway stand-in that ib_async and ib_insync clients connect to over TCP.

    Use ``start_simulator`` in tests; ``sim.port`` is the API port, ``sim.admin`` holds
    the control operations (also served over HTTP when ``admin_port`` is given).
    """

    def __init__(self, config: ConfigSource, host: str = "127.0.0.1", port: int = 0,
                 admin_host: str = "127.0.0.1", admin_port: int | None = None,
                 server_version: int | None = None) -> None:
        self.config = as_config(config)
        if server_version is not None:
            self.config.server_version = server_version
            self.config.__post_init__()
        self.broker = Broker(self.config)
        self.server = TwsServer(self.broker, host, port, self.config.server_version)
        self.admin = Admin(self.broker, self.server)
        self._http = (AdminHttpServer(self.admin, admin_host, admin_port)
                      if admin_port is not None else None)

    @property
    def host(self) -> str:
        """The API host."""
        return self.server.host

    @property
    def port(self) -> int:
        """The API port (the real one once started, also when 0 was asked for)."""
        return self.server.port

    @property
    def admin_port(self) -> int | None:
        """The HTTP admin port, or None when HTTP admin is off."""
        return self._http.port if self._http else None

    @property
    def accounts(self) -> list[str]:
        """Managed account ids."""
        return self.broker.account_ids

    async def start(self) -> None:
        """Start listening for API clients (and admin HTTP)."""
        await self.server.start()
        if self._http:
            await self._http.start()

    async def stop(self) -> None:
        """Close every session and listener and cancel pending fills."""
        if self._http:
            await self._http.stop()
        await self.server.stop()
        self.broker.stop()


@asynccontextmanager
async def start_simulator(config: ConfigSource, *, host: str = "127.0.0.1", port: int = 0,
                          admin_port: int | None = None,
                          server_version: int | None = None) -> AsyncIterator[Simulator]:
    """Run a simulator for the duration of an ``async with`` block."""
    sim = Simulator(config, host=host, port=port, admin_port=admin_port,
                    server_version=server_version)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()
