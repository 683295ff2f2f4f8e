"""Commands are packed by hiredis: the same bytes redis-py's own Python packer writes, and the same
refusals, for every kind of argument the queue sends."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection, Connection
from redis.connection import PythonRespSerializer
from redis.exceptions import DataError

from event_queue.connections import connect, parse_url, use_hiredis_packer
from event_queue.redis_server import RedisServer

ARGUMENTS: list[tuple[Any, ...]] = [
    ("EVALSHA", "a" * 40, 2, "{q}:queue", "{q}:event:1", 86_400_000, 0, -3, 2**70, 0.1, 1e-7),
    ("HSET", "k", "data", '{"symbol":"ÄÖ€ 😀","allocation":12.5}', b"\x00\xff raw bytes"),
    ("CONFIG GET", "maxmemory"),  # a name with a space is split, as redis-py splits it
    (b"CLIENT SETNAME", "bench"),
    ("SET", "k", memoryview(b"viewed")),
    ("SET", "", ""),
    ("ZADD", "k", 1e20, "a", 1.5e-10, "b", -0.0, "c", float("inf"), "d", 1 / 3, "e", -(2**63)),
]


def python_pack(args: tuple[Any, ...]) -> bytes:
    """redis-py's own packing in Python (what its asyncio connections do without this project)."""
    packer = PythonRespSerializer(6000, Connection().encoder.encode)
    return b"".join(packer.pack(*args))  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("args", ARGUMENTS)
def test_hiredis_writes_the_bytes_redis_py_writes(args: tuple[Any, ...]) -> None:
    use_hiredis_packer()
    assert b"".join(Connection().pack_command(*args)) == python_pack(args)


@pytest.mark.parametrize("value", [None, True, object()])
def test_values_redis_cannot_take_are_refused_as_redis_py_refuses_them(value: Any) -> None:
    use_hiredis_packer()
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", value)


def test_connect_turns_the_hiredis_packer_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # redis-py's Python packer cuts a large command into several buffers; hiredis writes one.
    monkeypatch.setattr(AbstractConnection, "pack_command",
                        lambda self, *args: [python_pack(args)[:10], python_pack(args)[10:]])
    args: tuple[Any, ...] = ("EVALSHA", "a" * 40, 0, *(["x" * 100] * 1000))
    assert len(Connection().pack_command(*args)) > 1
    connect(parse_url("redis://127.0.0.1:1/0"), timeout=1, connect_timeout=1)  # connects lazily
    assert len(Connection().pack_command(*args)) == 1


async def test_a_client_from_connect_round_trips_every_kind_of_value(
    redis_server: RedisServer,
) -> None:
    connection = connect(parse_url(redis_server.url), timeout=5, connect_timeout=5)
    client = connection.client
    try:
        text = '{"symbol":"ÄÖ€ 😀","allocation":12.5}'
        await client.hset("{t}:packing", mapping={"text": text, "int": -3, "float": 0.1})
        assert await client.hgetall("{t}:packing") == {"text": text, "int": "-3", "float": "0.1"}
        assert await client.eval("return #ARGV", 0, *range(500)) == 500
    finally:
        await client.delete("{t}:packing")
        await connection.close()
