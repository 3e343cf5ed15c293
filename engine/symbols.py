"""The shared symbol registry: symbol id <-> exchange, normalized and venue symbol, decimals.

One segment per engine instance (`/dev/shm/wsm.<instance>.symbols`), written only by the
engine's coordinator, read by any process. Entries are append-only: an entry is written before
the published count covers it, so a reader never sees a half-written entry. Symbol ids start at
1 (0 means "no symbol", as in exchange-wide records) and are unique across exchanges.
"""

from __future__ import annotations

import enum
import os
import struct
import time
from typing import Final

import msgspec

from engine import shm
from engine.errors import RingError, RingLayoutError
from engine.records import MAX_EXCHANGE_ID

MAGIC: Final = b"WSMSYMS1"
LAYOUT_VERSION: Final = 1
HEADER_SIZE: Final = 4096
ENTRY_SIZE: Final = 128
DEFAULT_CAPACITY: Final = 65536

_STATIC = struct.Struct("<8sIII")  # magic, version, entry size, capacity
_COUNT = 24  # u64, published entries
_OWNER_PID = 32  # u64
_FLAGS = 40  # u64
_EXCHANGES = 512  # 32-byte names, indexed by exchange id
_ENTRY = struct.Struct("<IBBBB32s48s16s16s")
FLAG_SUPERSEDED: Final = 1


class Market(enum.IntEnum):
    SPOT = 0
    LINEAR = 1
    INVERSE = 2


class SymbolInfo(msgspec.Struct, frozen=True):
    id: int
    exchange_id: int
    symbol: str  # normalized BASE-QUOTE
    venue_symbol: str
    price_decimals: int
    size_decimals: int
    base: str
    quote: str
    market: Market = Market.SPOT


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode()


def _pack_text(value: str, width: int, what: str) -> bytes:
    data = value.encode()
    if len(data) > width:
        raise RingError(f"{what} {value!r} is longer than {width} bytes")
    return data


class _Segment:
    def __init__(self, seg: shm.Segment) -> None:
        self.seg = seg
        self.capacity = _check_layout(seg)
        self._q = seg.buf[:HEADER_SIZE].cast("Q")

    @property
    def count(self) -> int:
        return int(self._q[_COUNT >> 3])

    def entry(self, index: int) -> SymbolInfo:
        sid, exch, pdec, sdec, market, sym, venue, base, quote = _ENTRY.unpack_from(
            self.seg.buf, HEADER_SIZE + index * ENTRY_SIZE
        )
        return SymbolInfo(
            sid,
            exch,
            _text(sym),
            _text(venue),
            pdec,
            sdec,
            _text(base),
            _text(quote),
            Market(market),
        )

    def exchange_names(self) -> dict[int, str]:
        names = {}
        for i in range(1, MAX_EXCHANGE_ID + 1):
            off = _EXCHANGES + 32 * i
            name = _text(bytes(self.seg.buf[off : off + 32]))
            if name:
                names[i] = name
        return names

    def close(self) -> None:
        self._q.release()
        self.seg.close()


def _check_layout(seg: shm.Segment) -> int:
    magic, version, entry_size, capacity = _STATIC.unpack_from(seg.buf, 0)
    if magic != MAGIC:
        raise RingLayoutError(seg.name, f"bad magic {magic!r} (not a WSM symbol registry)")
    if version != LAYOUT_VERSION or entry_size != ENTRY_SIZE:
        raise RingLayoutError(
            seg.name, f"registry layout version {version}, expected {LAYOUT_VERSION}"
        )
    if seg.size < HEADER_SIZE + capacity * ENTRY_SIZE:
        raise RingLayoutError(seg.name, "registry is shorter than its capacity says")
    return int(capacity)


