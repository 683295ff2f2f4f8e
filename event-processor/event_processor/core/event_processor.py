"""The worker: claim → lock account → run command → complete or requeue.

``processing.concurrency`` claim loops take events while this process has room for them; each
claimed event is then carried by its own task. An event waiting for a busy account gives up its
slot (up to ``processing.max_waiting`` of them), so one busy account cannot starve the others.
Alongside run a lease renewer (so commands may take minutes), a heartbeat, a reaper and a retry
promoter; the last two are safe in every processor at once since their scripts re-check each move.

Redis being unreachable is never fatal: every queue call that must happen (complete, requeue, hand
back) is retried with a fixed ``redis.reconnect_delay`` until Redis answers. Nothing is dropped:
an event this process cannot settle stays in Redis, and a reaper puts it back when its lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from event_processor import __version__
from event_processor.commands.base import (
    Command,
    CommandContext,
    CommandError,
    Registry,
    resolve_command,
)
from event_processor.config import Settings
from event_processor.core.flight import AccountLocks, Capacity, InFlight, Phase
from event_processor.core.metrics import ProcessorMetrics
from event_processor.core.summary import summarize_result
from event_processor.services.ibkr_client import Broker, create_broker
from event_processor.services.queue_service import QueueService
from event_queue import (
    AccountLockConflict,
    Claim,
    EventNotFound,
    InvalidResult,
    LeaseLost,
    QueueUnavailable,
)
from event_queue.events import encode_result, finite_json

T = TypeVar("T")

log = logging.getLogger(__name__)

# After the grace, commands are cancelled; this long is allowed for them to stop and be handed back.
HAND_BACK_SECONDS = 10.0


class AccountLockLost(RuntimeError):
    """The command was stopped: this processor could no longer be sure it held the account."""

    def __init__(self, account_id: str, reason: str) -> None:
        super().__init__(f"command stopped: {reason} (account {account_id})")
        self.account_id = account_id
        self.reason = reason


@dataclass(frozen=True)
class Outcome:
    """How a command ended: with a result, or with the error that fails its event."""

    result: Any = None
    error: BaseException | None = None


def new_consumer_id(name: str | None = None) -> str:
    """A consumer id unique to this process: a name (default: the host), pid, random suffix.

    Ownership of a claimed event is checked by consumer id, so two live processes (or a process
    and its restarted self) must never share one; the suffix makes sure they do not.
    """
    return f"{name or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def describe_error(error: BaseException) -> str:
    """The text stored as the event's ``last_error``."""
    return f"{type(error).__name__}: {error}"


def storable(result: Any) -> tuple[Any, str | None]:
    """The result as it can be stored, and why it had to change (None when it did not).

    NaN and Infinity are not JSON: they are stored as the strings "NaN", "Infinity" and
    "-Infinity"; a result that cannot be stored at all is replaced by a note saying why.
    """
    try:
        encode_result(result)
        return result, None
    except InvalidResult as exc:
        reason = exc.reason
    try:
        safe = finite_json(result)
        encode_result(safe)
        return safe, f"{reason}: non-finite numbers stored as strings"
    except (InvalidResult, RecursionError):
        return {"result_not_stored": reason}, f"{reason}: result not stored"


