"""Binance frames -> normalized records. Pure: no I/O, no event loop.

`BinanceSession.on_message` decodes a combined-stream frame once: its decoder is a tagged
union with one member per subscribed stream (tag = the stream name), built whenever the
routing table changes, so the decode both parses and routes. Anything else (acks, errors,
frames of unknown streams, malformed text) takes the slower control path and is counted.
"""

from __future__ import annotations

from typing import Any, ClassVar, Union

import msgspec

from adapters.binance.schemas import (
    BinanceAggTradeFrame,
    BinanceAggTradeMsg,
    BinanceBookTickerFrame,
    BinanceBookTickerMsg,
    BinanceControlMsg,
    BinanceDepthFrame,
    BinanceDepthMsg,
    BinanceFrame,
    BinanceShutdownFrame,
    BinanceTradeFrame,
    BinanceTradeMsg,
)
from engine.records import Flag, Kind, Side
from engine.streams import RouteTable, Stream
from engine.venue import SessionEvents, Sink

MS = 1_000_000  # ns per ms
_LAST = int(Flag.LAST)
_LAST_AGG = int(Flag.LAST | Flag.AGGREGATED)
# Plain ints: an IntEnum member lookup costs a class attribute access per message.
_TRADE = int(Kind.TRADE)
_BUY = int(Side.BUY)
_SELL = int(Side.SELL)


def on_trade(frame: Any, route: Stream, recv_ns: int, sink: Sink) -> int:
    d = frame.data
    t = d.t
    if t <= route.last_id:
        return 0  # delivered already by an overlapping connection
    route.last_id = t
    exch: int = d.T * MS
    sink.append(_TRADE, _SELL if d.m else _BUY, _LAST, route.symbol, exch, recv_ns, d.p, d.q, t, 0)
    return exch


def on_agg_trade(frame: Any, route: Stream, recv_ns: int, sink: Sink) -> int:
    d = frame.data
    if d.a <= route.last_id:
        return 0
    route.last_id = d.a
    exch: int = d.T * MS
    side = _SELL if d.m else _BUY
    sink.append(_TRADE, side, _LAST_AGG, route.symbol, exch, recv_ns, d.p, d.q, d.a, 0)
    return exch


def on_book_ticker(frame: Any, route: Stream, recv_ns: int, sink: Sink) -> int:
    d = frame.data
    if d.u <= route.last_id:
        return 0
    route.last_id = d.u
    exch: int = d.E * MS
    sink.append_bbo(_LAST, route.symbol, exch, recv_ns, d.b, d.B, d.a, d.A)
    return exch


def on_depth(frame: Any, route: Stream, recv_ns: int, sink: Sink) -> int:
    d = frame.data
    exch: int = d.E * MS
    book = route.book
    if book is not None:
        book.on_delta(d, exch, recv_ns)
    return exch


# stream-name suffix -> (frame type, payload type, handler)
KINDS: dict[str, tuple[type[BinanceFrame], type, Any]] = {
    "trade": (BinanceTradeFrame, BinanceTradeMsg, on_trade),
    "aggTrade": (BinanceAggTradeFrame, BinanceAggTradeMsg, on_agg_trade),
    "bookTicker": (BinanceBookTickerFrame, BinanceBookTickerMsg, on_book_ticker),
    "depth": (BinanceDepthFrame, BinanceDepthMsg, on_depth),
    "depth@100ms": (BinanceDepthFrame, BinanceDepthMsg, on_depth),
}


def stream_kind(stream: str) -> str:
    return stream.partition("@")[2]


class _Routed:
    """Mixin of the per-stream frame classes: the route and handler live on the class."""

    route: ClassVar[Stream]
    handler: ClassVar[Any]


class _Notices:
    """The shutdown notice's stand-in for a route: the hot path then needs no type test."""

    __slots__ = ("count", "events", "last_ns")

    def __init__(self, events: SessionEvents) -> None:
        self.events = events
        self.count = 0
        self.last_ns = 0


def on_shutdown(frame: Any, route: _Notices, recv_ns: int, sink: Sink) -> int:
    route.events.on_notice("shutdown", "serverShutdown")
    return 0


def build_decoder(routes: RouteTable, events: SessionEvents) -> msgspec.json.Decoder[Any]:
    members: list[type] = [
        msgspec.defstruct(
            "Frame",
            [],
            bases=(BinanceShutdownFrame,),
            tag="!serverShutdown",
            namespace={"route": _Notices(events), "handler": staticmethod(on_shutdown)},
        )
    ]
    for stream in routes:
        base, _, handler = KINDS[stream_kind(stream.name)]
        members.append(
            msgspec.defstruct(
                "Frame",
                [],
                bases=(base,),
                tag=stream.name,
                namespace={"route": stream, "handler": staticmethod(handler)},
            )
        )
    return msgspec.json.Decoder(Union[tuple(members)], strict=False)  # noqa: UP007


class BinanceSession:
    """Per physical connection. Routes are shared with every other session of the worker."""

    def __init__(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> None:
        self.routes = routes
        self.sink = sink
        self.events = events
        self._control = msgspec.json.Decoder(BinanceControlMsg)
        self.routes_changed()

    def routes_changed(self) -> None:
        key = ("binance", id(self.events))  # the shard: its reconnects share one decoder
        self._decode = self.routes.cached(
            key, lambda: build_decoder(self.routes, self.events)
        ).decode

    def on_message(self, payload: memoryview | bytes, recv_ns: int) -> int:
        try:
            frame = self._decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return self._on_other(payload)
        route = frame.route  # a stream's, or the shutdown notice's (its handler reports it)
        route.count += 1
        route.last_ns = recv_ns
        return frame.handler(frame, route, recv_ns, self.sink)  # type: ignore[no-any-return]

    def _on_other(self, payload: memoryview | bytes) -> int:
        try:
            msg = self._control.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.events.on_parse_error("unknown", str(exc))
            return 0
        if msg.stream is not None:
            self._on_bad_stream_frame(msg.stream, msg.data)
        elif msg.code is not None:
            req = msg.id if isinstance(msg.id, int) else -1
            self.events.on_ack(req, False, msg.code, msg.msg or "")
        elif msg.e == "serverShutdown":
            self.events.on_notice("shutdown", "serverShutdown")
        elif isinstance(msg.id, int) and isinstance(msg.result, list):
            self.events.on_listing(msg.id, [str(s) for s in msg.result])
        elif isinstance(msg.id, int):
            self.events.on_ack(msg.id, True, None, "")
        else:
            self.events.on_parse_error("control", "unrecognised message")
        return 0

    def _on_bad_stream_frame(self, stream: str, data: msgspec.Raw) -> None:
        kind = stream_kind(stream)
        if self.routes.get(stream) is None:
            if not self.routes.was_removed(stream):  # else: in flight after UNSUBSCRIBE
                self.events.on_parse_error("unknown_stream", f"frame of stream {stream!r}")
            return
        _, payload_type, _ = KINDS[kind]
        try:
            msgspec.json.decode(data, type=payload_type, strict=False)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.events.on_parse_error(kind, f"{exc} (in `data`)")
            return
        self.events.on_parse_error(kind, "frame did not decode")
