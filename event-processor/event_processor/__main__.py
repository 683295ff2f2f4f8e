"""``python -m event_processor [--config PATH] [--host H] [--port P] [--check-config] [run | healthcheck]``.

``run`` (the default) runs the worker until SIGTERM, with its status endpoint (``/health/live``,
``/health``, ``/metrics``) on ``--host``/``--port``; ``healthcheck`` exits 0 when this host's
processor has a fresh heartbeat in Redis, 1 otherwise (the container's HEALTHCHECK). Exit status 2
means the configuration, the command registry or the port is not usable; one line per problem on
stderr names the key, variable or file and what is expected.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from event_processor.commands.base import Registry, load_registry
from event_processor.config import Settings, load_settings
from event_processor.core.event_processor import EventProcessor
from event_processor.core.healthcheck import check_health
from event_processor.core.status_http import StatusServer
from event_queue import cli
from event_queue.logs import configure_logging, stop_logging

PROGRAM = "event-processor"
EXIT_UNHEALTHY = 1

log = logging.getLogger("event_processor")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: the shared options, and what to do."""
    parser = cli.parser(
        "python -m event_processor", "The worker of the rebalancer.",
        config_env="PROCESSOR_CONFIG (default: the packaged config/config.yaml)",
        host_env="PROCESSOR_HOST (default 0.0.0.0)", port_env="PROCESSOR_PORT (default 8090)",
        listens="serve /health and /metrics")
    parser.add_argument("command", nargs="?", choices=("run", "healthcheck"), default="run",
                        help="run the worker (default), or check that this host's processor "
                             "has a fresh heartbeat in Redis (exit 0 healthy, 1 not)")
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> tuple[Settings, Registry]:
    """Settings and command registry, checked before anything runs; ConfigProblem if wrong."""
    http: dict[str, Any] = {k: v for k in ("host", "port") if (v := getattr(args, k)) is not None}
    overrides: dict[str, Any] = {"http": http} if http else {}
    settings = load_settings(args.config, **overrides)
    try:
        return settings, load_registry(settings.processing.commands, settings)
    except ValueError as exc:
        raise cli.ConfigProblem(cli.clean(str(exc))) from None


async def serve(settings: Settings, registry: Registry, sock: socket.socket | None) -> None:
    """Run one processor until SIGTERM or SIGINT, then drain it."""
    processor = EventProcessor.from_settings(settings, registry)
    status = StatusServer(processor, sock) if sock is not None else None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, processor.request_stop, sig.name)
    try:
        if status is not None:
            await status.start()
        await processor.run()
    finally:
        if status is not None:
            await status.close()
        await processor.close()


def _loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not settings.processing.use_uvloop:
        return None  # asyncio.Runner then makes its own loop the thread's current one
    try:
        import uvloop
    except ImportError:
        return None

    def current_uvloop() -> asyncio.AbstractEventLoop:
        # asyncio.Runner does not make a factory's loop the thread's current loop, but ib_insync
        # looks its loop up through the policy (util.getLoop), so it would build its socket on
        # another loop and every connection would fail with "attached to a different loop".
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        return loop

    return current_uvloop


def healthcheck(args: argparse.Namespace) -> int:
    """Print one line and return 0 when this host's processor is alive, else 1 (2: bad config)."""
    try:
        settings = load_settings(args.config)
    except cli.ConfigProblem as exc:
        return cli.fail(PROGRAM, exc)
    report = asyncio.run(check_health(settings))
    print(report.message)
    return 0 if report.healthy else EXIT_UNHEALTHY


def main(argv: Sequence[str] | None = None) -> int:
    """Start the processor; returns the process exit code (0 after a clean stop)."""
    args = parse_args(argv)
    if args.command == "healthcheck":
        return healthcheck(args)
    try:
        settings, registry = prepare(args)
        if args.check_config:
            print(f"{PROGRAM}: configuration is valid (commands: {', '.join(sorted(registry))})")
            return 0
        http = settings.http
        sock = cli.bind(http.host, http.port, what="--port / PROCESSOR_PORT (http.port)") \
            if http.enabled else None
    except cli.ConfigProblem as exc:
        return cli.fail(PROGRAM, exc)
    configure_logging(settings.logging.level)
    cli.settle_gc()
    try:
        with asyncio.Runner(loop_factory=_loop_factory(settings)) as runner:
            runner.run(serve(settings, registry, sock))
    finally:
        stop_logging()
    return 0


if __name__ == "__main__":
    sys.exit(main())
