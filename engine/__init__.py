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

__all__ = [
    "ASK",
    "BID",
    "RECORD_DTYPE",
    "RECORD_SIZE",
    "ConnState",
    "Flag",
    "GapReason",
    "Kind",
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
    "format_decimal",
    "to_decimal",
    "to_fixed",
]
