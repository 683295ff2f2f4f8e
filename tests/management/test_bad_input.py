"""Bad input to the management service gets a clear 4xx and changes nothing; the consistency
check and the repair action over HTTP; hypothesis-made bodies past authentication find no 5xx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from event_queue import EventQueue, keys
from tests.management.conftest import ACCOUNTS, API_KEY, add

VALID = {"account_id": ACCOUNTS[0], "exec_command": "rebalance"}


async def state(admin: httpx.AsyncClient) -> tuple[object, object]:
    status = (await admin.get("/queue/status")).json()
    events = (await admin.get("/queue/events", params={"limit": 1000})).json()
    return ((status["total_events"], status["active_events_count"]),
            sorted(e["event_id"] for e in events["events"]))


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"account_id": "DU1111111", "exec_command": "rebalance", "data": {"x": NaN}}', "NaN"),
    (b'{"account_id": "DU1111111", "exec_command": "rebalance", "data": {"x": Infinity}}',
     "Infinity"),
    (b'{"account_id": "DU1111111", "exec_command": "rebalance", "data": {"x": 1e400}}',
     "too large"),
    (b"[" * 20000 + b"]" * 20000, "nests deeper"),
    ('{"account_id": "DU1111111", "exec_command": "rebalance"}'.encode("utf-16"), "UTF-8"),
    (b'\xef\xbb\xbf{"account_id": "DU1111111", "exec_command": "rebalance"}', "byte order"),
    (b'{"account_id": "DU1111111", "exec_command": "rebalance"', "line 1"),
])
async def test_a_body_that_is_not_strict_json_gets_422_and_changes_nothing(
    admin: httpx.AsyncClient, body: bytes, reason: str
) -> None:
    before = await state(admin)
    answer = await admin.post("/queue/events", content=body,
                              headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert reason in answer.text
    assert await state(admin) == before


async def test_an_account_id_with_a_trailing_newline_is_refused(admin: httpx.AsyncClient) -> None:
    answer = await admin.post("/queue/events", json={**VALID, "account_id": "DU1111111\n"})
    assert answer.status_code == 422
    listed = await admin.get("/queue/events", params={"account_id": "DU1111111\n"})
    assert listed.status_code == 422


async def test_an_oversized_chunked_body_gets_413(admin: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the body streams in chunks
        for _ in range(100):
            yield b" " * 1024

    answer = await admin.post("/queue/events", content=chunks(),
                              headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert "larger than" in answer.json()["detail"]


async def test_health_endpoints_are_documented_with_their_content_type(
    http: httpx.AsyncClient,
) -> None:
    schema = (await http.get("/openapi.json")).json()
    for path in ("/health", "/health/live"):
        answers = schema["paths"][path]["get"]["responses"]
        assert set(answers["200"]["content"]) == {"application/health+json"}
        live = await http.get(path)
        assert live.headers["content-type"] == "application/health+json"
    assert set(schema["paths"]["/health"]["get"]["responses"]["503"]["content"]) == {
        "application/health+json"}
    add_event = schema["paths"]["/queue/events"]["post"]["responses"]
    assert "400" not in add_event


@pytest.mark.allow_inconsistent
async def test_an_event_in_no_area_turns_health_red_until_an_operator_repairs_it(
    admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    event_id = await add(queue)
    await queue.heartbeat("worker-1")
    await queue.redis.lrem(keys.QUEUE, 0, event_id)  # what a half-done script used to leave

    status = (await admin.get("/queue/status")).json()
    assert status["consistent"] is False
    assert "1 live events but 0 in the areas" in status["inconsistencies"][0]
    health = await admin.get("/health")
    assert health.status_code == 503
    check = health.json()["checks"]["queue:consistency"]
    assert check["status"] == "fail" and "POST /queue/repair" in check["output"]

    refused = await admin.post("/queue/repair", headers={"X-API-Key": "wrong"})
    assert refused.status_code == 401
    repaired = await admin.post("/queue/repair")
    assert repaired.status_code == 200, repaired.text
    body = repaired.json()
    assert body["consistent"] is True and body["fixed"] >= 1
    assert body["fixes"][event_id] == ["put back in the queue: it was in no area"]
    assert (await admin.get("/health")).status_code == 200
    assert await queue.redis.lrange(keys.QUEUE, 0, -1) == [event_id]
    audit = (await admin.get("/audit")).json()["entries"]
    assert audit[0]["action"] == "repair" and audit[0]["outcome"] == "fixed 1"


# -- hypothesis bodies past authentication -----------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _nested(depth: int) -> bytes:
    return b'{"account_id": "DU1111111", "exec_command": "rebalance", "data": ' + (
        b'{"a": ' * depth) + b"1" + b"}" * depth + b"}"


_bodies = st.one_of(
    _json.map(lambda v: _dumps(v).encode()),
    st.fixed_dictionaries({"account_id": st.one_of(st.sampled_from(ACCOUNTS), st.text(max_size=40)),
                           "exec_command": st.sampled_from(["rebalance", "print-orders", "x"]),
                           "data": _json}).map(lambda v: _dumps(v).encode()),
    st.integers(min_value=1, max_value=5000).map(_nested),
    st.binary(max_size=200),
    st.text(max_size=50).map(lambda t: ('{"account_id": "' + t + '"}').encode("utf-16")),
    st.sampled_from([b"NaN", b"-Infinity", b"1e400", b"[1e999]", b"\x00", b'{"\x01": 1}',
                     b'{"account_id": "DU1111111\\n", "exec_command": "rebalance"}']),
)


def _dumps(value: object) -> str:
    import json
    return json.dumps(value, allow_nan=True)


@pytest.fixture
async def keyed(service_url: str) -> AsyncIterator[httpx.Client]:
    with httpx.Client(base_url=service_url, timeout=10, headers={"X-API-Key": API_KEY}) as c:
        yield c


def test_generated_bodies_never_get_a_5xx(keyed: httpx.Client) -> None:
    seen: set[int] = set()

    @given(body=_bodies, content_type=st.sampled_from(
        ["application/json", "application/json; charset=utf-16", "text/plain", "", "x/y"]))
    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def post(body: bytes, content_type: str) -> None:
        answer = keyed.post("/queue/events", content=body,
                            headers={"Content-Type": content_type} if content_type else {})
        assert answer.status_code < 500, (body[:200], answer.status_code, answer.text[:300])
        assert answer.status_code in (201, 409, 413, 422), answer.text[:300]
        seen.add(answer.status_code)
        if answer.status_code == 201:  # a valid event got in: take it out for the next example
            keyed.delete(f"/queue/events/{answer.json()['event_id']}")

    post()
    assert 422 in seen
    status = keyed.get("/queue/status").json()
    assert status["consistent"] is True
