"""``python -m event_broker``: validate the configuration, then serve on uvicorn (uvloop, httptools).

Exit status 2 means the configuration or the accounts file is invalid; the message says which key.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

import uvicorn

from event_broker.app import create_app
from event_broker.config import BrokerSettings, SettingsError, load_settings
from event_broker.logs import configure_logging, stop_logging
from event_queue.accounts import Accounts, AccountsFileError, load_accounts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; each overrides the environment and the config file."""
    parser = argparse.ArgumentParser(prog="python -m event_broker", description=__doc__)
    parser.add_argument("--config", default=os.environ.get("BROKER_CONFIG"),
                        help="YAML settings file (env BROKER_CONFIG)")
    parser.add_argument("--host", help="address to listen on (env HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (env PORT, default 8080)")
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> tuple[BrokerSettings, Accounts]:
    """Settings and accounts file, checked before anything listens; SettingsError if wrong."""
    overrides: dict[str, Any] = {k: v for k in ("host", "port") if (v := getattr(args, k))}
    settings = load_settings(args.config, **overrides)
    try:
        return settings, load_accounts(settings.accounts_file)
    except AccountsFileError as exc:
        raise SettingsError(f"ACCOUNTS_FILE: {exc}") from None


def serve(settings: BrokerSettings, accounts: Accounts) -> None:
    """Run one uvicorn worker on uvloop and httptools (never the plain asyncio loop)."""
    app = create_app(settings, accounts=accounts)
    gc.freeze()  # start-up objects (accounts, schemas, routes) never need collecting: short GC pauses
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,  # one JSON line per webhook replaces the access log
        proxy_headers=False,  # X-Forwarded-For is honoured only from WEBHOOK_TRUSTED_PROXIES
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def _exit_after_signal(signum: int, frame: FrameType | None) -> None:
    """Uvicorn drains on SIGTERM/SIGINT, then re-raises the signal: flush the logs, exit 0.

    A stop asked for by a signal, once drained, is a clean exit (as for the other services), so
    ``docker compose stop`` reports 0 and a supervisor does not count it as a crash.
    """
    stop_logging()
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    try:
        settings, accounts = prepare(args)
    except SettingsError as exc:
        sys.stderr.write(f"event-broker: {exc}\n")
        return 2
    configure_logging(settings.log_level)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_after_signal)
    serve(settings, accounts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
