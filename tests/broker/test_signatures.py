"""Standard Webhooks signatures: tolerance, tampering, secrets, rotation, malformed headers, and the
webhook-id as a 24-hour idempotency key."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import httpx
import pytest

from event_queue import EventQueue
from tests.broker.conftest import (
    OLD_SECRET,
    OLD_SECRET_BYTES,
    SECRET,
    BrokerServer,
    bearer,
    event_body,
    sign,
)


async def post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/events", content=body, headers=headers)


async def test_signed_webhook_is_queued_with_its_id_as_idempotency_key(
    client: httpx.AsyncClient, queue: EventQueue
) -> None:
    body = event_body()
    response = await post(client, body, sign(body, msg_id="msg_2Yf0"))

    assert response.status_code == 202
    event = await queue.get(response.json()["event_id"])
    assert event.idempotency_key == "webhook:msg_2Yf0"


async def test_redelivery_after_completion_is_a_duplicate(
    client: httpx.AsyncClient, queue: EventQueue
) -> None:
    body = event_body()
    first = await post(client, body, sign(body, msg_id="msg_once"))
    claimed = await queue.claim("worker-1", timeout=1)
    assert claimed is not None
    await queue.complete(claimed, "worker-1")

    redelivered = await post(client, body, sign(body, msg_id="msg_once"))
    fresh = await post(client, body, sign(body, msg_id="msg_next"))

    assert redelivered.status_code == 200
    assert redelivered.json()["event_id"] == first.json()["event_id"]
    assert fresh.status_code == 202
    assert (await queue.stats()).total_events == 1


@pytest.mark.parametrize(("skew", "status"), [(-301, 401), (301, 401), (-290, 202), (290, 202)])
async def test_timestamp_tolerance_is_five_minutes_both_ways(
    client: httpx.AsyncClient, skew: int, status: int
) -> None:
    body = event_body()
    response = await post(client, body, sign(body, timestamp=int(time.time()) + skew))

    assert response.status_code == status
    if status == 401:
        assert "webhook-timestamp" in response.json()["detail"]


async def test_tampered_body_is_refused(client: httpx.AsyncClient) -> None:
    headers = sign(event_body(command="print-positions"))
    response = await post(client, event_body(command="rebalance"), headers)

    assert response.status_code == 401
    assert "does not match" in response.json()["detail"]


async def test_signature_with_an_unknown_secret_is_refused(client: httpx.AsyncClient) -> None:
    body = event_body()
    response = await post(client, body, sign(body, secret=b"x" * 32))

    assert response.status_code == 401


async def test_id_and_timestamp_are_covered_by_the_signature(client: httpx.AsyncClient) -> None:
    body = event_body()
    headers = sign(body, msg_id="msg_a")
    moved = {**headers, "webhook-id": "msg_b"}
    shifted = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 1)}

    assert (await post(client, body, moved)).status_code == 401
    assert (await post(client, body, shifted)).status_code == 401


async def test_rotated_secrets_are_all_accepted(
    start_broker: Callable[..., BrokerServer],
) -> None:
    server = start_broker(webhook_secret=f"{SECRET}, {OLD_SECRET}")
    body_new, body_old = event_body(command="print-equity"), event_body(command="print-orders")
    async with httpx.AsyncClient(base_url=server.url) as http:
        new = await post(http, body_new, sign(body_new, msg_id="msg_new"))
        old = await post(http, body_old, sign(body_old, secret=OLD_SECRET_BYTES, msg_id="msg_old"))

    assert (new.status_code, old.status_code) == (202, 202)


async def test_any_of_several_signatures_may_match(client: httpx.AsyncClient) -> None:
    body = event_body()
    headers = sign(body)
    wrong = "v1," + base64.b64encode(b"y" * 32).decode()
    headers["webhook-signature"] = f"{wrong} v1a,ignored {headers['webhook-signature']}"

    assert (await post(client, body, headers)).status_code == 202


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": None},
        {"webhook-timestamp": None},
        {"webhook-signature": None},
        {"webhook-timestamp": "soon"},
        {"webhook-timestamp": "1.5e9"},
        {"webhook-signature": "v2,abc"},
        {"webhook-signature": "garbage"},
        {"webhook-signature": "v1,"},
        {"webhook-id": "has space"},
        {"webhook-id": "x" * 257},
    ],
)
async def test_malformed_signature_headers_are_401(
    client: httpx.AsyncClient, change: dict[str, str | None]
) -> None:
    body = event_body()
    headers: dict[str, str] = sign(body)
    for name, value in change.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value

    response = await post(client, body, headers)

    assert response.status_code == 401


async def test_a_bad_signature_is_not_rescued_by_a_good_token(client: httpx.AsyncClient) -> None:
    body = event_body()
    headers = {**sign(body, secret=b"x" * 32), **bearer()}

    assert (await post(client, body, headers)).status_code == 401


async def test_signatures_refused_when_no_secret_is_configured(
    start_broker: Callable[..., BrokerServer],
) -> None:
    server = start_broker(webhook_secret=None)
    body = event_body()
    async with httpx.AsyncClient(base_url=server.url) as http:
        signed = await post(http, body, sign(body))
        by_token = await post(http, body, bearer())

    assert signed.status_code == 401
    assert "WEBHOOK_SECRET" in signed.json()["detail"]
    assert by_token.status_code == 202


async def test_token_refused_when_only_signatures_are_configured(
    start_broker: Callable[..., BrokerServer],
) -> None:
    server = start_broker(webhook_token=None)
    body = event_body(passphrase="test-token-0123456789abcdef")
    async with httpx.AsyncClient(base_url=server.url) as http:
        by_header = await post(http, event_body(), bearer())
        by_body = await post(http, body, {"Content-Type": "text/plain"})

    assert (by_header.status_code, by_body.status_code) == (401, 401)
