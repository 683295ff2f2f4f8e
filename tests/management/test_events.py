"""/queue/events: list with filters, show one, add, delete and retry, with their status codes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from event_queue import EventQueue, EventState, ExecCommand, ListedEvent, ListedPage, NewEvent
from management_service.schemas import EventList
from tests.management.conftest import ACCOUNTS, API_KEY, DISABLED_ACCOUNT, add, claim, requeue
from tests.refused_data import REFUSED_CASES, REFUSED_IDS


async def test_list_shows_each_event_with_its_retry_details(
    http: httpx.AsyncClient, queue: EventQueue
) -> None:
    first = await add(queue, ACCOUNTS[0])
    second = await add(queue, ACCOUNTS[1], ExecCommand.CANCEL_ORDERS)
    await requeue(queue, error="connection refused")  # the first one
    body = (await http.get("/queue/events")).json()
    assert (body["total"], body["limit"], body["offset"]) == (2, 100, 0)
    listed = {e["event_id"]: e for e in body["events"]}
    assert list(listed) == [first, second]  # oldest first
    failed = listed[first]
    assert failed["account_id"] == ACCOUNTS[0] and failed["exec_command"] == "rebalance"
    assert failed["times_queued"] == 2 and failed["state"] == "retry_wait"
    assert failed["last_error"] == "connection refused"
    assert datetime.fromisoformat(failed["next_attempt_at"]) > datetime.fromisoformat(
        failed["created_at"]
    )
    assert listed[second]["state"] == "queued" and listed[second]["next_attempt_at"] is None


async def test_list_filters_and_pages(http: httpx.AsyncClient, queue: EventQueue) -> None:
    ids = [await add(queue, account) for account in ACCOUNTS]
    cancel = await add(queue, ACCOUNTS[0], ExecCommand.CANCEL_ORDERS)
    await claim(queue)  # ids[0] is processing now

    async def ids_for(params: dict[str, str | int]) -> tuple[list[str], int]:
        response = await http.get("/queue/events", params=params)
        assert response.status_code == 200, response.json()
        body = response.json()
        return [e["event_id"] for e in body["events"]], body["total"]

    assert await ids_for({"state": "processing"}) == ([ids[0]], 1)
    assert await ids_for({"state": "queued"}) == ([ids[1], ids[2], cancel], 3)
    assert await ids_for({"account_id": ACCOUNTS[0]}) == ([ids[0], cancel], 2)
    assert await ids_for({"exec_command": "cancel-orders"}) == ([cancel], 1)
    assert await ids_for({"state": "queued", "exec_command": "rebalance"}) == (ids[1:], 2)
    assert await ids_for({"limit": 2, "offset": 1}) == ([ids[1], ids[2]], 4)
    assert await ids_for({"offset": 10}) == ([], 4)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "stuck"}, "state"),
        ({"exec_command": "health"}, "exec_command"),
        ({"account_id": "DU1:rebalance"}, "account_id"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
async def test_bad_filters_are_422_naming_the_parameter(
    http: httpx.AsyncClient, params: dict[str, str | int], field: str
) -> None:
    response = await http.get("/queue/events", params=params)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", field]
    assert error["msg"]


async def test_get_one_event_with_data_and_last_result(
    http: httpx.AsyncClient, admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    created = await admin.post("/queue/events", json={
        "account_id": ACCOUNTS[0], "exec": "rebalance",
        "data": {"strategy": "balanced", "cash_reserve_percent": 2.5},
    })
    event_id = created.json()["event_id"]
    await requeue(queue, error="timeout placing order")
    response = await http.get(f"/queue/events/{event_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["event_id"] == event_id
    assert body["data"] == {"strategy": "balanced", "cash_reserve_percent": 2.5}
    assert body["times_queued"] == 2 and body["last_error"] == "timeout placing order"
    assert "result" in body


async def test_get_unknown_event_is_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/queue/events/no-such-event")
    assert response.status_code == 404
    assert response.json()["event_id"] == "no-such-event"


async def test_delete_removes_event_and_dedup_key(
    admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    event_id = await add(queue)
    response = await admin.delete(f"/queue/events/{event_id}")
    assert response.status_code == 200
    assert response.json()["deleted"]["event_id"] == event_id
    record = (await admin.get(f"/queue/events/{event_id}")).json()  # its record is kept
    assert (record["state"], record["finished_by"]) == ("deleted", "127.0.0.1")
    again_deleted = await admin.delete(f"/queue/events/{event_id}")
    assert again_deleted.status_code == 409 and again_deleted.json()["state"] == "deleted"
    assert (await admin.delete("/queue/events/no-such-event")).status_code == 404
    # the dedup key went with it: the same account and command are accepted again
    again = NewEvent(account_id=ACCOUNTS[0], exec_command=ExecCommand.REBALANCE)
    assert not (await queue.enqueue(again)).duplicate


async def test_delete_while_processing_is_409_and_keeps_the_event(
    admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    event_id = await add(queue)
    event = await claim(queue)
    response = await admin.delete(f"/queue/events/{event_id}")
    assert response.status_code == 409
    assert "being processed" in response.json()["detail"]
    assert (await queue.get(event_id)).state.value == "processing"
    await queue.complete(event, "worker-1")


async def test_post_creates_event_201(admin: httpx.AsyncClient, queue: EventQueue) -> None:
    response = await admin.post(
        "/queue/events", json={"account_id": ACCOUNTS[1], "exec_command": "print-positions"}
    )
    assert response.status_code == 201
    body = response.json()
    stored = await queue.get(body["event_id"])
    assert (stored.account_id, stored.exec_command, stored.times_queued) == (
        ACCOUNTS[1], "print-positions", 1)
    assert body["dedup_key"] == f"{ACCOUNTS[1]}:print-positions"


async def test_post_duplicate_is_409_with_existing_id(
    admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    existing = await add(queue, ACCOUNTS[0])
    response = await admin.post("/queue/events", json={"account_id": ACCOUNTS[0],
                                                       "exec": "rebalance"})
    assert response.status_code == 409
    assert response.json()["existing_event_id"] == existing
    other = await admin.post("/queue/events", json={"account_id": ACCOUNTS[0],
                                                    "exec": "cancel-orders"})
    assert other.status_code == 201  # another command of the same account is fine


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"account_id": "DU0000000", "exec": "rebalance"}, ["body", "account_id"]),
        ({"account_id": DISABLED_ACCOUNT, "exec": "rebalance"}, ["body", "account_id"]),
        ({"account_id": ACCOUNTS[0], "exec": "health"}, ["body", "exec"]),
        ({"account_id": ACCOUNTS[0]}, ["body", "exec_command"]),
        ({"account_id": ACCOUNTS[0], "exec": "rebalance", "token": "x"}, ["body", "token"]),
        ({"account_id": ACCOUNTS[0], "exec": "rebalance",
          "data": {"allocations": [{"symbol": "SPY", "allocation": 80},
                                   {"symbol": "TLT", "allocation": 30}]}},
         ["body", "data", "allocations"]),
    ],
)
async def test_post_invalid_is_422_and_changes_nothing(
    admin: httpx.AsyncClient, queue: EventQueue, body: dict[str, object], where: list[str]
) -> None:
    response = await admin.post("/queue/events", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][: len(where)] == where
    assert (await queue.stats()).total_events == 0


@pytest.mark.parametrize(("data", "phrase"), REFUSED_CASES, ids=REFUSED_IDS)
async def test_post_targets_no_portfolio_can_meet_is_422_and_queues_nothing(
    admin: httpx.AsyncClient, queue: EventQueue, data: dict[str, object], phrase: str
) -> None:
    response = await admin.post("/queue/events", json={"account_id": ACCOUNTS[0],
                                                       "exec": "rebalance", "data": data})
    assert response.status_code == 422, response.text
    assert phrase in " ".join(str(d["msg"]) for d in response.json()["detail"])
    assert (await queue.stats()).total_events == 0


async def test_post_without_accounts_file_is_refused(
    start_service: Callable[..., str], queue: EventQueue
) -> None:
    url = start_service(ACCOUNTS_FILE=None)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEY}) as client:
        response = await client.post("/queue/events", json={"account_id": ACCOUNTS[0],
                                                            "exec": "rebalance"})
    assert response.status_code == 503
    assert "ACCOUNTS_FILE" in response.json()["detail"]
    assert (await queue.stats()).total_events == 0


async def test_retry_moves_a_waiting_event_to_the_queue_now(
    admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    event_id = await add(queue)
    await requeue(queue, delay=600)
    response = await admin.post(f"/queue/events/{event_id}/retry")
    assert response.status_code == 200
    assert response.json()["state"] == "queued" and response.json()["times_queued"] == 2
    assert (await claim(queue)).event_id == event_id  # claimable now, not in ten minutes


async def test_retry_of_unknown_is_404_and_not_waiting_is_409(
    admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    assert (await admin.post("/queue/events/nope/retry")).status_code == 404
    event_id = await add(queue)
    response = await admin.post(f"/queue/events/{event_id}/retry")
    assert response.status_code == 409
    assert response.json()["state"] == "queued"


async def test_oversized_body_is_413(admin: httpx.AsyncClient, queue: EventQueue) -> None:
    padding = "x" * 70_000
    response = await admin.post("/queue/events", content=b'{"account_id": "' +
                                padding.encode() + b'"}',
                                headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert (await queue.stats()).total_events == 0



async def test_state_and_command_filter_never_walks_a_large_queue(
    http: httpx.AsyncClient, queue: EventQueue
) -> None:
    events = [(NewEvent(account_id=f"X{i:05d}", exec_command=ExecCommand.PRINT_ORDERS), None)
              for i in range(1002)]  # 1001 stay queued: one more than a request reads
    await queue.enqueue_many(events)
    await requeue(queue)  # one of them waits for a retry
    waiting = await http.get("/queue/events",
                             params={"state": "retry_wait", "exec_command": "print-orders"})
    assert waiting.status_code == 200 and waiting.json()["total"] == 1
    none = await http.get("/queue/events",
                          params={"state": "retry_wait", "exec_command": "rebalance"})
    assert none.json()["total"] == 0
    broad = await http.get("/queue/events",
                           params={"state": "queued", "exec_command": "print-orders"})
    assert broad.status_code == 422
    assert "exec_command alone" in broad.json()["detail"]


_TIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                      timezones=st.just(UTC))
_LISTED = st.builds(
    ListedEvent,
    event_id=st.text(), account_id=st.text(), exec_command=st.text(), dedup_key=st.text(),
    times_queued=st.integers(min_value=-2**63, max_value=2**64 - 1)
    | st.integers(min_value=2**64, max_value=2**70),
    state=st.sampled_from(EventState), created_at=_TIMES | _TIMES.map(
        lambda t: t.replace(microsecond=0)),
    last_error=st.none() | st.text(), next_attempt_at=st.none() | _TIMES,
    consumer=st.none() | st.text(), malformed=st.none() | st.text())


@settings(max_examples=300)
@given(events=st.lists(_LISTED, max_size=4), total=st.integers(0, 10**9))
def test_a_listing_page_is_written_byte_for_byte_as_its_documented_model(
        events: list[ListedEvent], total: int) -> None:
    page = ListedPage(events, total, 100, 0)
    assert EventList.json_of(page) == EventList.of(page).model_dump_json(by_alias=True).encode()
