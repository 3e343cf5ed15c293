"""WSM engine: normalized records, shared-memory rings and the reader API."""

from engine.errors import RingError, RingLayoutError, RingNotFound, WSMError
from engine.records import (
    ASK,
    BID,
    RECORD_DTYPE,
    RECORD_SIZE,
    ConnState,
    Flag,
    GapReason,
    Kind,
    Record,
    Side,
    format_decimal,
    to_decimal,
    to_fixed,
)
from engine.ring import Ring, RingReader, RingWriter
from engine.symbols import SymbolInfo, SymbolRegistry, SymbolTable

_LAZY = {
    "WebSocketManager": "engine.manager",
    "ReconnectPolicy": "engine.backoff",
    "EngineConfig": "engine.config",
    "load_config": "engine.config",
}


def __getattr__(name: str) -> object:
    """The control side (`WebSocketManager`...) loads on first use: a subscriber that only
    reads rings does not import the engine's asyncio, HTTP and Postgres machinery."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "ASK",
    "BID",
    "RECORD_DTYPE",
    "RECORD_SIZE",
    "ConnState",
    "EngineConfig",
    "Flag",
    "GapReason",
    "Kind",
    "ReconnectPolicy",
    "Record",
    "Ring",
    "RingError",
    "RingLayoutError",
    "RingNotFound",
    "RingReader",
    "RingWriter",
    "Side",
    "SymbolInfo",
    "SymbolRegistry",
    "SymbolTable",
    "WSMError",
    "WebSocketManager",
    "format_decimal",
    "load_config",
    "to_decimal",
    "to_fixed",
]
