"""Logs: one JSON line per answered webhook, with the event's identity and never a secret."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import redis.asyncio as aioredis

from event_queue.logs import JsonFormatter
from tests.broker.conftest import ACCOUNT, SECRET, TOKEN, BrokerServer, bearer, event_body, sign

WRONG_PASSPHRASE = "not-the-token-but-still-private"


def json_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(record)) for record in caplog.records]


async def stored_values(redis: aioredis.Redis) -> str:
    dump = []
    for key in await redis.keys("*"):
        kind = await redis.type(key)
        if kind == "hash":
            dump.append(json.dumps(await redis.hgetall(key)))
        elif kind == "string":
            dump.append(str(await redis.get(key)))
        elif kind == "list":
            dump.append(json.dumps(await redis.lrange(key, 0, -1)))
    return "\n".join(dump)


async def test_passphrase_is_neither_stored_nor_logged(
    broker: BrokerServer, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(base_url=broker.url) as http:
        queued = await http.post("/events", content=event_body(passphrase=TOKEN),
                                 headers={"Content-Type": "text/plain"})
        refused = await http.post(
            "/events", content=event_body(command="print-orders", passphrase=WRONG_PASSPHRASE),
            headers={"Content-Type": "text/plain"},
        )
        invalid = await http.post(
            "/events", content=event_body(command="health", passphrase=TOKEN),
            headers={"Content-Type": "application/json"},
        )
    body = event_body(command="print-equity")
    async with httpx.AsyncClient(base_url=broker.url) as http:
        signed = await http.post("/events", content=body, headers=sign(body))
        by_bearer = await http.post("/events", content=event_body(command="cancel-orders"),
                                    headers=bearer())

    assert [r.status_code for r in (queued, refused, invalid, signed, by_bearer)] == [
        202, 401, 422, 202, 202]
    stored = await stored_values(redis_client)
    logged = caplog.text + "\n".join(json.dumps(line) for line in json_lines(caplog))
    answers = "".join(r.text for r in (queued, refused, invalid, signed, by_bearer))
    assert ACCOUNT in stored and ACCOUNT in logged  # the checks below look at real content
    assert "passphrase" not in stored
    for secret in (TOKEN, WRONG_PASSPHRASE, SECRET, SECRET.removeprefix("whsec_")):
        assert secret not in stored
        assert secret not in logged
        assert secret not in answers


async def test_one_json_line_per_outcome_with_event_identity(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="event_broker")
    queued = await client.post("/events", content=event_body(), headers=bearer())
    await client.post("/events", content=event_body(), headers=bearer())
    await client.post("/events", content=b"{}", headers={"Content-Type": "text/plain"})

    lines = [line for line in json_lines(caplog) if line["logger"] == "event_broker.events"]

    assert [line["outcome"] for line in lines] == ["queued", "duplicate", "unauthorized"]
    first = lines[0]
    assert first["event_id"] == queued.json()["event_id"]
    assert (first["account_id"], first["exec_command"], first["auth"]) == (
        ACCOUNT, "rebalance", "bearer")
    assert first["status"] == 202
    assert (first["method"], first["path"], first["client"]) == ("POST", "/events", "127.0.0.1")
    assert isinstance(first["duration_ms"], float)
    assert lines[2]["status"] == 401
