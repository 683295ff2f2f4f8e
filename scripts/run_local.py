"""Run the whole stack on this machine, without Docker, and keep it supervised.

    .venv/bin/python scripts/run_local.py [--broker-port 8080] [--management-port 8000] ...

(after ``scripts/check`` has set up ``.venv``). It starts, all on 127.0.0.1: a real Redis server
from the pip-installed binary (AOF on, data in ``.local/redis``), the ibkr-simulator with its demo
accounts, the event-processor trading against it, the event-broker and the management service.

* Ports come from the flags, else the environment (``BROKER_PORT``, ``MANAGEMENT_PORT``,
  ``SIMULATOR_PORT``, ``SIMULATOR_ADMIN_PORT``, ``PROCESSOR_PORT``), else the defaults; a port that
  is taken is named before anything starts.
* The webhook token and the management API key are made once and kept in ``.local/credentials.env``;
  ``.local/env`` gets ``export`` lines for them and for the services' URLs (``. .local/env`` in
  another shell, then the README's curl examples work as written). The same lines are printed.
* Each program logs to ``.local/logs/<name>.log``; ``.local/processes.json`` lists their pids.
* Supervision: if a program exits, it is named with its status and the last lines of its log, the
  others are stopped in order and this exits 1. SIGINT (Ctrl-C) and SIGTERM stop the processor
  first (it drains: running commands finish or are handed back), then the broker and the
  management service, then the simulator, Redis last; then this exits 0. The programs run in their
  own session (Ctrl-C reaches only this supervisor) and die with it even if it is killed.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "event-queue"))

from event_queue.redis_server import NoRedisServer, RedisServer  # noqa: E402

HOST = "127.0.0.1"
ACCOUNTS = ROOT / "config" / "accounts.yaml"
SIM_ACCOUNTS = ROOT / "ibkr-simulator" / "accounts.demo.yaml"
PORTS = {  # name: (flag, environment variable, default)
    "broker": ("--broker-port", "BROKER_PORT", 8080),
    "management": ("--management-port", "MANAGEMENT_PORT", 8000),
    "simulator": ("--simulator-port", "SIMULATOR_PORT", 4002),
    "simulator admin": ("--simulator-admin-port", "SIMULATOR_ADMIN_PORT", 8081),
    "processor": ("--processor-port", "PROCESSOR_PORT", 8090),
}
STOP_ORDER = (("event-processor",), ("event-broker", "management-service"), ("ibkr-simulator",))
STOP_SECONDS = {"event-processor": 50.0}  # its 30 s grace and 10 s hand-back, with a margin
PR_SET_PDEATHSIG = 1


class StartError(Exception):
    """The stack cannot start; the message says why."""


def die_with_parent() -> None:
    """In the child, before exec: its own session, and SIGTERM when the supervisor dies."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One supervised program."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def describe_exit(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Supervisor:
    """Starts the programs, watches them, and stops them in order."""

    state: Path
    ports: dict[str, int]
    children: list[Child] = field(default_factory=list)
    stop_requested: str | None = None

    def start(self, name: str, module: str, env: dict[str, str], *args: str) -> Child:
        log = self.state / "logs" / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *args], cwd=ROOT, env={**os.environ, **env},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent)
        child = Child(name, process, log)
        self.children.append(child)
        self._write_pids()
        return child

    def _write_pids(self) -> None:
        pids = {c.name: c.process.pid for c in self.children}
        (self.state / "processes.json").write_text(json.dumps(pids, indent=2) + "\n")

    def exited(self) -> Child | None:
        """The first program that is no longer running, if any."""
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop(self) -> None:
        """SIGTERM each group in STOP_ORDER, waiting for it before the next; SIGKILL laggards."""
        for group in STOP_ORDER:
            running = [c for c in self.children if c.name in group and c.process.poll() is None]
            for child in running:
                print(f"stopping {child.name}", flush=True)
                child.process.send_signal(signal.SIGTERM)
            for child in running:
                try:
                    child.process.wait(timeout=STOP_SECONDS.get(child.name, 15.0))
                except subprocess.TimeoutExpired:
                    print(f"{child.name} did not stop in time; killing it", flush=True)
                    child.process.kill()
                    child.process.wait()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/run_local.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, (flag, variable, default) in PORTS.items():
        parser.add_argument(flag, type=int, default=int(os.environ.get(variable) or default),
                            metavar="PORT", help=f"{name} port (env {variable}, default {default})")
    parser.add_argument("--state-dir", type=Path,
                        default=Path(os.environ.get("LOCAL_STATE_DIR") or ROOT / ".local"),
                        help="credentials, Redis data, logs (env LOCAL_STATE_DIR, default .local)")
    return parser.parse_args(argv)


def check_ports_free(ports: dict[str, int]) -> None:
    """StartError naming every port that is taken, tested as the servers bind (SO_REUSEADDR)."""
    taken = []
    for name, port in ports.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError:
                flag, variable, _ = PORTS[name]
                taken.append(f"{name} port {port} is in use (choose another: {flag} or {variable})")
    if taken:
        raise StartError("; ".join(taken))


