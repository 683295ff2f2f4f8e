"""``python -m event_broker``: validate the configuration, bind the port, then serve on uvicorn.

Exit status 2 means the configuration, the accounts file or the port is not usable; one line per
problem on stderr names the key, variable or file and what is expected.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn

from event_broker.app import create_app
from event_broker.config import BrokerSettings, load_settings
from event_queue import cli
from event_queue.accounts import Accounts, load_accounts
from event_queue.logs import configure_logging, stop_logging

PROGRAM = "event-broker"
log = logging.getLogger("event_broker")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; each overrides the environment and the config file."""
    parser = cli.parser("python -m event_broker", "The webhook receiver of the rebalancer.",
                        config_env="BROKER_CONFIG", host_env="HOST (default 0.0.0.0)",
                        port_env="PORT (default 8080)")
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> tuple[BrokerSettings, Accounts]:
    """Settings and accounts file, checked before anything listens; ConfigProblem if wrong."""
    overrides: dict[str, Any] = {k: v for k in ("host", "port") if (v := getattr(args, k))}
    settings = load_settings(args.config, **overrides)
    return settings, load_accounts(settings.accounts_file)


def serve(settings: BrokerSettings, accounts: Accounts, sock: socket.socket) -> None:
    """Run one uvicorn worker on uvloop and httptools (never the plain asyncio loop)."""
    app = create_app(settings, accounts=accounts)
    cli.settle_gc()  # start-up objects (accounts, schemas, routes) are never collected again
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,  # one JSON line per webhook replaces the access log
        proxy_headers=False,  # X-Forwarded-For is honoured only from WEBHOOK_TRUSTED_PROXIES
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    try:
        settings, accounts = prepare(args)
        if args.check_config:
            print(f"{PROGRAM}: configuration is valid ({len(accounts.accounts)} accounts)")
            return 0
        sock = cli.bind(settings.host, settings.port, what="--port / PORT")
    except cli.ConfigProblem as exc:
        return cli.fail(PROGRAM, exc)
    configure_logging(settings.log_level)
    cli.exit_zero_after_stop_signals(stop_logging)
    serve(settings, accounts, sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
