"""The event broker: authenticates webhooks, validates them and enqueues rebalancing events."""
