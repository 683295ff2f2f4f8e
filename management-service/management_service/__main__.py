"""``python -m management_service``: validate the configuration, then serve with uvicorn."""

from __future__ import annotations

import logging
import sys

import uvicorn

from event_queue.accounts import AccountsFileError
from management_service.app import create_app
from management_service.config import ConfigError, load_settings
from management_service.logs import configure_logging

logger = logging.getLogger("management_service")


def main() -> int:
    """Start the service; exit 2 with a message naming the bad key when the configuration is bad."""
    configure_logging()
    try:
        settings = load_settings()
        app = create_app(settings)
    except (ConfigError, AccountsFileError) as exc:
        logger.error("cannot start: %s", exc)
        return 2
    logging.getLogger().setLevel(settings.log_level)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
