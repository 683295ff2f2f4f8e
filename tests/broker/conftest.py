"""Broker test harness: the real app on a real uvicorn (uvloop, httptools) in a thread, real Redis.

Each server runs its own event loop in its own thread, as in production; tests talk to it over
TCP with httpx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from event_broker.app import create_app
from event_broker.config import BrokerSettings, load_settings

TOKEN = "test-token-0123456789abcdef"
SECRET_BYTES = b"s" * 32
SECRET = "whsec_" + base64.b64encode(SECRET_BYTES).decode()
OLD_SECRET_BYTES = b"o" * 32
OLD_SECRET = "whsec_" + base64.b64encode(OLD_SECRET_BYTES).decode()

ACCOUNT = "DU1234567"
OTHER_ACCOUNT = "DU7654321"
DISABLED_ACCOUNT = "DU0000000"
BULK_ACCOUNTS = [f"DU9{i:06d}" for i in range(60)]


class BrokerServer:
    """A broker app served by uvicorn in a background thread, on a socket bound up front."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(
            self.app, loop="uvloop", http="httptools", lifespan="on", log_config=None,
            access_log=False, proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BrokerServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the broker did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()

    def __enter__(self) -> BrokerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_accounts(path: Path) -> Path:
    """An accounts file with two enabled accounts, a disabled one and a bulk set."""
    lines = ["accounts:"]
    for account in [ACCOUNT, OTHER_ACCOUNT, *BULK_ACCOUNTS]:
        lines.append(f"  - account_id: {account}")
    lines += [f"  - account_id: {DISABLED_ACCOUNT}", "    enabled: false"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    return write_accounts(tmp_path / "accounts.yaml")


SettingsFactory = Callable[..., BrokerSettings]


@pytest.fixture
def make_settings(redis_url: str, accounts_file: Path) -> SettingsFactory:
    """Settings on the flushed session Redis with both auth methods; keywords override."""

    def make(**overrides: Any) -> BrokerSettings:
        values: dict[str, Any] = {
            "redis_url": redis_url, "accounts_file": accounts_file,
            "webhook_token": TOKEN, "webhook_secret": SECRET,
        }
        values.update(overrides)
        return load_settings(None, **values)

    return make


@pytest.fixture
def start_broker(make_settings: SettingsFactory) -> Iterator[Callable[..., BrokerServer]]:
    """Start brokers with overridden settings; all are stopped after the test."""
    servers: list[BrokerServer] = []

    def start(**overrides: Any) -> BrokerServer:
        server = BrokerServer(make_settings(**overrides)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def broker(start_broker: Callable[..., BrokerServer]) -> BrokerServer:
    """A broker with the default test settings."""
    return start_broker()


@pytest.fixture
async def client(broker: BrokerServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=broker.url, timeout=10) as http:
        yield http


def event_body(account: str = ACCOUNT, command: str = "rebalance", **extra: Any) -> bytes:
    return json.dumps({"account_id": account, "exec_command": command, **extra}).encode()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def sign(
    body: bytes,
    *,
    secret: bytes = SECRET_BYTES,
    msg_id: str = "msg_1",
    timestamp: int | None = None,
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        "Content-Type": "application/json",
    }
