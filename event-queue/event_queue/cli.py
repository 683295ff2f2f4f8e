"""The command-line convention shared by every program of the project.

Each program takes ``--config``, ``--host``, ``--port``, ``--check-config`` and ``--help``, each with
an environment equivalent; an unknown argument is an error. A configuration error (bad file, key,
variable, or a port that cannot be bound) ends the program with exit status 2 and one line per
problem on stderr, ``<program>: <where>: <what is expected>``, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import gc
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

EXIT_CONFIG = 2


class ConfigProblem(Exception):
    """A configuration error; each line of the message names where it is and what is expected."""


def parser(
    prog: str, description: str, *, config_env: str, host_env: str, port_env: str,
    listens: str = "listen",
) -> argparse.ArgumentParser:
    """An ArgumentParser with the shared options; the caller adds its own."""
    made = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)
    made.add_argument("--config", metavar="PATH", default=os.environ.get(config_env) or None,
                      help=f"YAML configuration file (env {config_env})")
    made.add_argument("--host", metavar="ADDRESS",
                      help=f"address to {listens} on (env {host_env})")
    made.add_argument("--port", metavar="PORT", type=port_number,
                      help=f"port to {listens} on (env {port_env})")
    made.add_argument("--check-config", action="store_true",
                      help="validate the configuration (files, variables, accounts), then exit: "
                           "0 when valid, 2 when not")
    return made


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0-65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def fail(program: str, problem: BaseException | str) -> int:
    """Write the problem, one line per line of its message, and return the exit status 2."""
    for line in str(problem).splitlines() or ["invalid configuration"]:
        if line.strip():
            sys.stderr.write(f"{program}: {line.strip()}\n")
    sys.stderr.flush()
    return EXIT_CONFIG


def error_lines(errors: Iterable[tuple[str, str]]) -> str:
    """``where: what`` lines from (location, message) pairs, without pydantic's prefixes."""
    return "\n".join(f"{where}: {clean(message)}" for where, message in errors)


def clean(message: str) -> str:
    """A pydantic message without its ``Value error, `` / ``Assertion failed, `` prefix."""
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def bind(host: str, port: int, *, what: str) -> socket.socket:
    """A listening TCP socket, bound as uvicorn and asyncio bind theirs (SO_REUSEADDR).

    ``what`` names the setting (e.g. ``--port / PORT``) for the error when the port is taken.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigProblem(f"{what}: cannot listen on {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        raise ConfigProblem(f"{what}: port {port} on {host} {reason}") from None
    sock.set_inheritable(True)
    return sock


def read_yaml(path: str | Path, *, what: str = "file") -> Any:
    """The data in a YAML file; ConfigProblem (one line: file, line, column) when it cannot be."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 10x faster
    try:
        with Path(path).open(encoding="utf-8") as stream:
            return yaml.load(stream, Loader=loader)  # noqa: S506 - a safe loader
    except OSError as exc:
        raise ConfigProblem(f"{path}: cannot read the {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigProblem(f"{path}: the {what} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigProblem(f"{path}: the {what} is not valid YAML{_where(exc)}") from None


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or ""
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{at}: {problem}" if problem else at


def exit_zero_after_stop_signals(before_exit: Callable[[], None]) -> None:
    """SIGTERM and SIGINT end the process with status 0, after ``before_exit`` (flush the logs).

    uvicorn catches both, drains, then raises the signal again to the handler found at start-up,
    which is this one: a stop asked for is a clean exit, so supervisors do not count a crash.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        before_exit()
        raise SystemExit(0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


# Net allocations of container objects between two young-generation collections (CPython's
# default is 700). A request's objects are freed by reference counting as it ends; the collector
# only looks for cycles. At 700, sixty-four requests in flight trigger a young collection every
# few requests; at this value almost never. Measured on the broker: about a tenth less CPU per
# webhook, for at most a few megabytes of cyclic garbage kept a little longer.
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_gc() -> None:
    """Once start-up is done: keep its objects out of every later collection (``gc.freeze``) and
    collect young objects less often (:data:`YOUNG_COLLECTION_THRESHOLD`)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)
