"""Start a private Redis Cluster or a Sentinel-watched primary and replica, for tests and for trying
the queue past one Redis: each node is the same ``redis-server`` binary (or ``valkey-server``)
that :mod:`event_queue.redis_server` finds, started in cluster or sentinel mode. Nothing is
downloaded; every node listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from event_queue.redis_server import (
    RedisBinary,
    default_binary,
    free_port,
    kill_process,
    stop_process,
)

SLOTS = 16384
BUS_OFFSET = 10000  # a cluster node also listens on its port + 10000 (the cluster bus)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (so both are below 65536)."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        if _free(port) and _free(port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class NodeProcess:
    """One server process on 127.0.0.1 with the given options (a config file is written)."""

    def __init__(self, binary: RedisBinary, directory: Path, options: dict[str, str],
                 *, sentinel: bool = False, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.directory = directory / str(self.port)
        self.directory.mkdir(parents=True)
        self.options = {"port": str(self.port), "bind": "127.0.0.1", "protected-mode": "no",
                        "dir": str(self.directory), "save": '""', **options}
        self.sentinel = sentinel
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 10.0) -> NodeProcess:
        """Start the process (again, after a kill) and wait until it answers PING."""
        config = self.directory / "node.conf"
        if not config.exists():  # a restarted node keeps what it (or Sentinel) rewrote
            config.write_text("".join(f"{k} {v}\n" for k, v in self.options.items()))
        args = [self.binary.path, str(config)] + (["--sentinel"] if self.sentinel else [])
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis node exited with {self.process.returncode}")
            if self.command("PING").startswith("+PONG"):
                return self
            time.sleep(0.02)
        raise RuntimeError("redis node did not start in time")

    def command(self, *parts: str, timeout: float = 1.0) -> str:
        """Send one command in RESP; returns the raw reply ('' when unreachable)."""
        request = f"*{len(parts)}\r\n" + "".join(f"${len(p.encode())}\r\n{p}\r\n" for p in parts)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(request.encode())
                return _read_reply(sock)
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the node, as a crash would."""
        kill_process(self.process)

    def stop(self) -> None:
        """Stop the node."""
        stop_process(self.process)


def _read_reply(sock: socket.socket) -> str:
    data = b""
    sock.settimeout(1.0)
    while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


class _Topology:
    def __init__(self, binary: RedisBinary | None) -> None:
        self.binary = binary or default_binary()
        self._tmp = tempfile.TemporaryDirectory(prefix="redis-topology-")
        self.directory = Path(self._tmp.name)
        self.nodes: list[NodeProcess] = []

    def stop(self) -> None:
        """Stop every node and remove the data."""
        for node in self.nodes:
            node.stop()
        self._tmp.cleanup()

    def _node(self, options: dict[str, str], *, sentinel: bool = False,
              port: int | None = None) -> NodeProcess:
        node = NodeProcess(self.binary, self.directory, options, sentinel=sentinel, port=port)
        self.nodes.append(node)
        return node.start()


_DURABLE = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}


class LocalCluster(_Topology):
    """A Redis Cluster of ``masters`` primaries (no replicas), slots split evenly."""

    def __init__(self, binary: RedisBinary | None = None, *, masters: int = 3) -> None:
        super().__init__(binary)
        self.masters = masters

    @property
    def url(self) -> str:
        """``redis+cluster://`` naming every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, *, timeout: float = 30.0) -> LocalCluster:
        """Start the nodes, give each its slots, join them, and wait for ``cluster_state:ok``."""
        options = {**_DURABLE, "cluster-enabled": "yes", "cluster-config-file": "nodes.conf",
                   "cluster-node-timeout": "2000"}
        for _ in range(self.masters):
            self._node(options, port=cluster_port())
        share = SLOTS // self.masters
        for i, node in enumerate(self.nodes):
            last = SLOTS - 1 if i == self.masters - 1 else (i + 1) * share - 1
            node.command("CLUSTER", "ADDSLOTS", *map(str, range(i * share, last + 1)))
        for node in self.nodes[1:]:
            node.command("CLUSTER", "MEET", "127.0.0.1", str(self.nodes[0].port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in n.command("CLUSTER", "INFO") and
                   n.command("CLUSTER", "NODES").count("connected") == self.masters
                   for n in self.nodes):
                return self
            time.sleep(0.1)
        raise RuntimeError("the cluster did not become ready in time")

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalSentinel(_Topology):
    """A primary, one replica, and one Sentinel (quorum 1) watching them as ``service``.

    ``min-replicas-to-write 1`` makes the primary refuse writes while no replica is connected;
    callers that must not lose an acknowledged write also wait for the replica (``WAIT``).
    """

    def __init__(self, binary: RedisBinary | None = None, *, service: str = "rebalancer") -> None:
        super().__init__(binary)
        self.service = service
        self.sentinel: NodeProcess | None = None

    @property
    def url(self) -> str:
        """``redis+sentinel://`` naming the Sentinel and the service."""
        assert self.sentinel is not None
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}"

    @property
    def data_nodes(self) -> list[NodeProcess]:
        """The primary and the replica (in start order; roles change on failover)."""
        return [n for n in self.nodes if not n.sentinel]

    def start(self, *, timeout: float = 20.0) -> LocalSentinel:
        """Start the primary, the replica and the Sentinel; wait until the replica is in sync."""
        primary = self._node({**_DURABLE, "min-replicas-to-write": "1",
                              "min-replicas-max-lag": "10"})
        self._node({**_DURABLE, "replicaof": f"127.0.0.1 {primary.port}",
                    "min-replicas-to-write": "1", "min-replicas-max-lag": "10"})
        self.sentinel = self._node({
            f"sentinel monitor {self.service}": f"127.0.0.1 {primary.port} 1",
            f"sentinel down-after-milliseconds {self.service}": "1000",
            f"sentinel failover-timeout {self.service}": "5000",
        }, sentinel=True)
        self._wait(lambda: "master_link_status:up" in self.nodes[1].command("INFO", "replication"),
                   timeout, "the replica did not sync in time")
        self._wait(lambda: "slaves=1" in self.sentinel_info(), timeout,
                   "the Sentinel did not see the replica in time")
        return self

    def sentinel_info(self) -> str:
        """The Sentinel's INFO (which names the primary it sees)."""
        assert self.sentinel is not None
        return self.sentinel.command("INFO", "sentinel")

    def primary(self) -> NodeProcess:
        """The data node the Sentinel names as primary now."""
        assert self.sentinel is not None
        reply = self.sentinel.command("SENTINEL", "get-master-addr-by-name", self.service)
        port = int(reply.split("\r\n")[-2])
        return next(n for n in self.data_nodes if n.port == port)

    def wait_for_new_primary(self, old: NodeProcess, *, timeout: float = 30.0) -> NodeProcess:
        """Wait until the Sentinel has promoted another node than ``old``."""
        def moved() -> bool:
            with contextlib.suppress(ValueError, StopIteration, IndexError):
                new = self.primary()
                return new is not old and "role:master" in new.command("INFO", "replication")
            return False

        self._wait(moved, timeout, "no failover in time")
        return self.primary()

    @staticmethod
    def _wait(check: object, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(check) and check():
                return
            time.sleep(0.1)
        raise RuntimeError(message)

    def __enter__(self) -> LocalSentinel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
