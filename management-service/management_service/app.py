"""The app factory: ``create_app(settings)`` builds the FastAPI app; its lifespan owns Redis.

Nothing is read or connected at import time. The accounts file is read (and validated) when the app
is created; Redis is connected lazily by the lifespan's client, so the service starts even while
Redis is down and answers 503 until it is back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from event_queue import EventQueue
from event_queue.accounts import Accounts, load_accounts
from management_service import __version__, errors, ui
from management_service.access_log import AccessLog
from management_service.config import Settings
from management_service.deps import Access, Services
from management_service.fast_paths import FastPath, serve
from management_service.metrics import Metrics
from management_service.middleware import BodySizeLimit
from management_service.openapi import install_openapi
from management_service.queue_manager import EventFilters, QueueManager
from management_service.routes import ROUTERS
from management_service.routes.events import list_answer
from management_service.routes.health import health_answer
from management_service.routes.queue import status_answer

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Inspect and edit the rebalancing event queue; `GET /health` for uptime monitors. "
    "Mutations need the API key header."
)


def connect_queue(settings: Settings) -> EventQueue:
    """A lazily connected client; every Redis call gives up after ``redis_timeout_seconds``.

    A connection the server dropped (Redis restarted) is retried once at once, so the first
    request after a restart does not fail; timeouts are not retried, so a hung Redis costs one
    timeout, not two. Every call the service makes is safe to send twice: reads, and operator
    actions whose scripts answer a resent call with the first call's outcome.
    """
    return EventQueue.from_url(
        settings.redis_connection, timeout=settings.redis_timeout_seconds, reconnect_once=True,
        key_prefix=settings.redis_key_prefix, retention=settings.retention,
    )


def make_lifespan(settings: Settings, accounts: Accounts | None) -> Any:
    """The lifespan: open the queue client, publish the services, close the client."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Services]]:
        queue = connect_queue(settings)
        metrics = Metrics()
        manager = QueueManager(queue, accounts=accounts, metrics=metrics,
                               audit_cap=settings.audit_cap)
        logger.info("management service ready", extra={"fields": _startup_fields(settings)})
        try:
            yield {"services": Services(settings=settings, manager=manager, metrics=metrics)}
        finally:
            await queue.close()

    return lifespan


def _startup_fields(settings: Settings) -> dict[str, Any]:
    return {
        "mutations": "enabled" if settings.mutations_enabled else "disabled (no MANAGEMENT_API_KEY)",
        "reads": "protected" if settings.read_api_key else "open",
        "manual_events": "enabled" if settings.accounts_file else "disabled (no ACCOUNTS_FILE)",
        "api_key_header": settings.api_key_header,
    }


FAST_PATHS = {
    "/health": FastPath(None, health_answer),
    "/queue/status": FastPath(Access.READ, status_answer),
    "/queue/events": FastPath(Access.READ, list_answer, EventFilters),
}


class ManagementApp(FastAPI):
    """The FastAPI app, with the polled GET endpoints of :data:`FAST_PATHS` answered before its
    middleware stack and router (see :mod:`management_service.fast_paths`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = FAST_PATHS.get(scope["path"])
            if (path is not None and "services" in scope.get("state", {})
                    and await serve(path, scope, receive, send)):
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, *, accounts: Accounts | None = None) -> FastAPI:
    """Build the app; raises AccountsFileError when the accounts file is missing or invalid."""
    if accounts is None and settings.accounts_file is not None:
        accounts = load_accounts(settings.accounts_file)
    app = ManagementApp(
        title="Rebalancer management service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=make_lifespan(settings, accounts),
    )
    for router in ROUTERS:
        app.include_router(router)
    ui.install(app)
    errors.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog)  # added last: outermost, so it logs every answer
    install_openapi(app, settings, ROUTERS)
    return app