class OutageLog:
    """Logs Redis being unreachable once per outage (and every ``every`` seconds), and recovery."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.down_since: float | None = None
        self.recovered_at = float("-inf")
        self._last_logged = 0.0

    def recent(self, seconds: float) -> bool:
        """True while Redis is down, and for ``seconds`` after it came back."""
        return self.down_since is not None or time.monotonic() - self.recovered_at < seconds

    def failed(self, operation: str, error: Exception) -> None:
        """Note a failed queue call; log it if the outage is new or was last logged long ago."""
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
        if now - self._last_logged >= self.every:
            self._last_logged = now
            log.error("redis unreachable, retrying with a fixed delay", extra={
                "operation": operation, "error": describe_error(error),
                "down_seconds": round(now - self.down_since, 1)})

    def recovered(self) -> None:
        """Note a queue call that worked; log the end of an outage."""
        if self.down_since is not None:
            log.warning("redis reachable again", extra={
                "down_seconds": round(time.monotonic() - self.down_since, 1)})
            self.down_since, self._last_logged = None, 0.0
            self.recovered_at = time.monotonic()


class EventProcessor:
    """Runs events from the queue through the command registry until asked to stop."""

    def __init__(
        self,
        settings: Settings,
        queue: QueueService,
        registry: Registry,
        *,
        broker: Broker | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.registry = registry
        self.consumer_id = queue.consumer_id
        self.metrics = ProcessorMetrics()
        broker = broker or create_broker(settings.ibkr, on_retry=self.metrics.retried)
        self.context = CommandContext(settings, broker, self.consumer_id)
        self.flights: dict[str, InFlight] = {}
        self.account_locks = AccountLocks()
        processing = settings.processing
        self.capacity = Capacity(processing.concurrency, processing.max_waiting)
        self.run_slots = asyncio.Semaphore(processing.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.outage = OutageLog()
        self._stopping = asyncio.Event()
        self._background_stop = asyncio.Event()
        self._hand_back_deadline: float | None = None
        self._started_at = time.time()
        self.last_heartbeat: float | None = None  # monotonic time a heartbeat last reached Redis
        self._watch_gauges()

    def _watch_gauges(self) -> None:
        watch = self.metrics.watch
        watch("processor_events_in_flight", "events this processor holds",
              lambda: float(len(self.flights)))
        watch("processor_events_waiting_for_account", "held events waiting for their account",
              lambda: float(self.capacity.parked))
        watch("processor_stopping", "1 once a stop was requested", lambda: float(self.stopping))
        watch("processor_ibkr_connected", "1 while the IBKR connection is up",
              lambda: float(bool(getattr(self.context.broker, "connected", False))))
        watch("processor_heartbeat_age_seconds", "seconds since a heartbeat last reached Redis",
              lambda: float("inf") if self.last_heartbeat is None
              else time.monotonic() - self.last_heartbeat)

    @classmethod
    def from_settings(
        cls, settings: Settings, registry: Registry, *, broker: Broker | None = None
    ) -> EventProcessor:
        """A processor with its own queue connection and consumer id."""
        consumer_id = new_consumer_id(settings.processing.consumer_name)
        return cls(settings, QueueService.from_settings(settings, consumer_id), registry,
                   broker=broker)

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Process events until :meth:`request_stop`, then drain and return."""
        log.info("processor started", extra=self._describe())
        await self._migrate_legacy_keys()
        background = self._start_background()
        claimers = [asyncio.create_task(self._claim_loop(), name=f"claim-{i}")
                    for i in range(self.settings.processing.concurrency)]
        await self._stopping.wait()
        await self._drain(claimers)
        await self._stop_background(background)
        await self._forget()
        log.info("processor stopped", extra={"consumer_id": self.consumer_id})

    async def _migrate_legacy_keys(self) -> None:
        """Before the first claim: move a queue an earlier version left under the key names
        without the hash tag (an upgrade), retried while Redis is unreachable."""
        while not self.stopping:
            try:
                moved = await self.queue.migrate_legacy_keys()
            except QueueUnavailable as exc:
                self.outage.failed("migrate", exc)
                await asyncio.sleep(self.settings.redis.reconnect_delay)
                continue
            self.outage.recovered()
            if moved:
                log.warning("moved the queue of an earlier version to the new key names",
                            extra={"keys_moved": moved})
            return

    def request_stop(self, reason: str = "requested") -> None:
        """Stop claiming; running commands get ``processing.shutdown_grace`` to finish."""
        if not self._stopping.is_set():
            log.info("stopping", extra={"reason": reason, "in_flight": len(self.flights)})
            grace = self.settings.processing.shutdown_grace
            self._hand_back_deadline = time.monotonic() + grace + HAND_BACK_SECONDS
            self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stopping.is_set()

    async def close(self) -> None:
        """Disconnect from IBKR and close the queue connections."""
        try:
            await self.context.broker.close()
        finally:
            await self.queue.close()

    def _start_background(self) -> list[asyncio.Task[None]]:
        p = self.settings.processing
        jobs: list[tuple[str, float, Callable[[], Awaitable[object]]]] = [
            ("renew", p.lease_renew_interval, self.renew_leases),
            ("heartbeat", p.heartbeat_interval, self.send_heartbeat),
            ("reap", p.reap_interval, self.reap_expired),
            ("promote", p.promote_interval, self.queue.promote_due),
            ("trim", self.settings.history.trim_interval, self.trim_history),
        ]
        return [asyncio.create_task(self._every(*job), name=job[0]) for job in jobs]

    async def _every(
        self, name: str, interval: float, job: Callable[[], Awaitable[object]]
    ) -> None:
        while not self._background_stop.is_set():
            try:
                await job()
            except QueueUnavailable as exc:
                self.outage.failed(name, exc)
            except Exception:
                log.exception("periodic job failed", extra={"job": name})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._background_stop.wait(), interval)

    async def _stop_background(self, background: list[asyncio.Task[None]]) -> None:
        # A flag, not only cancel(): redis-py's read timeout can swallow a cancellation that lands
        # at the moment a reply arrives, and a periodic job must never keep the process alive.
        self._background_stop.set()
        _, pending = await asyncio.wait(background, timeout=5.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    async def _drain(self, claimers: list[asyncio.Task[None]]) -> None:
        grace_ends = time.monotonic() + self.settings.processing.shutdown_grace
        await self.capacity.close()
        self._cancel_flights(Phase.WAITING)
        await asyncio.wait(claimers)  # at most one claim_timeout: a claim is never cut short
        pending = await self._wait_tasks(grace_ends - time.monotonic())
        if pending:
            self._cancel_flights(Phase.WAITING, Phase.RUNNING)
            pending = await self._wait_tasks(HAND_BACK_SECONDS)
        for task in pending:
            log.error("event task did not stop; its event is left to the reaper",
                      extra={"task": task.get_name()})
            task.cancel()

    async def _wait_tasks(self, timeout: float) -> set[asyncio.Task[None]]:
        if not self._tasks:
            return set()
        _, pending = await asyncio.wait(set(self._tasks), timeout=max(0.0, timeout))
        return pending

    def _cancel_flights(self, *phases: Phase) -> None:
        for flight in list(self.flights.values()):
            if flight.phase in phases and flight.task is not None:
                flight.task.cancel()

    async def _forget(self) -> None:
        try:
            await self.queue.forget()
        except QueueUnavailable as exc:
            log.warning("could not remove the heartbeat", extra={"error": describe_error(exc)})

    # -- claiming -------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self.stopping and await self.capacity.reserve():
            claim = await self.claim_next()
            if claim is None or await self._already_held(claim):
                await self.capacity.done()
                continue
            task = asyncio.create_task(self.process(claim), name=f"event-{claim.event.event_id}")
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event task failed; the reaper will requeue its event",
                      exc_info=task.exception(), extra={"task": task.get_name()})

    async def claim_next(self) -> Claim | None:
        """Claim the next ready event (and its account lock when free), or None (timeout, stop
        requested, or Redis unreachable)."""
        try:
            claim = await self.queue.claim_event(self.settings.processing.claim_timeout)
        except QueueUnavailable as exc:
            self.outage.failed("claim", exc)
            await asyncio.sleep(self.settings.redis.reconnect_delay)
            return None
        except Exception:
            log.exception("claim failed")
            await asyncio.sleep(self.settings.redis.reconnect_delay)
            return None
        self.outage.recovered()
        return claim

    async def _already_held(self, claim: Claim) -> bool:
        """True when an earlier claim of this event is still at work here.

        That happens after Redis was unreachable for longer than a lease: a reaper put the event
        back and this process claimed it again. The lease now belongs to this consumer again, so
        the earlier attempt keeps it renewed and settles it; a second run would only repeat it.
        """
        event = claim.event
        held = self.flights.get(event.event_id)
        if held is None:
            return False
        held.event = event  # the new claim's token: the running attempt now acts for it
        held.lease_lost = False
        if claim.lock_token:
            # The earlier hold of the account lock had expired and the claim took it again.
            if held.phase is Phase.SETTLING:  # its settling call releases only the old token
                await self._unlock(event.account_id, claim.lock_token)
            else:
                held.lock_token = claim.lock_token
                held.confirm_lock(claim.sent_at)
        log.warning("claimed an event this process still works on; the running attempt settles it",
                    extra=self._event_fields(held, phase=held.phase.value))
        return True

    async def process(self, claim: Claim) -> None:
        """Take one claimed event to its end: completed, requeued, or handed back.

        The claim may have taken the event's account lock already. The caller has reserved a slot
        of :attr:`capacity` for it; it is given back here.
        """
        event = claim.event
        flight = InFlight(event, lock_token=claim.lock_token or self.queue.new_lock_token(),
                          task=asyncio.current_task())
        if claim.lock_token:
            flight.confirm_lock(claim.sent_at)
        self.flights[event.event_id] = flight
        try:
            await self._process(flight)
        except asyncio.CancelledError:
            await self._hand_back_cancelled(flight)
            raise
        except QueueUnavailable as exc:
            log.error("event left to the reaper: redis unreachable past the shutdown deadline",
                      extra=self._event_fields(flight, error=describe_error(exc)))
        finally:
            self.flights.pop(event.event_id, None)
            await self.capacity.done(parked=flight.parked)

    async def _process(self, flight: InFlight) -> None:
        if self.stopping:
            await self.release_event(flight)
            return
        try:
            command = resolve_command(self.registry, flight.event)
        except CommandError as exc:
            await self.fail_event(flight, exc)
            return
        account = flight.event.account_id
        if flight.lock_held and self.account_locks.busy(account):
            # Another event of this account is here, waiting for (or holding) the Redis lock this
            # claim just took: give it back, or both would wait for each other.
            await self._unlock(account, flight.lock_token)
            flight.lock_held = False
            flight.lock_token = self.queue.new_lock_token()
        park = functools.partial(self._park, flight)
        async with self.account_locks.hold(account, on_busy=park):
            if flight.lock_held or await self.lock_account(flight):
                self._unpark(flight)
                async with self.run_slots:
                    outcome = await self.run_command(flight, command)
                await self.settle(flight, outcome)

    async def _park(self, flight: InFlight) -> None:
        if not flight.parked:
            flight.parked = await self.capacity.park()

    def _unpark(self, flight: InFlight) -> None:
        if flight.parked:
            self.capacity.unpark()
            flight.parked = False

    # -- the arrows of the lifecycle ------------------------------------------------------------

    async def lock_account(self, flight: InFlight) -> bool:
        """Take the account's Redis lock, waiting (lease renewed, nothing counted) while it is held.

        Returns False when the event was handed back (stop requested) or taken over (lease lost).
        """
        poll = self.settings.processing.lock_poll_interval
        while True:
            if self.stopping:
                await self.release_event(flight)
                return False
            if flight.lease_lost:
                await self._give_up(flight)
                return False
            if await self._try_lock(flight):
                return True
            if flight.lease_lost:
                continue
            await self._park(flight)
            await asyncio.sleep(poll)

    async def _try_lock(self, flight: InFlight) -> bool:
        """Take the account lock for this claim; the claim is checked in the same script, so an
        event completed or re-claimed elsewhere meanwhile is never run here."""
        sent = time.monotonic()
        try:
            taken = await self.queue.lock_account(flight.event, flight.lock_token)
        except (LeaseLost, EventNotFound):
            flight.lease_lost = True
            return False
        except QueueUnavailable as exc:
            self.outage.failed("lock", exc)
            await asyncio.sleep(self.settings.redis.reconnect_delay)
            return False
        if taken:
            flight.confirm_lock(sent)
        return taken

    async def run_command(self, flight: InFlight, command: Command) -> Outcome:
        """Run the event's command; its exception (if any) becomes the outcome.

        The command runs only while this processor is sure it holds the account lock: when no
        renewal has confirmed the lock for nearly its lifetime (Redis unreachable or paused), or
        a renewal finds another holder, the command is stopped before anyone else can take the
        account, and its event fails with :class:`AccountLockLost`.
        """
        flight.phase = Phase.RUNNING
        log.debug("command started", extra=self._event_fields(flight))
        runner: asyncio.Task[Any] = asyncio.create_task(
            command(flight.event, self.context), name=f"command-{flight.event_id}")
        flight.runner = runner
        started = time.monotonic()
        try:
            await self._fence(flight, runner)
        except asyncio.CancelledError:
            runner.cancel()
            await asyncio.wait({runner})
            raise
        finally:
            flight.phase = Phase.SETTLING
            self.metrics.ran(flight.event.exec_command, started)
        return self._outcome_of(flight, runner)

    async def _fence(self, flight: InFlight, runner: asyncio.Task[Any]) -> None:
        """Wait for the command, stopping it when the account lock may have expired."""
        fence = self.settings.processing.lock_fence_seconds
        while not runner.done():
            left = flight.lock_confirmed_at + fence - time.monotonic()
            if left <= 0:
                flight.stop_command(
                    f"the account lock was not confirmed for {fence:g} s (Redis unreachable?) "
                    "and may expire")
                await asyncio.wait({runner})
                return
            await asyncio.wait({runner}, timeout=left)

    def _outcome_of(self, flight: InFlight, runner: asyncio.Task[Any]) -> Outcome:
        if runner.cancelled():
            if flight.stop_reason is not None:
                self.metrics.commands_stopped.inc()
                log.error("command stopped", extra=self._event_fields(
                    flight, reason=flight.stop_reason))
                return Outcome(error=AccountLockLost(flight.event.account_id, flight.stop_reason))
            return Outcome(error=RuntimeError("command raised CancelledError"))
        error = runner.exception()
        if error is not None:
            return Outcome(error=error)
        return Outcome(result=runner.result())

    async def settle(self, flight: InFlight, outcome: Outcome) -> None:
        """Complete the event with its result, or requeue it with its error."""
        if outcome.error is None:
            await self.complete_event(flight, outcome.result)
        else:
            await self.fail_event(flight, outcome.error)

    async def complete_event(self, flight: InFlight, result: Any) -> None:
        """Complete: the dedup key and record go, the account lock is released (one script)."""
        token, event = flight.lock_token, flight.event
        result, changed = storable(result)
        if changed:
            log.warning("the result is not valid JSON; stored changed",
                        extra=self._event_fields(flight, error=changed))
        try:
            status = await self._until_done(
                "complete", lambda: self.queue.remove_from_queued(event, result, token))
        except LeaseLost as exc:
            self.metrics.ended(event.exec_command, "taken_over")
            log.warning("completed, but another claim runs the event now; it settles it",
                        extra=self._event_fields(flight, error=describe_error(exc)))
            return
        except EventNotFound as exc:
            log.warning("completed, but the event is gone (deleted by an operator?)",
                        extra=self._event_fields(flight, error=describe_error(exc)))
            return
        self.metrics.ended(event.exec_command, "completed")
        log.info("event completed", extra=self._event_fields(
            flight, status=status, result=summarize_result(result)))

    async def fail_event(self, flight: InFlight, error: BaseException) -> None:
        """Requeue: ``times_queued + 1``, error recorded, ready again after ``requeue_delay``."""
        text, token, event = describe_error(error), flight.lock_token, flight.event
        flight.phase = Phase.SETTLING
        try:
            times, due = await self._until_done(
                "fail", lambda: self.queue.requeue_event(event, text, token))
        except LeaseLost as exc:
            self.metrics.ended(event.exec_command, "taken_over")
            log.warning("failed, but the event was taken over",
                        extra=self._event_fields(flight, error=describe_error(exc)))
            return
        self.metrics.ended(event.exec_command, "failed")
        log.warning("event failed, requeued", extra=self._event_fields(
            flight, error=text, times_queued=times, next_attempt_at=due.isoformat()))

    async def release_event(self, flight: InFlight) -> None:
        """Hand the event back to the head of the queue; no failure is counted."""
        event, token, phase = flight.event, flight.lock_token, flight.phase.value
        flight.phase = Phase.SETTLING
        try:
            await self._until_done("release", lambda: self.queue.release_event(event, token))
        except LeaseLost:
            self.metrics.ended(event.exec_command, "taken_over")
            log.warning("hand-back skipped: the event was taken over",
                        extra=self._event_fields(flight))
            return
        self.metrics.ended(event.exec_command, "handed_back")
        log.info("event handed back", extra=self._event_fields(flight, phase=phase))

    async def _hand_back_cancelled(self, flight: InFlight) -> None:
        """Hand back an event whose task was cancelled (stop past the grace), and say so.

        The cancellation has been received, so it is cleared before the hand-back: CPython 3.11.0
        to 3.11.2 turn every ``asyncio.timeout`` that expires inside a task with a pending
        cancellation into CancelledError (gh-102780, fixed in 3.11.3), and redis-py checks each
        pooled connection with a timeout that expires by design, so the hand-back itself would be
        cancelled. The caller re-raises, so the task still ends cancelled.
        """
        task = asyncio.current_task()
        while task is not None and task.uncancel() > 0:
            pass
        log.info("event task cancelled; handing the event back", extra=self._event_fields(flight))
        try:
            await self.release_event(flight)
        except BaseException as exc:
            log.error("hand-back failed; the reaper requeues the event when its lease ends",
                      extra=self._event_fields(flight, error=describe_error(exc)))
            raise

    async def _give_up(self, flight: InFlight) -> None:
        log.warning("lease lost while waiting for the account; leaving the event to its new holder",
                    extra=self._event_fields(flight))
        await self._unlock(flight.event.account_id, flight.lock_token)

    async def _unlock(self, account_id: str, token: str) -> None:
        """Release the account lock if ``token`` holds it; an outage leaves it to expire."""
        try:
            await self.queue.unlock_account(account_id, token)
        except QueueUnavailable as exc:
            self.outage.failed("unlock", exc)

    async def _until_done(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry ``call`` while Redis is unreachable, with a fixed delay.

        Before a stop there is no limit (the event is safe in Redis meanwhile); after one, the
        attempts end at the hand-back deadline and QueueUnavailable is raised.
        """
        while True:
            try:
                value = await call()
            except QueueUnavailable as exc:
                self.outage.failed(operation, exc)
                if self._past_hand_back_deadline():
                    raise
                await asyncio.sleep(self.settings.redis.reconnect_delay)
            else:
                self.outage.recovered()
                return value

    def _past_hand_back_deadline(self) -> bool:
        deadline = self._hand_back_deadline
        return deadline is not None and time.monotonic() >= deadline

    # -- leases, heartbeat, reaper --------------------------------------------------------------

    async def trim_history(self) -> None:
        """Remove finished records past the retention (finishing an event trims a few; this
        catches up when none finished for long, or after the retention was lowered)."""
        removed = await self.queue.trim_history()
        if removed:
            log.info("finished records past the retention removed", extra={"removed": removed})

    async def renew_leases(self) -> None:
        """Extend the lease (and account lock) of every event this process holds."""
        await asyncio.gather(*(self._renew(f) for f in list(self.flights.values())))

    async def _renew(self, flight: InFlight) -> None:
        holding = flight.lock_held and flight.phase is not Phase.WAITING
        sent = time.monotonic()
        try:
            lock = await self.queue.renew(flight.event, flight.lock_token if holding else "")
        except LeaseLost:
            await self._on_lease_lost(flight)
            return
        except AccountLockConflict as exc:
            flight.stop_command("another holder took the account lock")
            log.error("account lock taken by another holder; stopping the command",
                      extra=self._event_fields(flight, error=describe_error(exc)))
            return
        except QueueUnavailable as exc:
            self.outage.failed("renew", exc)
            return
        self.metrics.leases_renewed.inc()
        if holding:
            flight.confirm_lock(sent)
            if lock == "retaken":
                log.warning("the account lock had expired; taken again",
                            extra=self._event_fields(flight))

    async def _on_lease_lost(self, flight: InFlight) -> None:
        if flight.phase is Phase.SETTLING:
            return  # a renewal raced the completion; the settling call reports the real outcome
        if not flight.lease_lost:
            self.metrics.leases_lost.inc()
            log.error("lease lost; the event may be claimed again elsewhere",
                      extra=self._event_fields(flight, phase=flight.phase.value))
            flight.lease_lost = True
        if flight.phase is Phase.RUNNING and flight.lock_held:
            # The command is still trading for this account: keep others off the account, or
            # stop the command if the account is no longer ours.
            await self._keep_account(flight)

    async def _keep_account(self, flight: InFlight) -> None:
        account, token = flight.event.account_id, flight.lock_token
        sent = time.monotonic()
        try:
            kept = (await self.queue.extend_account_lock(account, token)
                    or await self.queue.acquire_account_lock(account, token))
        except QueueUnavailable as exc:
            self.outage.failed("extend lock", exc)
            return
        if kept:
            flight.confirm_lock(sent)
        else:
            flight.stop_command("another holder took the account lock after the lease was lost")

    async def send_heartbeat(self) -> None:
        """Record that this processor is alive, with what it is doing."""
        await self.queue.heartbeat(self._describe())
        self.last_heartbeat = time.monotonic()

    def health(self) -> dict[str, Any]:
        """Healthy while running and its heartbeats reach Redis (within three intervals)."""
        interval = self.settings.processing.heartbeat_interval
        age = None if self.last_heartbeat is None else time.monotonic() - self.last_heartbeat
        beating = age is not None and age <= 3 * interval
        return {
            "status": "healthy" if beating and not self.stopping else "unhealthy",
            "consumer_id": self.consumer_id, "stopping": self.stopping,
            "heartbeat_age_seconds": None if age is None else round(age, 1),
            "in_flight": len(self.flights), "waiting_for_account": self.capacity.parked,
        }

    async def reap_expired(self) -> None:
        """Requeue events of processors that died (their leases ran out).

        Leases run on the Redis clock, which kept going while Redis was down, so right after an
        outage every lease looks expired. Live processors renew within a third of a lease; until
        one lease has passed since Redis came back, reaping would only re-run their events.
        """
        if self.outage.recent(self.settings.processing.lease_seconds):
            return
        reaped = await self.queue.reap_expired()
        if reaped:
            log.warning("requeued events of a lost processor", extra={"event_ids": reaped})

    # -- log fields -----------------------------------------------------------------------------

    def _describe(self) -> dict[str, Any]:
        return {
            "consumer_id": self.consumer_id, "pid": os.getpid(), "host": socket.gethostname(),
            "version": __version__, "concurrency": self.settings.processing.concurrency,
            "in_flight": len(self.flights), "waiting_for_account": self.capacity.parked,
            "started_at": self._started_at,
            "stopping": self.stopping,
        }

    def _event_fields(self, flight: InFlight, **extra: Any) -> dict[str, Any]:
        event = flight.event
        return {
            "event_id": event.event_id, "account_id": event.account_id,
            "exec_command": event.exec_command, "times_queued": event.times_queued,
            "elapsed_ms": round((time.monotonic() - flight.claimed_at) * 1000, 1), **extra,
        }
