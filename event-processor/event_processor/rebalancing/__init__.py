"""Rebalancing logic without I/O: the order planner and the resolution of target allocations."""
