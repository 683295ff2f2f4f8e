"""``python -m event_processor [--config PATH] [--check-config] [run | healthcheck]``.

``run`` (the default) runs the worker until SIGTERM; ``healthcheck`` exits 0 when this host's
processor has a fresh heartbeat in Redis, 1 otherwise (the container's HEALTHCHECK).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from event_processor.commands.base import Registry, load_registry
from event_processor.config import CONFIG_PATH_ENV, ConfigError, Settings, load_settings
from event_processor.core.event_processor import EventProcessor
from event_processor.core.healthcheck import check_health
from event_processor.log import configure_logging

log = logging.getLogger("event_processor")

EXIT_CONFIG_ERROR = 2
EXIT_UNHEALTHY = 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: where the configuration is, and whether only to check it."""
    parser = argparse.ArgumentParser(prog="python -m event_processor", description=__doc__)
    parser.add_argument("--config", help=f"YAML config file (default: ${CONFIG_PATH_ENV}, "
                                         "else config/config.yaml of the package)")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration and the command registry, then exit")
    parser.add_argument("command", nargs="?", choices=("run", "healthcheck"), default="run",
                        help="run the worker (default), or check that this host's processor "
                             "has a fresh heartbeat in Redis (exit 0 healthy, 1 not)")
    return parser.parse_args(argv)


async def serve(settings: Settings, registry: Registry) -> None:
    """Run one processor until SIGTERM or SIGINT, then drain it."""
    processor = EventProcessor.from_settings(settings, registry)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, processor.request_stop, sig.name)
    try:
        await processor.run()
    finally:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Start the processor; returns the process exit code (0 after a clean stop)."""
    args = parse_args(argv)
    if args.command == "healthcheck":
        return healthcheck(args.config)
    try:
        settings = load_settings(args.config)
        configure_logging(settings.logging)
        registry = load_registry(settings.processing.commands, settings)
    except (ConfigError, ValueError) as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_CONFIG_ERROR
    if args.check_config:
        log.info("configuration is valid", extra={"commands": sorted(registry)})
        return 0
    with asyncio.Runner(loop_factory=_loop_factory(settings)) as runner:
        runner.run(serve(settings, registry))
    return 0


def healthcheck(config: str | None) -> int:
    """Print one line and return 0 when this host's processor is alive, else 1 (2: bad config)."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_CONFIG_ERROR
    report = asyncio.run(check_health(settings))
    print(report.message)
    return 0 if report.healthy else EXIT_UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
