"""The worker: claim → lock account → run command → complete or requeue."""
