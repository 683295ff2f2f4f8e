"""``python -m management_service``: validate the configuration, bind the port, serve on uvicorn.

Exit status 2 means the configuration, the accounts file or the port is not usable; one line per
problem on stderr names the key, variable or file and what is expected.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI

from event_queue import cli
from event_queue.logs import configure_logging, stop_logging
from management_service.app import create_app
from management_service.config import load_settings

PROGRAM = "management-service"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; each overrides the environment and the config file."""
    parser = cli.parser(
        "python -m management_service", "The queue API and /health of the rebalancer.",
        config_env="MANAGEMENT_CONFIG", host_env="MANAGEMENT_HOST (default 0.0.0.0)",
        port_env="MANAGEMENT_PORT (default 8000)")
    return parser.parse_args(argv)


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Run one uvicorn worker on uvloop and httptools; the app logs each request itself."""
    cli.settle_gc()  # start-up objects (accounts, schemas, routes) are never collected again
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,  # the app's access log has structured fields and no query strings
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> int:
    """Start the service; the process exit status."""
    args = parse_args(argv)
    overrides: dict[str, Any] = {k: v for k in ("host", "port") if (v := getattr(args, k))}
    try:
        settings = load_settings(args.config, **overrides)
        app = create_app(settings)  # loads and checks the accounts file
        if args.check_config:
            print(f"{PROGRAM}: configuration is valid")
            return 0
        sock = cli.bind(settings.host, settings.port, what="--port / MANAGEMENT_PORT")
    except cli.ConfigProblem as exc:
        return cli.fail(PROGRAM, exc)
    configure_logging(settings.log_level)
    cli.exit_zero_after_stop_signals(stop_logging)
    serve(app, sock)
    stop_logging()
    return 0


if __name__ == "__main__":
    sys.exit(main())
