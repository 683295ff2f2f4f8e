"""Dependencies of the route handlers, as ``Annotated`` aliases.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, which
costs more than the whole handler.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request
from starlette.types import Scope

from event_broker.metrics import BrokerMetrics
from event_broker.runtime import Broker
from event_queue import EventQueue


def broker_from_scope(scope: Scope) -> Broker:
    """The broker opened by the app's lifespan, for plain ASGI endpoints (``POST /events``)."""
    return cast(Broker, scope["app"].state.broker)


async def get_broker(request: Request) -> Broker:
    """The broker opened by the app's lifespan."""
    return broker_from_scope(request.scope)


async def get_queue(broker: Annotated[Broker, Depends(get_broker)]) -> EventQueue:
    """The queue client of the running broker."""
    return broker.queue


BrokerDep = Annotated[Broker, Depends(get_broker)]
QueueDep = Annotated[EventQueue, Depends(get_queue)]


async def get_metrics(request: Request) -> BrokerMetrics:
    """The app's metrics (available before the lifespan has started)."""
    return cast(BrokerMetrics, request.app.state.metrics)


MetricsDep = Annotated[BrokerMetrics, Depends(get_metrics)]
