"""Command line: ``python -m ibkr_simulator --port 4002 --accounts accounts.yaml``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence

from .config import DEFAULT_SERVER_VERSION, MAX_SERVER_VERSION, MIN_SERVER_VERSION
from .simulator import Simulator


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line options."""
    parser = argparse.ArgumentParser(prog="python -m ibkr_simulator",
                                     description="IB Gateway simulator (TWS API protocol)")
    parser.add_argument("--accounts", required=True, help="YAML file with accounts and prices")
    parser.add_argument("--host", default="127.0.0.1", help="API bind address")
    parser.add_argument("--port", type=int, default=4002, help="API port (0 = any free port)")
    parser.add_argument("--server-version", type=int, default=None,
                        help=f"highest server version to offer, {MIN_SERVER_VERSION}.."
                             f"{MAX_SERVER_VERSION} (default: the file's, else "
                             f"{DEFAULT_SERVER_VERSION})")
    parser.add_argument("--admin-host", default="127.0.0.1", help="admin HTTP bind address")
    parser.add_argument("--admin-port", type=int, default=None,
                        help="admin HTTP port (default: no admin HTTP)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGINT or SIGTERM."""
    sim = Simulator(args.accounts, host=args.host, port=args.port, admin_host=args.admin_host,
                    admin_port=args.admin_port, server_version=args.server_version)
    await sim.start()
    logging.getLogger("ibkr_simulator").info(
        "API on %s:%s (server version <= %s), admin HTTP port %s, accounts %s",
        sim.host, sim.port, sim.config.server_version, sim.admin_port, ",".join(sim.accounts))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
