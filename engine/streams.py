"""Subscribed venue streams and the routing table that sessions dispatch through.

A `Stream` (e.g. Binance `btcusdt@trade`) exists once per worker, whichever physical
connections carry it. Its `last_id` lets a session drop a message that another connection
already delivered (make-before-break rollover), and its counters give per-stream liveness.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from engine.book import BookSync
from engine.records import Kind
from engine.venue import Channel, Sink

T = TypeVar("T")


def kind_bit(kind: Kind) -> int:
    return 1 << int(kind)


ALL_KINDS = sum(1 << int(k) for k in Kind)


class Stream:
    __slots__ = (
        "book",
        "channel",
        "count",
        "kinds",
        "last_id",
        "last_ns",
        "name",
        "symbol",
        "venue_symbol",
    )

    def __init__(
        self, name: str, channel: Channel, symbol: int, venue_symbol: str, kinds: int = ALL_KINDS
    ) -> None:
        self.name = name
        self.channel = channel
        self.symbol = symbol
        self.venue_symbol = venue_symbol
        self.kinds = kinds  # bit mask of the record kinds some subscription wants
        self.last_id = 0  # the newest venue id delivered (trade id, update id)
        self.book: BookSync | None = None
        self.count = 0
        self.last_ns = 0

    def wants(self, kind: Kind) -> bool:
        return bool(self.kinds & (1 << int(kind)))

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, symbol={self.symbol}, last_id={self.last_id})"


class RouteTable:
    """Stream name -> Stream, with a version sessions compare to rebuild their decoders."""

    def __init__(self) -> None:
        self._streams: dict[str, Stream] = {}
        self._removed: dict[str, None] = {}  # recently removed names, oldest first
        self.version = 0
        self._built: dict[object, Any] = {}  # what `cached` built for this version
        self._built_version = 0

    def cached(self, key: object, build: Callable[[], T]) -> T:
        """`build()` once per routing version and `key`, shared by every session (a session
        is made per socket). A decoder over per-stream Struct types made with
        `msgspec.defstruct` costs a few KB that msgspec 0.22 never gives back (measured: ~5.5
        KB per build), so rebuilding one per reconnect grew workers by ~50 KB per reconnect."""
        if self._built_version != self.version:
            self._built.clear()
            self._built_version = self.version
        if key not in self._built:
            if len(self._built) >= 256:  # sessions of shards long gone
                del self._built[next(iter(self._built))]
            self._built[key] = build()
        value: T = self._built[key]
        return value

    def add(self, stream: Stream) -> None:
        self._streams[stream.name] = stream
        self.version += 1

    def remove(self, name: str) -> Stream | None:
        stream = self._streams.pop(name, None)
        if stream is not None:
            self.version += 1
            self._removed[name] = None
            if len(self._removed) > 4096:
                del self._removed[next(iter(self._removed))]
        return stream

    def was_removed(self, name: str) -> bool:
        """Frames of a stream we just left may still be in flight: those are not errors."""
        return name in self._removed

    def get(self, name: str) -> Stream | None:
        return self._streams.get(name)

    def names(self) -> Sequence[str]:
        return list(self._streams)

    def __iter__(self) -> Iterator[Stream]:
        return iter(list(self._streams.values()))

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, name: object) -> bool:
        return name in self._streams


def make_stream(
    venue: Any,
    channel: Channel,
    venue_symbol: str,
    symbol: int,
    sink: Sink,
    request_snapshot: Callable[[Stream], None],
    kinds: int = ALL_KINDS,
) -> Stream:
    """A stream of `venue`, with a book synchroniser when the channel carries a book.
    `request_snapshot(stream)` is how its book asks for a fresh snapshot."""
    stream = Stream(venue.stream_name(channel, venue_symbol), channel, symbol, venue_symbol, kinds)
    if channel.kind == Kind.BOOK_LEVEL and venue.book_rules is not None:
        stream.book = BookSync(
            rules=venue.book_rules,
            symbol=symbol,
            sink=sink,
            request_snapshot=lambda _book: request_snapshot(stream),
        )
    return stream
