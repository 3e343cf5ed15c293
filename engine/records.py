"""The normalized record: one 64-byte layout for every event WSM publishes.

Every record starts with the same 32-byte header (ring sequence, kind, exchange, side, flags,
symbol, exchange event time, local receive time) followed by 32 bytes whose meaning depends on
the kind:

=============== ========== ========== ====================== ===================== ==========
kind            price      size       ref (u64 @48)          aux (u32 @56)         extra (@60)
=============== ========== ========== ====================== ===================== ==========
TRADE           price      quantity   trade id               --                    --
BBO             bid price  bid size   ask_price (f64 @48)    ask_size (f64 @56)
BOOK_LEVEL      price      new size   exchange update id     --                    --
SNAPSHOT_BEGIN  --         --         exchange update id     levels that follow    --
SNAPSHOT_END    --         --         exchange update id     levels written        --
GAP             --         --         last good update id    GapReason             --
STATUS          --         --         connection number      new ConnState         old state
=============== ========== ========== ====================== ===================== ==========

A BOOK_LEVEL size of 0 removes the level. ``Flag.LAST`` marks the last record of one exchange
event, so a reader that maintains a book applies records up to it as one step.

Prices and sizes are IEEE doubles decoded from the exchange's decimal strings. Every symbol has
price and size decimals in the symbol registry; ``format_decimal(value, decimals)`` gives back
the exchange's exact decimal text (a double holds any decimal of up to 15 significant digits
exactly enough that rounding to the symbol's decimals recovers it).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Final

import msgspec
import numpy as np

RECORD_SIZE: Final = 64
MAX_EXCHANGE_ID: Final = 63  # exchange ids are 1..63

# Header + the two views of the kind-specific tail; both views are always unpacked.
_HEAD = "<QBBBBIqqdd"
RECORD_STRUCT: Final = struct.Struct(_HEAD + "QII")
BBO_STRUCT: Final = struct.Struct(_HEAD + "dd")
_TAIL_AS_FLOATS: Final = struct.Struct("<dd")
assert RECORD_STRUCT.size == BBO_STRUCT.size == RECORD_SIZE


class Kind(enum.IntEnum):
    TRADE = 1
    BBO = 2
    BOOK_LEVEL = 3
    SNAPSHOT_BEGIN = 4
    SNAPSHOT_END = 5
    GAP = 6
    STATUS = 7


class Side(enum.IntEnum):
    """For trades the aggressor (taker) side; for book levels the book side."""

    NONE = 0
    BUY = 1
    SELL = 2


# Book sides share the numbers: a bid rests on the buy side.
BID: Final = Side.BUY
ASK: Final = Side.SELL


class Flag(enum.IntFlag):
    NONE = 0
    LAST = 1  # last record of one exchange event
    SNAPSHOT = 2  # a level that belongs to a snapshot
    EXCHANGE_WIDE = 4  # a GAP/STATUS that concerns every symbol of the exchange
    AGGREGATED = 8  # a trade record that aggregates several fills (Binance aggTrade)


class GapReason(enum.IntEnum):
    SEQUENCE_GAP = 1
    CHECKSUM_MISMATCH = 2
    RECONNECT = 3
    WRITER_RESTART = 4
    CROSSED_BOOK = 5
    STALE = 6
    UNSUBSCRIBED = 7
    BAD_UPDATE = 8


class ConnState(enum.IntEnum):
    CONNECTING = 1
    SUBSCRIBING = 2
    LIVE = 3
    STALE = 4
    CLOSED = 5
    BACKOFF = 6
    FAILED = 7
    STOPPED = 8


# How a connection of several sockets reads: its worst socket decides.
_SEVERITY = (
    ConnState.FAILED,
    ConnState.BACKOFF,
    ConnState.STALE,
    ConnState.CLOSED,
    ConnState.CONNECTING,
    ConnState.SUBSCRIBING,
    ConnState.STOPPED,
    ConnState.LIVE,
)


def worst_state(states: Iterable[ConnState]) -> ConnState:
    present = set(states)
    return next((s for s in _SEVERITY if s in present), ConnState.STOPPED)


# The NumPy view of a batch. `ask_price`/`ask_size` overlay `ref`/`aux`/`extra`.
RECORD_DTYPE: Final = np.dtype(
    {
        "names": [
            "seq",
            "kind",
            "exchange",
            "side",
            "flags",
            "symbol",
            "exch_ts",
            "recv_ts",
            "price",
            "size",
            "ref",
            "aux",
            "extra",
            "ask_price",
            "ask_size",
        ],
        "formats": [
            "<u8",
            "u1",
            "u1",
            "u1",
            "u1",
            "<u4",
            "<i8",
            "<i8",
            "<f8",
            "<f8",
            "<u8",
            "<u4",
            "<u4",
            "<f8",
            "<f8",
        ],
        "offsets": [0, 8, 9, 10, 11, 12, 16, 24, 32, 40, 48, 56, 60, 48, 56],
        "itemsize": RECORD_SIZE,
    }
)


class Record(msgspec.Struct, frozen=True, gc=False):
    """A Python object view of one record (convenient, not for the hot path)."""

    seq: int
    kind: int
    exchange: int
    side: int
    flags: int
    symbol: int
    exch_ts: int
    recv_ts: int
    price: float
    size: float
    ref: int
    aux: int
    extra: int
    ask_price: float
    ask_size: float

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, offset: int = 0) -> Record:
        fields = RECORD_STRUCT.unpack_from(data, offset)
        ask = _TAIL_AS_FLOATS.unpack_from(data, offset + 48)
        return cls(*fields, *ask)

    @classmethod
    def from_row(cls, row: Any) -> Record:
        """Build from one element of a `RECORD_DTYPE` array."""
        return cls(*(row[name].item() for name in RECORD_DTYPE.names or ()))

    def to_bytes(self) -> bytes:
        if self.kind == Kind.BBO:
            return BBO_STRUCT.pack(*self._head(), self.ask_price, self.ask_size)
        return RECORD_STRUCT.pack(*self._head(), self.ref, self.aux, self.extra)

    def _head(self) -> tuple[int | float, ...]:
        return (
            self.seq,
            self.kind,
            self.exchange,
            self.side,
            self.flags,
            self.symbol,
            self.exch_ts,
            self.recv_ts,
            self.price,
            self.size,
        )


def records_from_array(batch: np.ndarray[Any, np.dtype[np.void]]) -> list[Record]:
    """Object views of a batch (each row copied out)."""
    raw = batch.tobytes()
    return [Record.from_bytes(raw, i * RECORD_SIZE) for i in range(len(batch))]


def format_decimal(value: float, decimals: int) -> str:
    """The exchange's exact decimal text of a price or size, given the symbol's decimals."""
    return f"{value:.{decimals}f}"


def to_decimal(value: float, decimals: int) -> Decimal:
    return Decimal(format_decimal(value, decimals))


def to_fixed(value: float, decimals: int) -> int:
    """The value as an integer count of 10**-decimals units (exact)."""
    return round(value * 10.0**decimals)
