"""The FastAPI application factory. Nothing is read or connected at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from event_broker.config import BrokerSettings
from event_broker.errors import BrokerError, as_broker_error, error_body, error_headers
from event_broker.metrics import BrokerMetrics
from event_broker.openapi import install_openapi
from event_broker.routes import events, health, metrics
from event_broker.runtime import open_broker
from event_queue import QueueUnavailable
from event_queue.accounts import AccountDisabled, Accounts, UnknownAccount

DESCRIPTION = """Receives webhooks (Standard Webhooks signatures, or a shared token in the
`Authorization` header or as `passphrase` in the body), validates them and queues one rebalancing
event per `account_id:exec_command` while one is active."""


def create_app(settings: BrokerSettings, *, accounts: Accounts | None = None) -> FastAPI:
    """Build the broker app; its lifespan owns the Redis client.

    The lifespan loads the accounts file, unless the caller already did (``accounts``).
    """
    app = BrokerApp(title="event-broker", version="0.1.0", description=DESCRIPTION,
                    lifespan=_lifespan)
    app.state.settings = settings
    app.state.preloaded_accounts = accounts
    app.state.metrics = BrokerMetrics()
    app.include_router(events.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    for error_type in (BrokerError, QueueUnavailable, UnknownAccount, AccountDisabled):
        app.add_exception_handler(error_type, _error_response)
    install_openapi(app)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with open_broker(app.state.settings, app.state.metrics,
                           accounts=app.state.preloaded_accounts) as broker:
        app.state.broker = broker
        yield


class BrokerApp(FastAPI):
    """The FastAPI app, with ``POST /events`` answered before FastAPI's middleware and routing.

    Measured here, the stack around a route (error, telemetry, body-limit and exception
    middlewares, the router) costs a webhook more CPU than enqueueing it. The webhook endpoint
    answers its own refusals with the same bodies and headers as the app's exception handler;
    every other request (health, metrics, docs, other methods on /events) goes through FastAPI.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/events":
            scope["app"] = self
            await events.ENDPOINT.answer(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def _error_response(request: Request, exc: Exception) -> JSONResponse:
    """The one mapping from the broker's errors to HTTP answers."""
    error = as_broker_error(exc)
    headers = error_headers(error, request.app.state.settings.retry_after_seconds)
    return JSONResponse(error_body(error), status_code=error.status, headers=headers)
