"""HTTP routes, one module per resource."""

from fastapi import APIRouter

from management_service.routes import audit, events, health, metrics, queue

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    queue.router,
    events.router,
    audit.router,
    metrics.router,
)