def credentials(state: Path) -> dict[str, str]:
    """The token and API key of this machine's stack, made once and kept (mode 0600)."""
    path = state / "credentials.env"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(f"WEBHOOK_TOKEN={secrets.token_urlsafe(24)}\n"
                        f"MANAGEMENT_API_KEY={secrets.token_urlsafe(24)}\n")
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: values[k] for k in ("WEBHOOK_TOKEN", "MANAGEMENT_API_KEY")}


def wait_until(what: str, ready: Callable[[], bool], supervisor: Supervisor,
               timeout: float = 30.0) -> None:
    """Poll ``ready``; StartError if a program dies first or it takes longer than ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if supervisor.stop_requested:
            raise StartError(f"stopped by {supervisor.stop_requested} while starting")
        gone = supervisor.exited()
        if gone is not None:
            raise StartError(f"{gone.name} {gone.describe_exit()} while starting; the end of "
                             f"{gone.log}:\n{gone.tail()}")
        if ready():
            return
        time.sleep(0.1)
    raise StartError(f"{what} not ready after {timeout:g} s")


def answers(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own URL
                return bool(response.status == 200)
        except OSError:
            return False

    return probe


def listens(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            return False

    return probe


def export_lines(ports: dict[str, int], secrets_: dict[str, str], redis_url: str) -> list[str]:
    values = {
        **secrets_,
        "BROKER_URL": f"http://{HOST}:{ports['broker']}",
        "MANAGEMENT_URL": f"http://{HOST}:{ports['management']}",
        "SIMULATOR_ADMIN_URL": f"http://{HOST}:{ports['simulator admin']}",
        "REDIS_URL": redis_url,
    }
    return [f"export {key}={value}" for key, value in values.items()]


def start_stack(supervisor: Supervisor, redis: RedisServer, keys: dict[str, str]) -> None:
    ports, common = supervisor.ports, {"REDIS_URL": redis.url, "ACCOUNTS_FILE": str(ACCOUNTS)}
    listen = ("--host", HOST, "--port")
    supervisor.start("ibkr-simulator", "ibkr_simulator", {}, *listen, str(ports["simulator"]),
                     "--admin-port", str(ports["simulator admin"]), "--config", str(SIM_ACCOUNTS))
    wait_until("the simulator", listens(ports["simulator"]), supervisor)
    supervisor.start("event-processor", "event_processor",
                     {**common, "IB_HOST": HOST, "IB_PORT": str(ports["simulator"])},
                     *listen, str(ports["processor"]))
    supervisor.start("event-broker", "event_broker",
                     {**common, "WEBHOOK_TOKEN": keys["WEBHOOK_TOKEN"]}, *listen,
                     str(ports["broker"]))
    supervisor.start("management-service", "management_service",
                     {**common, "MANAGEMENT_API_KEY": keys["MANAGEMENT_API_KEY"]}, *listen,
                     str(ports["management"]))
    for name in ("processor", "broker", "management"):
        wait_until(f"the {name}", answers(f"http://{HOST}:{ports[name]}/health/live"), supervisor)


def banner(state: Path, redis: RedisServer, lines: list[str]) -> str:
    return "\n".join([
        "", f"The stack is up (Redis {redis.binary.version} at {redis.url}, data in "
        f"{state / 'redis'}). In another shell:", "",
        f"  . {state / 'env'}", *(f"  {line}" for line in lines), "",
        "then the README's examples, e.g.:",
        '  curl -X POST $BROKER_URL/events -H "Authorization: Bearer $WEBHOOK_TOKEN" \\',
        "    -H 'Content-Type: application/json' "
        "-d '{\"account_id\": \"DU1234567\", \"exec_command\": \"print-positions\"}'",
        "  curl $MANAGEMENT_URL/queue/history", "",
        f"Logs: {state / 'logs'}/*.log. Ctrl-C stops everything (the processor drains first).",
        ""])


def supervise(supervisor: Supervisor) -> int:
    """Wait for a stop signal (exit 0) or a program that exits (exit 1); stop the rest in order."""
    while supervisor.stop_requested is None:
        gone = supervisor.exited()
        if gone is not None:
            print(f"\n{gone.name} {gone.describe_exit()}; the end of {gone.log}:\n{gone.tail()}\n"
                  "stopping the others", file=sys.stderr, flush=True)
            supervisor.stop()
            return 1
        time.sleep(0.2)
    print(f"\n{supervisor.stop_requested}: stopping", flush=True)
    supervisor.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ports = {name: getattr(args, PORTS[name][0][2:].replace("-", "_")) for name in PORTS}
    state: Path = args.state_dir.resolve()
    for sub in ("redis", "logs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(state, ports)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.stop_requested = signal.Signals(signum).name

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        check_ports_free(ports)
        keys = credentials(state)
        redis = RedisServer(appendfsync="always", data_dir=str(state / "redis"),
                            popen_options={"preexec_fn": die_with_parent})
        redis.start()
    except (StartError, NoRedisServer, RuntimeError) as exc:
        print(f"run_local: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            start_stack(supervisor, redis, keys)
        except StartError as exc:
            print(f"run_local: {exc}", file=sys.stderr, flush=True)
            supervisor.stop()
            return 1
        lines = export_lines(ports, keys, redis.url)
        (state / "env").write_text("\n".join(lines) + "\n")
        (state / "env").chmod(0o600)
        print(banner(state, redis, lines), flush=True)
        return supervise(supervisor)
    finally:
        print("stopping redis", flush=True)
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
