"""Connecting to Redis as ``REDIS_URL`` names it: one server, a Sentinel-managed primary, or a
Redis Cluster.

* ``redis://[user:password@]host:port/db`` (or ``rediss://``, ``unix://``): one server.
* ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``: the primary that the
  Sentinels at those addresses name for ``service``; after a failover, new connections go to the
  new primary. The credentials are the primary's and are also sent to the Sentinels.
* ``redis+cluster://[user:password@]host:port[,host:port...]``: a Redis Cluster, found from any of
  the nodes listed. Every key of the queue shares one hash tag, so every script runs on one node.

Only addresses are parsed here; nothing connects until the first command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
URL_PATTERN = r"^(redis|rediss|unix|redis\+sentinel|redis\+cluster)://"

Kind = Literal["server", "sentinel", "cluster"]
AnyRedis = aioredis.Redis | RedisCluster


class InvalidRedisUrl(ValueError):
    """``REDIS_URL`` cannot be understood; the message says what form is expected."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid Redis URL: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is, parsed from a URL (never printed with its password)."""

    kind: Kind
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_url(url: str) -> RedisTarget:
    """Parse a Redis URL of one of the three forms; raises InvalidRedisUrl."""
    scheme = url.partition("://")[0].lower()
    if scheme in PLAIN_SCHEMES:
        return RedisTarget("server", url)
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise InvalidRedisUrl(
            "must be a redis://, rediss:// or unix:// URL (e.g. redis://localhost:6379/0), "
            "redis+sentinel://host:port,.../service or redis+cluster://host:port,..."
        )
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = tuple(_node(item) for item in hosts.split(",") if item)
    if not nodes:
        raise InvalidRedisUrl(f"{scheme}:// needs at least one host:port")
    path = [p for p in parts.path.split("/") if p]
    user, secret = unquote(username) or None, unquote(password) or None
    if scheme == CLUSTER_SCHEME:
        if path:
            raise InvalidRedisUrl("redis+cluster:// takes no path (a cluster has database 0 only)")
        return RedisTarget("cluster", url, nodes, username=user, password=secret)
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise InvalidRedisUrl("redis+sentinel:// needs /service or /service/db after the hosts")
    return RedisTarget("sentinel", url, nodes, service=path[0],
                       db=int(path[1]) if len(path) == 2 else 0, username=user, password=secret)


def _node(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidRedisUrl(f"{text!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass
class Connection:
    """A client and whatever else must be closed with it (a Sentinel's own connections)."""

    client: AnyRedis
    extra: list[aioredis.Redis] = field(default_factory=list)

    async def close(self) -> None:
        """Close the client and its helpers."""
        await self.client.aclose()
        for other in self.extra:
            await other.aclose()


def _pack_with_hiredis(self: AbstractConnection, *args: Any) -> list[bytes]:
    """One command in the Redis protocol, packed by hiredis (C) as redis-py's sync client does.

    redis-py's asyncio connections pack in Python and rebuild the buffer for every argument: an
    enqueue batch of 30 events (~340 arguments) took 660 µs to pack, 65 µs with hiredis, and the
    same bytes. A command name with spaces (``CONFIG GET``) is split as redis-py splits it; a
    value hiredis cannot pack (None, a bool, ...) is refused with redis-py's DataError.
    """
    first = args[0]
    if isinstance(first, str):
        args = (*first.encode().split(), *args[1:])
    elif b" " in first:
        args = (*first.split(), *args[1:])
    try:
        return [hiredis.pack_command(args)]
    except TypeError as exc:
        raise DataError(str(exc)) from None


def use_hiredis_packer() -> None:
    """Pack every ``redis.asyncio`` command with hiredis (idempotent; called by :func:`connect`).

    Set on the connections' common base class, so it covers every kind ``connect`` builds: plain,
    TLS and Unix-socket connections, the Sentinel-managed ones and the cluster nodes' connections.
    """
    AbstractConnection.pack_command = _pack_with_hiredis  # type: ignore[method-assign]


def connect(
    target: RedisTarget,
    *,
    timeout: float | None,
    connect_timeout: float,
    max_connections: int | None = None,
    reconnect_once: bool = False,
) -> Connection:
    """A lazily connected ``decode_responses`` client for ``target``.

    ``timeout`` bounds every reply (None: wait forever, for blocking claims). With
    ``reconnect_once``, a command on a connection the server dropped is sent once more on a new
    connection: only for callers whose every write is safe to resend (see EventQueue.from_url).
    A cluster client never resends a command by itself (its own retries are turned off).
    """
    use_hiredis_packer()
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
    }
    if reconnect_once:
        options["retry"] = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        options["retry_on_error"] = [RedisConnectionError]
    if target.kind == "server":
        return Connection(aioredis.Redis.from_url(
            target.url, max_connections=max_connections, **options))
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.kind == "cluster":
        return Connection(RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=max_connections or 2**31, cluster_error_retry_attempts=0,
            **auth, **options))
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs={  # type: ignore[no-untyped-call]
        "socket_timeout": connect_timeout, "socket_connect_timeout": connect_timeout, **auth,
    })
    client = sentinel.master_for(target.service, db=target.db, max_connections=max_connections,
                                 **auth, **options)
    return Connection(client, list(sentinel.sentinels))


async def scan_keys(client: AnyRedis, pattern: str, *, near: str) -> AsyncIterator[str]:
    """Every key matching ``pattern``; on a cluster, only on the node that holds ``near`` (every
    key of the queue shares one hash tag, so they all live there)."""
    if not isinstance(client, RedisCluster):
        async for key in client.scan_iter(match=pattern, count=1000):
            yield str(key)
        return
    node = client.get_node_from_key(near)
    cursor = 0
    while True:
        reply = await client.execute_command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000,
                                             target_nodes=node)
        if isinstance(reply, dict):  # redis-py keys the reply by node...
            reply = next(iter(reply.values()))
        raw_cursor, keys = reply[0], reply[1]
        if isinstance(raw_cursor, dict):  # ...or only the cursor
            raw_cursor = next(iter(raw_cursor.values()))
        cursor = int(raw_cursor)
        for key in keys:
            yield str(key)
        if cursor == 0:
            return
