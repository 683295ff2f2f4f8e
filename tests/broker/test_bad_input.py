"""Bad webhook bodies get a clear 4xx and queue nothing: deep nesting (no RecursionError 500, even
without credentials), NaN, Infinity, 1e400, UTF-16, a newline after the account id; and bodies
made by hypothesis, sent with valid credentials, never get a 5xx."""

from __future__ import annotations

import json

import httpx
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from event_queue import keys
from tests.broker.conftest import ACCOUNT, BrokerServer, bearer

DEEP = b"[" * 20000 + b"]" * 20000


@pytest.mark.parametrize(("body", "reason"), [
    (DEEP, "nests deeper"),
    (b'{"account_id": "DU1234567", "exec_command": "rebalance", "data": {"x": NaN}}', "NaN"),
    (b'{"account_id": "DU1234567", "exec_command": "rebalance", "data": {"x": -Infinity}}',
     "Infinity"),
    (b'{"account_id": "DU1234567", "exec_command": "rebalance", "data": {"x": 1e400}}',
     "too large"),
    ('{"account_id": "DU1234567", "exec_command": "rebalance"}'.encode("utf-16"), "UTF-8"),
    ('{"account_id": "DU1234567", "exec_command": "rebalance"}'.encode("utf-32"), "UTF-8"),
    (b'{"account_id": "DU1234567\\n", "exec_command": "rebalance"}', "account_id"),
])
async def test_a_bad_body_gets_422_and_queues_nothing(
    client: httpx.AsyncClient, redis_client: aioredis.Redis, body: bytes, reason: str
) -> None:
    answer = await client.post("/events", content=body,
                               headers={**bearer(), "Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert reason in answer.text
    assert await redis_client.llen(keys.QUEUE) == 0


async def test_deep_nesting_without_credentials_is_401_not_500(client: httpx.AsyncClient) -> None:
    answer = await client.post("/events", content=DEEP,
                               headers={"Content-Type": "application/json"})
    assert answer.status_code == 401


async def test_health_endpoints_are_documented_with_their_content_type(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    for path in ("/health/live", "/health/ready"):
        responses = schema["paths"][path]["get"]["responses"]
        assert set(responses["200"]["content"]) == {"application/health+json"}
        assert (await client.get(path)).headers["content-type"] == "application/health+json"
    ready = schema["paths"]["/health/ready"]["get"]["responses"]["503"]
    assert set(ready["content"]) == {"application/health+json"}


_leaf = st.one_of(st.none(), st.booleans(), st.integers(),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
_value = st.recursive(_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
_bodies = st.one_of(
    _value.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({
        "account_id": st.one_of(st.just(ACCOUNT), st.text(max_size=40)),
        "exec_command": st.sampled_from(["rebalance", "print-orders", "health", ""]),
        "data": _value}).map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
    st.binary(max_size=200),
    st.text(max_size=60).map(lambda t: json.dumps({"account_id": t}).encode("utf-16")),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=30).map(str.encode),
)


def test_generated_bodies_with_credentials_never_get_a_5xx(broker: BrokerServer) -> None:
    seen: set[int] = set()
    with httpx.Client(base_url=broker.url, timeout=10) as http:

        @given(body=_bodies, content_type=st.sampled_from(
            ["application/json", "text/plain; charset=utf-8", "application/json; charset=utf-16",
             "application/x-www-form-urlencoded"]))
        @settings(max_examples=200, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def post(body: bytes, content_type: str) -> None:
            answer = http.post("/events", content=body,
                               headers={**bearer(), "Content-Type": content_type})
            assert answer.status_code < 500, (body[:200], answer.status_code, answer.text[:300])
            seen.add(answer.status_code)

        post()
    assert {415, 422} <= seen, seen
