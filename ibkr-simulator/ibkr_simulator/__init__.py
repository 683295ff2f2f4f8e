"""IB Gateway simulator speaking the TWS API socket protocol (server version 157..178).

In-process use::

    async with start_simulator("accounts.demo.yaml", port=0) as sim:
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=1)
        await sim.admin.set_price("AAPL", bid=99.9, ask=100.1, last=100.0)
"""

from .admin import Admin
from .config import (
    AccountConfig,
    ConfigError,
    InstrumentConfig,
    PositionConfig,
    SimulatorConfig,
    config_from_dict,
    load_config,
)
from .simulator import Simulator, start_simulator

__all__ = [
    "AccountConfig",
    "Admin",
    "ConfigError",
    "InstrumentConfig",
    "PositionConfig",
    "Simulator",
    "SimulatorConfig",
    "config_from_dict",
    "load_config",
    "start_simulator",
]
