"""What one running broker holds: settings, accounts, the queue client and the request helpers.

Built by the app's lifespan (:func:`open_broker`) and handed to handlers through ``deps.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from event_broker.auth import Authenticator
from event_broker.batching import EnqueueBatcher
from event_broker.config import BrokerSettings
from event_broker.metrics import BrokerMetrics
from event_queue import EventQueue
from event_queue.accounts import Accounts, load_accounts

log = logging.getLogger("event_broker")


@dataclass(frozen=True, slots=True)
class Broker:
    """The broker's long-lived parts, shared by every request."""

    settings: BrokerSettings
    accounts: Accounts
    queue: EventQueue
    batcher: EnqueueBatcher
    auth: Authenticator
    metrics: BrokerMetrics


@asynccontextmanager
async def open_broker(
    settings: BrokerSettings, metrics: BrokerMetrics, *, accounts: Accounts | None = None
) -> AsyncIterator[Broker]:
    """Load the accounts file (unless given) and open a lazy Redis client; close it at the end.

    Redis is not contacted here: a broker that starts while Redis is down answers 503 until it
    is back, instead of crash-looping.
    """
    if accounts is None:
        accounts = await asyncio.to_thread(load_accounts, settings.accounts_file)
    queue = EventQueue.from_url(
        settings.redis_url.get_secret_value(), timeout=settings.redis_timeout,
        key_prefix=settings.redis_key_prefix, wait_replicas=settings.redis_wait_replicas,
        wait_replicas_seconds=settings.redis_timeout / 2
    )
    batcher = EnqueueBatcher(
        queue,
        max_size=settings.batch_max_size,
        concurrency=settings.batch_concurrency,
        deadline=settings.redis_timeout,
    )
    broker = Broker(settings, accounts, queue, batcher, Authenticator.from_settings(settings),
                    metrics)
    _announce(broker)
    try:
        yield broker
    finally:
        await batcher.close()
        await queue.close()


def _announce(broker: Broker) -> None:
    settings = broker.settings
    methods = [name for name, on in (("signature", bool(settings.webhook_secret)),
                                     ("token", bool(settings.webhook_token))) if on]
    if settings.webhook_auth_disabled:
        log.warning(
            "WEBHOOK AUTHENTICATION IS DISABLED (WEBHOOK_AUTH_DISABLED=true): a webhook without "
            "credentials is accepted, so anyone who can reach this port can queue trades. "
            "Use this only for a local demo.",
            extra={"fields": {"auth_disabled": True}},
        )
    log.info(
        "event broker ready",
        extra={"fields": {
            "auth_methods": methods,
            "accounts": len(broker.accounts.accounts),
            "allowed_networks": [str(n) for n in settings.webhook_allowed_ips],
            "max_body_bytes": settings.max_body_bytes,
        }},
    )
