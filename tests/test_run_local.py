"""``scripts/run_local.py`` driven as a user drives it: the stack up on chosen ports, the README's
example event run to completion with the printed credentials, Ctrl-C/SIGTERM → every program gone
and exit 0; a program that dies → named, the others stopped, non-zero exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from event_queue.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
README_EVENT = {"account_id": "DU1234567", "exec_command": "rebalance",
                "data": {"allocations": [{"symbol": "SPY", "allocation": 60},
                                         {"symbol": "AGG", "allocation": 38}]}}
PORT_FLAGS = ("--broker-port", "--management-port", "--simulator-port", "--simulator-admin-port",
              "--processor-port")


@dataclass
class LocalStack:
    process: subprocess.Popen[str]
    state: Path

    def env(self) -> dict[str, str]:
        lines = (self.state / "env").read_text().splitlines()
        return dict(line.removeprefix("export ").split("=", 1) for line in lines)

    def pids(self) -> dict[str, int]:
        pids: dict[str, int] = json.loads((self.state / "processes.json").read_text())
        return pids

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 90) -> tuple[int, str]:
        self.process.send_signal(signum)
        out, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for every purpose
        return stat.read().split(") ", 1)[1][0] != "Z"


def launch(state: Path) -> LocalStack:
    """run_local on free ports with its state in ``state``, once it printed its export lines."""
    args = [part for flag in PORT_FLAGS for part in (flag, str(free_port()))]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PORT")}
    (state / "env").unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "scripts/run_local.py", *args, "--state-dir", str(state)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stack = LocalStack(process, state)
    deadline = time.monotonic() + 90
    while not (state / "env").exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "run_local did not come up"
        time.sleep(0.2)
    return stack


def cleanup(stack: LocalStack) -> None:
    if stack.process.poll() is None:
        stack.process.kill()
        stack.process.communicate()
    for pid in stack.pids().values():
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[LocalStack]:
    (tmp_path / "state").mkdir()
    stack = launch(tmp_path / "state")
    try:
        yield stack
    finally:
        cleanup(stack)


def test_the_readme_event_runs_and_sigterm_stops_everything(local_stack: LocalStack) -> None:
    env = local_stack.env()
    answer = httpx.post(f"{env['BROKER_URL']}/events", json=README_EVENT,
                        headers={"Authorization": f"Bearer {env['WEBHOOK_TOKEN']}"})
    assert answer.status_code == 202, answer.text
    event_id = answer.json()["event_id"]

    deadline, entry = time.monotonic() + 30, None
    while entry is None and time.monotonic() < deadline:
        history = httpx.get(f"{env['MANAGEMENT_URL']}/queue/history").json()["entries"]
        entry = next((e for e in history if e["event_id"] == event_id), None)
        time.sleep(0.2)
    assert entry is not None and entry["outcome"] == "completed", entry
    assert all(o["status"] == "Filled" for o in entry["result"]["orders"])
    key_check = httpx.post(f"{env['MANAGEMENT_URL']}/queue/events/{event_id}/retry",
                           headers={"X-API-Key": env["MANAGEMENT_API_KEY"]})
    # the printed key is accepted: the answer is about the event (finished, so not retried)
    assert key_check.status_code == 409 and "completed" in key_check.text, key_check.text

    pids = local_stack.pids()
    assert set(pids) == {"ibkr-simulator", "event-processor", "event-broker", "management-service"}
    code, out = local_stack.stop(signal.SIGTERM)
    assert code == 0, out
    assert [p for p in pids.values() if alive(p)] == []
    order = [line.removeprefix("stopping ") for line in out.splitlines()
             if line.startswith("stopping ")]
    assert order == ["event-processor", "event-broker", "management-service", "ibkr-simulator",
                     "redis"]


def test_credentials_survive_a_restart(local_stack: LocalStack) -> None:
    first = local_stack.env()
    assert local_stack.stop(signal.SIGINT)[0] == 0
    again = launch(local_stack.state)
    try:
        second = again.env()
        assert (second["WEBHOOK_TOKEN"], second["MANAGEMENT_API_KEY"]) == (
            first["WEBHOOK_TOKEN"], first["MANAGEMENT_API_KEY"])
        assert second["BROKER_URL"] != first["BROKER_URL"]  # other ports this time
        answer = httpx.get(f"{second['MANAGEMENT_URL']}/audit",
                           headers={"X-API-Key": first["MANAGEMENT_API_KEY"]})
        assert answer.status_code == 200
        assert (local_stack.state / "credentials.env").stat().st_mode & 0o777 == 0o600
        assert again.stop()[0] == 0
    finally:
        cleanup(again)


def test_a_program_that_dies_is_named_and_the_rest_are_stopped(local_stack: LocalStack) -> None:
    pids = local_stack.pids()
    os.kill(pids["event-broker"], signal.SIGKILL)
    code, out = local_stack.process.wait(timeout=90), local_stack.process.communicate()[0]
    assert code == 1, out
    assert "event-broker killed by SIGKILL" in out
    assert [name for name, pid in pids.items() if alive(pid)] == []


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "scripts/run_local.py", "--management-port", str(port),
             "--broker-port", str(free_port()), "--state-dir", str(tmp_path)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert f"management port {port} is in use (choose another: --management-port or " \
           "MANAGEMENT_PORT)" in done.stderr
    assert not (tmp_path / "processes.json").exists()
