"""POST /events: every answer, checked over HTTP and against what Redis holds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis

from event_queue import EventQueue, keys
from tests.broker.conftest import (
    ACCOUNT,
    DISABLED_ACCOUNT,
    OTHER_ACCOUNT,
    TOKEN,
    BrokerServer,
    bearer,
    event_body,
)
from tests.refused_data import REFUSED_CASES, REFUSED_IDS


async def live_events(redis: aioredis.Redis) -> list[str]:
    return list(await redis.lrange(keys.QUEUE, 0, -1))


async def test_queued_answer_and_stored_event(client: httpx.AsyncClient, queue: EventQueue) -> None:
    body = event_body(data={"strategy": "balanced", "cash_reserve_percent": 2.5,
                            "allocations": [{"symbol": "VTI", "allocation": 60}]})
    response = await client.post("/events", content=body, headers=bearer())

    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "queued"
    assert answer["dedup_key"] == f"{ACCOUNT}:rebalance"
    assert answer["times_queued"] == 1
    event = await queue.get(answer["event_id"])
    assert (event.account_id, event.exec_command, event.times_queued) == (ACCOUNT, "rebalance", 1)
    assert event.data == {"strategy": "balanced", "cash_reserve_percent": 2.5,
                          "allocations": [{"symbol": "VTI", "allocation": 60.0}]}


async def test_duplicate_names_the_active_event(
    client: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    first = await client.post("/events", content=event_body(), headers=bearer())
    again = await client.post(
        "/events", content=json.dumps({"account_id": ACCOUNT, "exec": "rebalance"}),
        headers=bearer(),
    )

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"],
                            "dedup_key": f"{ACCOUNT}:rebalance"}
    assert await live_events(redis_client) == [first.json()["event_id"]]


async def test_other_commands_and_accounts_are_not_duplicates(
    client: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    bodies = [event_body(ACCOUNT, "print-rebalance"), event_body(ACCOUNT, "cancel-orders"),
              event_body(OTHER_ACCOUNT, "print-rebalance")]
    answers = [await client.post("/events", content=b, headers=bearer()) for b in bodies]

    assert [a.status_code for a in answers] == [202, 202, 202]
    assert len(set(await live_events(redis_client))) == 3


async def test_text_plain_body_with_passphrase_is_accepted(client: httpx.AsyncClient) -> None:
    body = event_body(command="print-positions", passphrase=TOKEN)
    response = await client.post("/events", content=body,
                                 headers={"Content-Type": "text/plain; charset=utf-8"})

    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"account_id": ACCOUNT, "exec_command": "rebalance", "foo": 1, "bar": 2},
         ["foo: unknown field", "bar: unknown field"]),
        ({"account_id": ACCOUNT, "exec_command": "rebalance", "data": {"colour": "red"}},
         ["data.colour: unknown field"]),
        ({"account_id": ACCOUNT, "exec_command": "health"}, ["'health' command was removed"]),
        ({"account_id": ACCOUNT, "exec_command": "sell-everything"}, ["exec_command: Input"]),
        ({"exec_command": "rebalance"}, ["account_id: Field required"]),
        ({"account_id": "DU 1:2", "exec_command": "rebalance"}, ["account_id: account_id must"]),
        ({"account_id": ACCOUNT, "exec_command": "rebalance",
          "data": {"allocations": [{"symbol": "VTI", "allocation": 70},
                                   {"symbol": "BND", "allocation": 40}]}},
         ["more than 100 percent"]),
        ({"account_id": "DU5555555", "exec_command": "rebalance"},
         ["'DU5555555' is not in the accounts file"]),
        ({"account_id": DISABLED_ACCOUNT, "exec_command": "rebalance"},
         [f"'{DISABLED_ACCOUNT}' is disabled"]),
    ],
    ids=["unknown-fields", "unknown-data-field", "health-removed", "unknown-command",
         "missing-account", "bad-account-id", "over-100-percent", "unknown-account",
         "disabled-account"],
)
async def test_invalid_events_are_422_with_actionable_messages(
    client: httpx.AsyncClient, redis_client: aioredis.Redis,
    payload: dict[str, object], expected: list[str],
) -> None:
    response = await client.post("/events", content=json.dumps(payload), headers=bearer())

    assert response.status_code == 422
    assert response.json()["error"] == "invalid"
    for phrase in expected:
        assert phrase in response.json()["detail"]
    assert await live_events(redis_client) == []


@pytest.mark.parametrize(("data", "phrase"), REFUSED_CASES, ids=REFUSED_IDS)
async def test_targets_no_portfolio_can_meet_are_422_and_queue_nothing(
    client: httpx.AsyncClient, redis_client: aioredis.Redis, data: dict[str, object], phrase: str
) -> None:
    response = await client.post("/events", content=event_body(data=data), headers=bearer())

    assert response.status_code == 422, response.text
    assert phrase in response.json()["detail"]
    assert await live_events(redis_client) == []
    assert await redis_client.scard(keys.ACTIVE_EVENTS) == 0


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
async def test_malformed_json_from_an_authenticated_sender_is_422(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post("/events", content=body, headers=bearer())

    assert response.status_code == 422
    assert "JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "application/xml", None,
     "application/json; charset=latin-1"],
)
async def test_unsupported_content_type_is_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if content_type:
        headers["Content-Type"] = content_type
    response = await client.post("/events", content=event_body(), headers=headers)

    assert response.status_code == 415
    assert "application/json" in response.json()["detail"] or "UTF-8" in response.json()["detail"]


async def test_body_over_64_kib_by_content_length_is_413(client: httpx.AsyncClient) -> None:
    body = event_body(data={"strategy": "x" * 64}) + b" " * (64 * 1024)
    response = await client.post("/events", content=body, headers=bearer())

    assert response.status_code == 413


async def test_streamed_body_over_64_kib_is_413(
    client: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield event_body()[:-1]
        for _ in range(20):
            yield b" " * 4096  # chunked: no Content-Length to check up front
        yield b"}"

    response = await client.post("/events", content=chunks(), headers=bearer())

    assert response.status_code == 413
    assert "Content-Length" not in response.request.headers
    assert await live_events(redis_client) == []


async def test_body_just_under_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    body = event_body()
    body = body[:-1] + b" " * (64 * 1024 - len(body)) + b"}"
    assert len(body) == 64 * 1024

    response = await client.post("/events", content=body, headers=bearer())

    assert response.status_code == 202


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        bearer("wrong-token-0123456789"),
        {"Authorization": "Basic dXNlcjpwYXNz", "Content-Type": "application/json"},
        {"Authorization": "Bearer", "Content-Type": "application/json"},
    ],
    ids=["none", "wrong-bearer", "basic", "empty-bearer"],
)
async def test_missing_or_wrong_credentials_are_401(
    client: httpx.AsyncClient, redis_client: aioredis.Redis, headers: dict[str, str]
) -> None:
    response = await client.post("/events", content=event_body(), headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert await live_events(redis_client) == []


async def test_wrong_passphrase_is_401_and_says_nothing_about_the_body(
    client: httpx.AsyncClient,
) -> None:
    body = json.dumps({"account_id": "no such", "exec_command": "nope", "passphrase": "guess"})
    response = await client.post("/events", content=body,
                                 headers={"Content-Type": "text/plain"})

    assert response.status_code == 401
    assert "account" not in response.json()["detail"]


async def test_unauthenticated_garbage_is_401_not_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/events", content=b"{oops",
                                 headers={"Content-Type": "application/json"})

    assert response.status_code == 401


async def test_source_allow_list(start_broker: Callable[..., BrokerServer]) -> None:
    closed = start_broker(webhook_allowed_ips="10.0.0.0/8")
    opened = start_broker(webhook_allowed_ips="10.0.0.0/8, 127.0.0.1/32")
    async with httpx.AsyncClient() as http:
        refused = await http.post(f"{closed.url}/events", content=event_body(),
                                  headers=bearer())
        allowed = await http.post(f"{opened.url}/events", content=event_body(),
                                  headers=bearer())

    assert refused.status_code == 403
    assert "127.0.0.1" in refused.json()["detail"]
    assert allowed.status_code == 202


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "status"),
    [
        ("127.0.0.1", "203.0.113.7", 202),  # a trusted proxy vouches for an allowed sender
        ("127.0.0.1", "203.0.113.7, 198.51.100.9", 403),  # right-most untrusted hop decides
        ("127.0.0.1", "198.51.100.9, 203.0.113.7", 202),  # left of it is not believed
        ("", "203.0.113.7", 403),  # no trusted proxies: the header is ignored
        ("192.0.2.1", "203.0.113.7", 403),  # the peer is not a trusted proxy
        ("127.0.0.1", "garbage", 403),
    ],
)
async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    start_broker: Callable[..., BrokerServer], trusted: str, forwarded_for: str, status: int
) -> None:
    server = start_broker(webhook_allowed_ips="203.0.113.0/24", webhook_trusted_proxies=trusted)
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/events", content=event_body(),
                                   headers={**bearer(), "X-Forwarded-For": forwarded_for})

    assert response.status_code == status


async def test_liveness_docs_and_openapi(client: httpx.AsyncClient) -> None:
    live = await client.get("/health/live")
    docs = await client.get("/docs")
    spec = (await client.get("/openapi.json")).json()

    assert live.status_code == 200
    assert live.json() == {"status": "pass"}
    assert docs.status_code == 200
    body = spec["components"]["schemas"]["WebhookEvent"]
    assert {"account_id", "exec_command", "data", "passphrase"} <= set(body["properties"])
    assert set(spec["paths"]["/events"]["post"]["responses"]) >= {
        "200", "202", "401", "403", "413", "415", "422", "503"}


async def test_readiness_reports_redis(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")

    assert response.status_code == 200
    assert response.json()["status"] == "pass"


async def test_metrics_count_outcomes_and_latency(client: httpx.AsyncClient) -> None:
    await client.post("/events", content=event_body(), headers=bearer())
    await client.post("/events", content=event_body(), headers=bearer())
    await client.post("/events", content=event_body(), headers={"Content-Type": "text/plain"})

    text = (await client.get("/metrics")).text

    assert 'broker_events_received_total{outcome="queued"} 1.0' in text
    assert 'broker_events_received_total{outcome="duplicate"} 1.0' in text
    assert 'broker_events_received_total{outcome="unauthorized"} 1.0' in text
    assert "broker_request_duration_seconds_count 3.0" in text
    assert "process_resident_memory_bytes " in text and "process_open_fds " in text


async def test_other_methods_on_events_are_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/events")

    assert response.status_code == 405
