"""The management service: operators inspect and edit the event queue; monitors read its health."""

__version__ = "0.1.0"
