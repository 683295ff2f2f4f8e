"""The command-line convention of the four programs, run as a user runs them.

Every program takes --config, --host, --port, --check-config and --help; an unknown argument is
an error; every configuration error (file, key, variable, port) ends it with status 2 and one line
per problem naming where and what is expected, never a traceback; it says "ready" only once its
port is bound, logs JSON lines on stdout only, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from event_queue.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in (
    "event-queue", "event-broker", "event-processor", "management-service", "ibkr-simulator"))
MODULES = {"event-broker": "event_broker", "event-processor": "event_processor",
           "management-service": "management_service", "ibkr-simulator": "ibkr_simulator"}
SERVICES_ACCOUNTS = str(ROOT / "config" / "accounts.yaml")
SIMULATOR_ACCOUNTS = str(ROOT / "ibkr-simulator" / "accounts.demo.yaml")
TOKEN = "a-webhook-token-for-the-cli-tests"
# Enough for each program to start (the simulator also needs --config).
BASE_ENV = {
    "event-broker": {"WEBHOOK_TOKEN": TOKEN, "ACCOUNTS_FILE": SERVICES_ACCOUNTS},
    "event-processor": {},
    "management-service": {"ACCOUNTS_FILE": SERVICES_ACCOUNTS},
    "ibkr-simulator": {},
}
BASE_ARGS = {"ibkr-simulator": ["--config", SIMULATOR_ACCOUNTS]}
# Variables a developer's shell may hold that would change what the programs read.
CLEARED = ("REDIS_URL", "ACCOUNTS_FILE", "WEBHOOK_SECRET", "WEBHOOK_TOKEN", "PORT", "HOST",
           "BROKER_CONFIG", "PROCESSOR_CONFIG", "MANAGEMENT_CONFIG", "MANAGEMENT_API_KEY",
           "MANAGEMENT_PORT", "PROCESSOR_PORT", "SIMULATOR_CONFIG", "SIMULATOR_PORT", "IB_PORT",
           "LOG_LEVEL", "TRADING_MODE")


def environment(program: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return {**env, "PYTHONPATH": PYTHONPATH, **BASE_ENV[program], **extra}


def run(program: str, *args: str, env: dict[str, str] | None = None,
        base_args: bool = True) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", MODULES[program],
               *(BASE_ARGS.get(program, []) if base_args else []), *args]
    return subprocess.run(command, cwd=ROOT, env=environment(program, env or {}),
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A port something already listens on (bound as the servers bind: SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cli")
    contents = {
        "bad.yaml": "settings: [1, 2\nnext: 3\n",
        "list.yaml": "- a\n- b\n",
        "secret.yaml": "management:\n  api_key: put-me-in-the-environment-instead\n",
        "registry.yaml": "processing:\n  commands: no_such_module:create\n",
    }
    for name, text in contents.items():
        (folder / name).write_text(text, encoding="utf-8")
    return {name: str(folder / name) for name in contents} | {"missing": str(folder / "nope.yaml")}


@dataclass(frozen=True)
class Case:
    """One wrong configuration and the words its error line must hold."""

    program: str
    expect: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.program}: {self.expect[:40]}"


CASES = [
    # event-broker
    Case("event-broker", "bad.yaml: the configuration file is not valid YAML at line 2",
         ("--config", "{bad.yaml}")),
    Case("event-broker", "nope.yaml: cannot read the configuration file: No such file",
         ("--config", "{missing}")),
    Case("event-broker", "list.yaml: the configuration file must hold a mapping",
         ("--config", "{list.yaml}")),
    Case("event-broker", "redis_url (REDIS_URL): must be a redis://, rediss:// or unix:// URL",
         env={"REDIS_URL": "localhost:6379"}),
    Case("event-broker", "no webhook authentication configured: set WEBHOOK_SECRET",
         env={"WEBHOOK_TOKEN": ""}),
    Case("event-broker", "port (PORT): Input should be a valid integer", env={"PORT": "eighty"}),
    Case("event-broker", "looks like an ibkr-simulator file", env={"ACCOUNTS_FILE": SIMULATOR_ACCOUNTS}),
    Case("event-broker", "--port / PORT: port {busy} on 127.0.0.1 is in use",
         ("--host", "127.0.0.1", "--port", "{busy}")),
    # event-processor
    Case("event-processor", "bad.yaml: the configuration file (--config / PROCESSOR_CONFIG) is not "
         "valid YAML at line 2", ("--config", "{bad.yaml}")),
    Case("event-processor", "nope.yaml: cannot read the configuration file",
         ("--config", "{missing}")),
    Case("event-processor", "ibkr.port (from environment variable IB_PORT): Input should be a valid "
         "integer", env={"IB_PORT": "gateway"}),
    Case("event-processor", "redis.url (from environment variable REDIS_URL): must be a redis://",
         env={"REDIS_URL": "localhost:6379"}),
    Case("event-processor", "processing.commands: cannot load 'no_such_module:create'",
         ("--config", "{registry.yaml}")),
    Case("event-processor", "--port / PROCESSOR_PORT (http.port): port {busy} on 127.0.0.1 is in use",
         ("--host", "127.0.0.1", "--port", "{busy}")),
    # management-service
    Case("management-service", "management.api_key: secrets are not read from the file; set "
         "MANAGEMENT_API_KEY in the environment", ("--config", "{secret.yaml}")),
    Case("management-service", "bad.yaml: the configuration file (--config / MANAGEMENT_CONFIG) is "
         "not valid YAML at line 2", ("--config", "{bad.yaml}")),
    Case("management-service", "nope.yaml: cannot read the configuration file",
         ("--config", "{missing}")),
    Case("management-service", "health.timeout_seconds (MANAGEMENT_HEALTH__TIMEOUT_SECONDS): Input "
         "should be greater than 0", env={"MANAGEMENT_HEALTH__TIMEOUT_SECONDS": "0"}),
    Case("management-service", "redis_connection (REDIS_URL): must be a redis://, rediss:// or "
         "unix:// URL", env={"REDIS_URL": "localhost:6379"}),
    Case("management-service", "looks like an ibkr-simulator file",
         env={"ACCOUNTS_FILE": SIMULATOR_ACCOUNTS}),
    Case("management-service", "--port / MANAGEMENT_PORT: port {busy} on 127.0.0.1 is in use",
         ("--host", "127.0.0.1", "--port", "{busy}")),
    # ibkr-simulator
    Case("ibkr-simulator", "accounts.yaml: accounts[0]: missing 'id', the IBKR account id "
         "(account_id is the services' accounts file", ("--config", SERVICES_ACCOUNTS)),
    Case("ibkr-simulator", "bad.yaml: the simulator configuration is not valid YAML at line 2",
         ("--config", "{bad.yaml}")),
    Case("ibkr-simulator", "nope.yaml: cannot read the simulator configuration: No such file",
         ("--config", "{missing}")),
    Case("ibkr-simulator", "--port / SIMULATOR_PORT: port {busy} on 127.0.0.1 is in use",
         ("--port", "{busy}")),
    Case("ibkr-simulator", "--server-version: must be in 157..178", ("--server-version", "99")),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_configuration_error_is_one_line_and_exit_2(
    case: Case, files: dict[str, str], busy_port: int
) -> None:
    def fill(text: str) -> str:
        for name, path in files.items():
            text = text.replace("{" + name + "}", path)
        return text.replace("{busy}", str(busy_port))

    done = run(case.program, *map(fill, case.args), env=case.env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith(f"{case.program}: ") for line in lines), lines
    assert any(fill(case.expect) in line for line in lines), lines


@pytest.mark.parametrize("program", sorted(MODULES))
def test_an_unknown_argument_is_an_error(program: str) -> None:
    done = run(program, "--prot=9000")
    assert done.returncode == 2
    assert "unrecognized arguments: --prot=9000" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("program", sorted(MODULES))
def test_help_names_the_shared_options_and_starts_nothing(program: str) -> None:
    started = time.monotonic()
    done = run(program, "--help", base_args=False)
    assert done.returncode == 0, done.stderr
    for option in ("--config", "--host", "--port", "--check-config", "--help"):
        assert option in done.stdout, option
    assert time.monotonic() - started < 20  # it did not start serving


@pytest.mark.parametrize("program", sorted(MODULES))
def test_check_config_validates_and_exits_0(program: str) -> None:
    done = run(program, "--check-config")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{program}: configuration is valid")


def start(program: str, port: int, *args: str,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", MODULES[program], *BASE_ARGS.get(program, []),
               "--host", "127.0.0.1", "--port", str(port), *args]
    return subprocess.Popen(command, cwd=ROOT, env=environment(program, env or {}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


READY = {"event-broker": "event broker ready", "event-processor": "processor started",
         "management-service": "management service ready", "ibkr-simulator": "ibkr simulator ready"}
PROBE = {"event-broker": "/health/live", "event-processor": "/health/live",
         "management-service": "/health/live", "ibkr-simulator": None}


@pytest.mark.parametrize("program", sorted(MODULES))
def test_listens_on_port_logs_json_on_stdout_and_stops_with_0(program: str, redis_url: str) -> None:
    port = free_port()
    process = start(program, port, env={"REDIS_URL": redis_url})
    try:
        wait_listening(port, process)
        if PROBE[program]:
            assert httpx.get(f"http://127.0.0.1:{port}{PROBE[program]}").status_code == 200
        time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert err == ""  # one stream: stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert {"ts", "level", "logger", "msg"} <= set(lines[0])
    assert READY[program] in [line["msg"] for line in lines]


def test_after_start_up_the_collector_leaves_start_up_objects_alone_and_runs_less_often() -> None:
    import gc

    from event_queue import cli

    before = gc.get_threshold()
    try:
        cli.settle_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (cli.YOUNG_COLLECTION_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
