"""Small helpers shared by the processor."""
