"""Shared machinery of the exchange simulators (server harness, market model)."""

from adapters.simkit.market import DEFAULT_SYMBOLS, SimSymbol, fmt
from adapters.simkit.server import SimClient, SimServer, VenueSim

__all__ = ["DEFAULT_SYMBOLS", "SimClient", "SimServer", "SimSymbol", "VenueSim", "fmt"]
