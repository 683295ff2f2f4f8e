"""The TCP listener: accepts clients, runs their sessions and stops them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .session import Registry, Session
from .state import Broker

log = logging.getLogger(__name__)


class TwsServer:
    """Listens for TWS API clients and keeps track of their sessions."""

    def __init__(self, broker: Broker, host: str, port: int, max_version: int) -> None:
        self.registry = Registry(broker, max_version)
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._sessions: dict[Session, asyncio.Task[None]] = {}

    @property
    def listening(self) -> bool:
        """Whether new connections are accepted."""
        return self._server is not None

    @property
    def client_ids(self) -> list[int]:
        """Client ids of the connected, started sessions."""
        return sorted(self.registry.client_ids)

    async def start(self) -> None:
        """Start listening; port 0 picks a free port, kept for later restarts."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("TWS API simulator listening on %s:%s", self.host, self.port)

    def stop_listening(self) -> None:
        """Refuse new connections (the port is closed); existing sessions keep running."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def drop_connections(self) -> None:
        """Abort every client connection and wait for the sessions to end."""
        for session in list(self._sessions):
            session.abort()
        await self._await_sessions(cancel=False)

    async def stop(self) -> None:
        """Stop listening, cancel all sessions and wait for them (no stray tasks)."""
        self.stop_listening()
        for session in list(self._sessions):
            session.abort()
        await self._await_sessions(cancel=True)

    async def _await_sessions(self, cancel: bool) -> None:
        tasks = list(self._sessions.values())
        if cancel:
            for task in tasks:
                task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        session = Session(self.registry, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._sessions[session] = task
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await session.run()
        finally:
            self._sessions.pop(session, None)
