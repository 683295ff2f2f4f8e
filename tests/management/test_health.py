"""GET /health follows the plan (200 when no event has times_queued > 1, else 503) plus the
heartbeat check; GET /health/live depends on nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from event_queue import EventQueue, EventSummary, ExecCommand
from management_service.health import Check, Report
from management_service.schemas import HealthOut
from tests.management.conftest import ACCOUNTS, add, claim, requeue

REQUEUED = "queue:requeued_events"
CONSISTENCY = "queue:consistency"
PROCESSORS = "processors:heartbeat"
REDIS = "redis:connection"
MEMORY = "redis:memory"


async def test_empty_queue_is_healthy(http: httpx.AsyncClient) -> None:
    response = await http.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/health+json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "healthy"
    assert body["events_requeued"] == 0
    assert set(body["checks"]) == {REQUEUED, PROCESSORS, REDIS, MEMORY, CONSISTENCY}
    assert all(check["status"] == "pass" for check in body["checks"].values())
    assert body["checks"][REQUEUED]["observedValue"] == 0
    assert body["checks"][MEMORY]["output"] == "Redis has no maxmemory"  # the test server

async def test_requeued_event_makes_it_unhealthy_until_completed(
    http: httpx.AsyncClient, queue: EventQueue
) -> None:
    await queue.heartbeat("worker-1")
    event_id = await add(queue)
    assert (await http.get("/health")).status_code == 200

    await requeue(queue, error="order rejected: no market data", delay=0)
    response = await http.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["events_requeued"] == 1
    check = body["checks"][REQUEUED]
    assert check["status"] == "fail" and check["observedValue"] == 1
    (offender,) = check["offending_events"]
    assert offender["event_id"] == event_id
    assert offender["account_id"] == ACCOUNTS[0]
    assert offender["exec_command"] == "rebalance"
    assert offender["times_queued"] == 2
    assert offender["last_error"] == "order rejected: no market data"

    await queue.promote_due_retries()
    event = await claim(queue)
    await queue.complete(event, "worker-1", {"orders": 0})
    assert (await http.get("/health")).status_code == 200


async def test_deleting_the_requeued_event_makes_it_healthy(
    http: httpx.AsyncClient, admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    await queue.heartbeat("worker-1")
    await add(queue, ACCOUNTS[1], ExecCommand.PRINT_POSITIONS)
    event_id = await add(queue)
    await claim(queue, "other")  # the print-positions event, left processing
    await queue.heartbeat("other")
    await requeue(queue)
    assert (await http.get("/health")).status_code == 503

    assert (await admin.delete(f"/queue/events/{event_id}")).status_code == 200
    response = await http.get("/health")
    assert response.status_code == 200, response.json()
    assert response.json()["events_requeued"] == 0


async def test_offending_events_are_the_most_requeued_and_bounded(
    start_service: Callable[..., str], queue: EventQueue
) -> None:
    url = start_service(health={"offending_events_shown": 2, "processor_window_seconds": 5})
    await queue.heartbeat("worker-1")
    for account in ACCOUNTS:
        await add(queue, account)
        await requeue(queue, delay=0)
    await queue.promote_due_retries()
    worst = await claim(queue)  # the oldest one goes round again: times_queued 3
    await queue.fail(worst, "worker-1", "again", requeue_delay=600)
    async with httpx.AsyncClient(base_url=url) as client:
        body = (await client.get("/health")).json()
    check = body["checks"][REQUEUED]
    assert check["observedValue"] == 3 and body["events_requeued"] == 3
    assert len(check["offending_events"]) == 2
    assert check["offending_events"][0]["event_id"] == worst.event_id
    assert check["offending_events"][0]["times_queued"] == 3


async def test_events_waiting_without_processor_heartbeat_fail(
    http: httpx.AsyncClient, queue: EventQueue
) -> None:
    await add(queue)
    response = await http.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"][REQUEUED]["status"] == "pass"  # the plan's rule alone would say 200
    check = body["checks"][PROCESSORS]
    assert check["status"] == "fail" and check["observedValue"] == 0
    assert "no processor" in check["output"]

    await queue.heartbeat("worker-1")
    response = await http.get("/health")
    assert response.status_code == 200
    assert response.json()["checks"][PROCESSORS] | {"time": None} == {
        "status": "pass", "observedValue": 1, "observedUnit": "processors", "time": None,
    }


async def test_stale_heartbeat_counts_as_no_processor(
    start_service: Callable[..., str], queue: EventQueue
) -> None:
    url = start_service(health={"processor_window_seconds": 0.3})
    await queue.heartbeat("worker-1")
    await add(queue)
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/health")).status_code == 200
        await asyncio.sleep(0.5)
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"][PROCESSORS]["status"] == "fail"


async def test_heartbeat_check_can_be_disabled(
    start_service: Callable[..., str], queue: EventQueue
) -> None:
    url = start_service(health={"processor_check": False})
    await add(queue)
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert PROCESSORS not in response.json()["checks"]


async def test_requeued_threshold_is_configurable(
    start_service: Callable[..., str], queue: EventQueue
) -> None:
    url = start_service(health={"requeued_events_allowed": 1})
    await queue.heartbeat("worker-1")
    await add(queue)
    await requeue(queue)
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["events_requeued"] == 1


async def test_no_processor_and_nothing_waiting_is_healthy(http: httpx.AsyncClient) -> None:
    response = await http.get("/health")
    assert response.json()["checks"][PROCESSORS]["status"] == "pass"


async def test_liveness_depends_on_nothing(start_service: Callable[..., str]) -> None:
    url = start_service(redis_connection="redis://127.0.0.1:1/0")  # nothing listens there
    async with httpx.AsyncClient(base_url=url) as client:
        live = await client.get("/health/live")
        health = await client.get("/health")
    assert live.status_code == 200 and live.json() == {"status": "alive"}
    assert health.status_code == 503 and health.json()["status"] == "error"



async def test_redis_near_its_maxmemory_makes_it_unhealthy(
    http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    used = int((await redis_client.info("memory"))["used_memory"])
    try:
        await redis_client.config_set("maxmemory", used * 4)
        roomy = (await http.get("/health")).json()["checks"][MEMORY]
        await redis_client.config_set("maxmemory", int(used * 1.01))
        response = await http.get("/health")
        status = (await http.get("/queue/status")).json()
    finally:
        await redis_client.config_set("maxmemory", 0)
    assert roomy["status"] == "pass" and roomy["observedUnit"] == "percent"
    assert 10 < roomy["observedValue"] < 50
    assert response.status_code == 503
    check = response.json()["checks"][MEMORY]
    assert check["status"] == "fail" and check["observedValue"] >= 95
    assert "refuses new events" in check["output"]
    assert status["redis_memory_limit_bytes"] == int(used * 1.01)
    assert status["redis_memory_used_bytes"] > 0


_TIME = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=st.just(UTC))
_SUMMARY = st.builds(EventSummary, event_id=st.text(), account_id=st.text(),
                     exec_command=st.text(), times_queued=st.integers(-2**63, 2**63 - 1),
                     created_at=st.none() | _TIME, state=st.text(), last_error=st.none() | st.text())
_VALUE = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
          | st.floats(-1e12, 1e12).map(lambda v: round(v, 2)))
_CHECK = st.builds(Check, status=st.sampled_from(["pass", "fail"]), observed_value=_VALUE,
                   observed_unit=st.none() | st.text(), output=st.none() | st.text(),
                   offending_events=st.none() | st.lists(_SUMMARY, max_size=3),
                   time=st.none() | _TIME)
_REPORT = st.builds(Report, status=st.sampled_from(["healthy", "unhealthy"]),
                    events_requeued=st.integers(0, 2**70),
                    checks=st.dictionaries(st.text(max_size=24), _CHECK, max_size=5), time=_TIME)
_ERROR = st.builds(lambda text, when: Report("error", None, {"redis:connection": Check(
    "fail", output=text, time=when)}, when), st.text(), _TIME)


@settings(max_examples=300)
@given(report=_REPORT | _ERROR)
def test_the_health_answer_is_written_byte_for_byte_as_its_documented_model(
        report: Report) -> None:
    assert HealthOut.json_of(report) == HealthOut.of(report).body()
