"""The event processor: claims queued events and runs their commands against IBKR."""

__version__ = "0.1.0"
