"""The processor's connections to the outside: the queue and IBKR."""
