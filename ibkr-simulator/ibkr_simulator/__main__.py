"""``python -m ibkr_simulator --config accounts.demo.yaml [--host H] [--port P] [--admin-port A]``.

Exit status 2 means the configuration file or a port is not usable; one line per problem on stderr
names the file, key or option and what is expected.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from event_queue import cli
from event_queue.logs import configure_logging, stop_logging

from .config import DEFAULT_SERVER_VERSION, MAX_SERVER_VERSION, MIN_SERVER_VERSION, load_config
from .simulator import Simulator

PROGRAM = "ibkr-simulator"
log = logging.getLogger("ibkr_simulator")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line options; each wins over its environment variable."""
    env = os.environ.get
    parser = cli.parser(
        "python -m ibkr_simulator", "IB Gateway simulator (TWS API protocol).",
        config_env="SIMULATOR_CONFIG", host_env="SIMULATOR_HOST (default 127.0.0.1)",
        port_env="SIMULATOR_PORT (default 4002; 0 = any free port)",
        listens="serve the TWS API")
    parser.add_argument("--accounts", dest="config", help="the same as --config")
    parser.add_argument("--server-version", type=int, default=None,
                        help=f"highest server version to offer, {MIN_SERVER_VERSION}.."
                             f"{MAX_SERVER_VERSION} (default: the file's, else "
                             f"{DEFAULT_SERVER_VERSION})")
    parser.add_argument("--admin-host", default=env("SIMULATOR_ADMIN_HOST") or "127.0.0.1",
                        help="admin HTTP address (env SIMULATOR_ADMIN_HOST, default 127.0.0.1)")
    parser.add_argument("--admin-port", type=cli.port_number,
                        default=env("SIMULATOR_ADMIN_PORT") or None,
                        help="admin HTTP port (env SIMULATOR_ADMIN_PORT; default: no admin HTTP)")
    parser.add_argument("--log-level", default=env("LOG_LEVEL") or "INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="env LOG_LEVEL (default INFO)")
    args = parser.parse_args(argv)
    args.host = args.host or env("SIMULATOR_HOST") or "127.0.0.1"
    if args.port is None:
        args.port = cli.port_number(env("SIMULATOR_PORT") or "4002")
    if isinstance(args.admin_port, str):
        args.admin_port = cli.port_number(args.admin_port)
    if not args.config:
        parser.error("a configuration file is required: --config PATH (or SIMULATOR_CONFIG)")
    return args


def check_ports(args: argparse.Namespace) -> None:
    """ConfigProblem when a port the simulator needs is taken (it binds them as asyncio does)."""
    wanted = [(args.host, args.port, "--port / SIMULATOR_PORT")]
    if args.admin_port is not None:
        wanted.append((args.admin_host, args.admin_port, "--admin-port / SIMULATOR_ADMIN_PORT"))
    for host, port, what in wanted:
        if port:
            cli.bind(host, port, what=what).close()


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGINT or SIGTERM."""
    sim = Simulator(args.config, host=args.host, port=args.port, admin_host=args.admin_host,
                    admin_port=args.admin_port, server_version=args.server_version)
    await sim.start()
    log.info("ibkr simulator ready", extra={
        "host": sim.host, "port": sim.port, "server_version": sim.config.server_version,
        "admin_port": sim.admin_port, "accounts": list(sim.accounts)})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()
        log.info("ibkr simulator stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; the process exit status."""
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        if args.server_version is not None and not (
                MIN_SERVER_VERSION <= args.server_version <= MAX_SERVER_VERSION):
            raise cli.ConfigProblem(f"--server-version: must be in "
                                    f"{MIN_SERVER_VERSION}..{MAX_SERVER_VERSION}")
        if args.check_config:
            print(f"{PROGRAM}: configuration is valid ({len(config.accounts)} accounts, "
                  f"{len(config.instruments)} symbols)")
            return 0
        check_ports(args)
    except cli.ConfigProblem as exc:
        return cli.fail(PROGRAM, exc)
    configure_logging(args.log_level)
    try:
        asyncio.run(serve(args))
    finally:
        stop_logging()
    return 0


if __name__ == "__main__":
    sys.exit(main())
