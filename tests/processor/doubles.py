"""Test-double commands that real processor processes run (``processing.commands``).

Each command reads what to do from the event's data:
``sleep`` (seconds, or ``[low, high]`` for a random duration), ``fail_until`` (fail while
``times_queued`` is at most this), ``record`` (default true). Runs are appended as JSON lines to
the file named by ``PROCESSOR_TEST_RECORD`` (one ``os.write`` per line on an O_APPEND file, so
lines from several processes never interleave).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from typing import Any

from event_processor.commands.base import Command, CommandContext
from event_processor.config import Settings
from event_queue import Event, ExecCommand

RECORD_ENV = "PROCESSOR_TEST_RECORD"


def record(event: Event, what: str, **extra: Any) -> None:
    """Append one line about ``event`` to the record file (if one is configured)."""
    path = os.environ.get(RECORD_ENV)
    if not path or not event.data.get("record", True):
        return
    line = {"event_id": event.event_id, "account_id": event.account_id,
            "exec_command": event.exec_command, "times_queued": event.times_queued,
            "what": what, "t": time.time(), "pid": os.getpid(), **extra}
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def duration(data: dict[str, Any]) -> float:
    """How long the command should take."""
    sleep = data.get("sleep", 0)
    if isinstance(sleep, list):
        return random.uniform(float(sleep[0]), float(sleep[1]))
    return float(sleep)


async def double_command(event: Event, context: CommandContext) -> dict[str, Any]:
    """Sleep, then succeed or fail as the event's data asks; record start and end."""
    record(event, "start", consumer=context.consumer_id)
    try:
        seconds = duration(event.data)
        if seconds:
            await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        record(event, "cancelled")
        raise
    if event.times_queued <= int(event.data.get("fail_until", 0)):
        record(event, "fail")
        raise RuntimeError(f"asked to fail while times_queued <= {event.data['fail_until']}")
    record(event, "end")
    return {"slept": seconds, "pid": os.getpid()}


def create_registry(settings: Settings) -> dict[str, Command]:
    """Every command name runs the double."""
    return {command.value: double_command for command in ExecCommand}
