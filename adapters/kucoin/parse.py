"""KuCoin frames -> normalized records. Pure: no I/O, no event loop.

`KucoinSession.on_message` decodes a data frame once: its decoder is a tagged union with one
member per subscribed topic (tag = the `topic` field, e.g. `/market/match:BTC-USDT`), built
whenever the routing table changes, so the decode both parses and routes. Everything else
(welcome, ack, pong, error, frames of unknown topics, malformed text) takes the slower control
path.

Trades and tickers carry the symbol's sequence number, which drops what an overlapping
connection already delivered; level2 updates go to the engine's book sync with KuCoin's rules
(`adapters.kucoin.venue.KucoinBookRules`).
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from adapters.kucoin.schemas import (
    KucoinControlMsg,
    KucoinFrame,
    KucoinLevel2Frame,
    KucoinLevel2Msg,
    KucoinMatchFrame,
    KucoinMatchMsg,
    KucoinNoFrame,
    KucoinTickerFrame,
    KucoinTickerMsg,
)
from engine.records import Flag, Kind, Side
from engine.streams import RouteTable, Stream
from engine.venue import SessionEvents, Sink

MS = 1_000_000  # ns per ms
# plain ints: reading an enum member costs ~0.1 us, a module global ~0.01 us
_LAST = int(Flag.LAST)
_TRADE = int(Kind.TRADE)
_SIDES = {"buy": int(Side.BUY), "sell": int(Side.SELL)}


def on_match(frame: Any, route: Stream, recv_ns: int, session: KucoinSession) -> int:
    d = frame.data
    if d.sequence <= route.last_id:
        return 0  # delivered already by an overlapping connection
    route.last_id = d.sequence
    side = _SIDES.get(d.side)
    if side is None:
        session.events.on_parse_error("match", f"unknown side {d.side!r}")
        side = int(Side.NONE)
    exch: int = d.time
    session.sink.append(
        _TRADE, side, _LAST, route.symbol, exch, recv_ns, d.price, d.size, d.sequence, 0
    )
    return exch


def on_ticker(frame: Any, route: Stream, recv_ns: int, session: KucoinSession) -> int:
    d = frame.data
    if d.sequence <= route.last_id:
        return 0
    route.last_id = d.sequence
    exch: int = d.time * MS
    session.sink.append_bbo(
        _LAST, route.symbol, exch, recv_ns, d.bestBid, d.bestBidSize, d.bestAsk, d.bestAskSize
    )
    return exch


def level_changes(d: KucoinLevel2Msg) -> None:
    """The price changes the book applies: every change but the sequence steps (price 0).
    A side without changes keeps the shared empty default (most updates change one side)."""
    ch = d.changes
    if ch.bids:
        d.bids = [(p, s) for p, s, _ in ch.bids if p]
    if ch.asks:
        d.asks = [(p, s) for p, s, _ in ch.asks if p]


def on_level2(frame: Any, route: Stream, recv_ns: int, session: KucoinSession) -> int:
    d = frame.data
    level_changes(d)
    exch: int = d.time * MS
    book = route.book
    if book is not None:
        book.on_delta(d, exch, recv_ns)
    return exch


# topic prefix -> (frame type, payload type, handler)
KINDS: dict[str, tuple[type[KucoinFrame], type, Any]] = {
    "/market/match": (KucoinMatchFrame, KucoinMatchMsg, on_match),
    "/market/ticker": (KucoinTickerFrame, KucoinTickerMsg, on_ticker),
    "/market/level2": (KucoinLevel2Frame, KucoinLevel2Msg, on_level2),
}


def topic_kind(topic: str) -> str:
    return topic.partition(":")[0]


def build_decoder(routes: RouteTable) -> msgspec.json.Decoder[Any]:
    """A union of one frame class per topic; each class carries its route and handler."""
    members: list[type] = [KucoinNoFrame]
    for stream in routes:
        base, _, handler = KINDS[topic_kind(stream.name)]
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


def request_id(value: int | str | None) -> int:
    """Our request ids are integers; KuCoin echoes them as strings. -1 when it is not ours."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return -1


def text_of(data: msgspec.Raw) -> str:
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return bytes(data).decode(errors="replace")
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


class KucoinSession:
    """Per physical connection. Routes are shared with every other session of the worker."""

    def __init__(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> None:
        self.routes = routes
        self.sink = sink
        self.events = events
        self._control = msgspec.json.Decoder(KucoinControlMsg)
        self.routes_changed()

    def routes_changed(self) -> None:
        self._decode = self.routes.cached("kucoin", lambda: build_decoder(self.routes)).decode

    def on_message(self, payload: memoryview | bytes, recv_ns: int) -> int:
        try:
            frame = self._decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return self._on_other(payload)
        route = frame.route
        route.count += 1
        route.last_ns = recv_ns
        return int(frame.handler(frame, route, recv_ns, self))

    def _on_other(self, payload: memoryview | bytes) -> int:
        try:
            msg = self._control.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.events.on_parse_error("unknown", str(exc))
            return 0
        kind = msg.type
        if kind == "pong":
            self.events.on_pong()
        elif kind == "ack":
            self.events.on_ack(request_id(msg.id), True, None, "")
        elif kind == "error":
            self.events.on_ack(request_id(msg.id), False, msg.code, text_of(msg.data))
        elif kind == "welcome":
            self.events.on_welcome()
        elif kind == "message" and msg.topic is not None:
            self._on_bad_topic_frame(msg.topic, msg.data)
        elif kind not in ("notice", "command"):  # documented, carry nothing we use
            self.events.on_parse_error("control", f"unrecognised message type {kind!r}")
        return 0

    def _on_bad_topic_frame(self, topic: str, data: msgspec.Raw) -> None:
        if self.routes.get(topic) is None:
            if not self.routes.was_removed(topic):  # else: in flight after an unsubscribe
                self.events.on_parse_error("unknown_stream", f"frame of topic {topic!r}")
            return
        kind = topic_kind(topic)
        channel = kind.rpartition("/")[2]
        _, payload_type, _ = KINDS[kind]
        try:
            msgspec.json.decode(data, type=payload_type, strict=False)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.events.on_parse_error(channel, f"{exc} (in `data`)")
            return
        self.events.on_parse_error(channel, "frame did not decode")