class SymbolRegistry:
    """The writable registry, owned by the engine. Not safe for several writer processes."""

    def __init__(self, segment: _Segment) -> None:
        self._seg = segment
        self.name = segment.seg.name
        self._by_venue: dict[tuple[int, str], SymbolInfo] = {}
        for i in range(segment.count):
            info = segment.entry(i)
            self._by_venue[(info.exchange_id, info.venue_symbol)] = info

    @classmethod
    def create(cls, instance: str, capacity: int = DEFAULT_CAPACITY) -> SymbolRegistry:
        """Create the registry of `instance`, replacing one left behind by a dead engine."""
        name = shm.symbols_name(instance)
        _retire_stale(name)
        seg = shm.Segment.create(name, HEADER_SIZE + capacity * ENTRY_SIZE)
        _STATIC.pack_into(seg.buf, 0, MAGIC, LAYOUT_VERSION, ENTRY_SIZE, capacity)
        struct.pack_into("<Q", seg.buf, _OWNER_PID, os.getpid())
        return cls(_Segment(seg))

    def register_exchange(self, exchange_id: int, name: str) -> None:
        if not 0 < exchange_id <= MAX_EXCHANGE_ID:
            raise RingError(f"exchange id must be in 1..{MAX_EXCHANGE_ID}, not {exchange_id}")
        off = _EXCHANGES + 32 * exchange_id
        self._seg.seg.buf[off : off + 32] = _pack_text(name, 31, "exchange name").ljust(32, b"\0")

    def add(
        self,
        *,
        exchange_id: int,
        symbol: str,
        venue_symbol: str,
        price_decimals: int,
        size_decimals: int,
        base: str,
        quote: str,
        market: Market = Market.SPOT,
    ) -> SymbolInfo:
        """Register a symbol (idempotent per exchange and venue symbol); returns its entry."""
        known = self._by_venue.get((exchange_id, venue_symbol))
        if known is not None:
            return known
        count = self._seg.count
        if count >= self._seg.capacity:
            raise RingError(f"symbol registry {self.name!r} is full ({count} symbols)")
        for value in (price_decimals, size_decimals):
            if not 0 <= value <= 18:
                raise RingError(f"decimals must be in 0..18, not {value} ({venue_symbol})")
        info = SymbolInfo(
            count + 1,
            exchange_id,
            symbol,
            venue_symbol,
            price_decimals,
            size_decimals,
            base,
            quote,
            market,
        )
        _ENTRY.pack_into(
            self._seg.seg.buf,
            HEADER_SIZE + count * ENTRY_SIZE,
            info.id,
            exchange_id,
            price_decimals,
            size_decimals,
            int(market),
            _pack_text(symbol, 32, "symbol"),
            _pack_text(venue_symbol, 48, "venue symbol"),
            _pack_text(base, 16, "base"),
            _pack_text(quote, 16, "quote"),
        )
        self._seg._q[_COUNT >> 3] = count + 1  # publish after the entry is complete
        self._by_venue[(exchange_id, venue_symbol)] = info
        return info

    def get(self, exchange_id: int, venue_symbol: str) -> SymbolInfo | None:
        return self._by_venue.get((exchange_id, venue_symbol))

    def close(self, *, unlink: bool = True) -> None:
        self._seg.close()
        if unlink:
            shm.unlink(self.name)


def _retire_stale(name: str) -> None:
    if not shm.exists(name):
        return
    try:
        seg = shm.Segment.open(name)
    except (OSError, RingError):
        shm.unlink(name)
        return
    try:
        _check_layout(seg)
        (owner,) = struct.unpack_from("<Q", seg.buf, _OWNER_PID)
        if owner != os.getpid() and shm.pid_alive(owner):
            raise RingError(f"symbol registry {name!r} is in use by a running engine (pid {owner})")
        struct.pack_into("<Q", seg.buf, _FLAGS, FLAG_SUPERSEDED)
    except RingLayoutError:
        pass
    finally:
        seg.close()
    shm.unlink(name)


class SymbolTable:
    """A reader's view of the registry; looks entries up lazily and follows replacements."""

    def __init__(self, instance: str = "default") -> None:
        self.instance = instance
        self.name = shm.symbols_name(instance)
        self._seg = self._open()
        self._by_id: dict[int, SymbolInfo] = {}
        self._by_name: dict[tuple[int, str], SymbolInfo] = {}
        self._exchanges: dict[int, str] = {}
        self.refresh()

    def _open(self) -> _Segment:
        try:
            return _Segment(shm.Segment.open(self.name))
        except FileNotFoundError:
            raise RingError(
                f"no symbol registry for instance {self.instance!r} (segment {self.name!r} "
                "does not exist): is the engine running?"
            ) from None

    def refresh(self) -> None:
        if struct.unpack_from("<Q", self._seg.seg.buf, _FLAGS)[0] & FLAG_SUPERSEDED:
            self._seg.close()
            self._seg = self._reopen()
            self._by_id.clear()
            self._by_name.clear()
        for i in range(len(self._by_id), self._seg.count):
            info = self._seg.entry(i)
            self._by_id[info.id] = info
            self._by_name[(info.exchange_id, info.symbol)] = info
            self._by_name[(info.exchange_id, info.venue_symbol)] = info
        self._exchanges = self._seg.exchange_names()

    def _reopen(self) -> _Segment:
        deadline = time.monotonic() + 5.0
        while True:
            try:
                return self._open()
            except RingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def get(self, symbol_id: int) -> SymbolInfo | None:
        info = self._by_id.get(symbol_id)
        if info is None and symbol_id:
            self.refresh()
            info = self._by_id.get(symbol_id)
        return info

    def lookup(self, exchange_id: int, symbol: str) -> SymbolInfo | None:
        """By normalized (`BTC-USDT`) or venue (`BTCUSDT`) symbol."""
        key = (exchange_id, symbol)
        if key not in self._by_name:
            self.refresh()
        return self._by_name.get(key)

    def exchange_name(self, exchange_id: int) -> str:
        if exchange_id not in self._exchanges:
            self.refresh()
        return self._exchanges.get(exchange_id, str(exchange_id))

    def exchange_id(self, name: str) -> int | None:
        for eid, ename in self._exchanges.items():
            if ename == name:
                return eid
        return None

    def __len__(self) -> int:
        return len(self._by_id)

    def close(self) -> None:
        self._seg.close()
