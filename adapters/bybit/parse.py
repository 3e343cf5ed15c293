"""Bybit v5 public frames -> normalized records. Pure: no I/O, no event loop.

`BybitSession.on_message` decodes a data frame once: its decoder is a tagged union with one
member per subscribed topic (tag = the `topic` field, e.g. `orderbook.200.BTCUSDT`), built
whenever the routing table changes, so the decode both parses and routes. Everything else
(acks, errors, pongs, frames of unknown topics, malformed text) takes the slower control path.

Books. `orderbook.{50,200}` start with a `snapshot` (on every subscription) followed by
`delta`s whose `u` rises by exactly one (`adapters.bybit.venue.BybitBookRules`). A snapshot
in the middle of the stream replaces the book (`BookSync.resnapshot` writes only the levels
that differ). One with a lower `u` than the book's, `u = 1`, is Bybit's restart of the
topic's numbering after a service restart: it must overwrite the book and is not a gap. The
book sync takes only newer snapshots on a live book, so a session rebases the topic's ids from
then on (`offset`: the book's last id, added to every `u` of that topic on this connection):
the ids stay increasing and the continuity check is unchanged.

`orderbook.1` is the best bid and offer (`ticker`): level 1 is snapshot-only, re-sent with the
same `u` every 3 s when nothing changed (dropped as a duplicate).
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from adapters.bybit.schemas import (
    BybitBookData,
    BybitBookFrame,
    BybitControlMsg,
    BybitFrame,
    BybitLinearTrade,
    BybitLinearTradeFrame,
    BybitNoFrame,
    BybitSpotTrade,
    BybitSpotTradeFrame,
)
from engine.records import Flag, Kind, Side
from engine.streams import RouteTable, Stream
from engine.venue import BookSnapshot, SessionEvents, Sink

MS = 1_000_000  # ns per ms
_LAST = int(Flag.LAST)
_TRADE = int(Kind.TRADE)
_SIDES = {"Buy": int(Side.BUY), "Sell": int(Side.SELL)}
_NONE = int(Side.NONE)


def on_spot_trades(frame: Any, route: Stream, recv_ns: int, session: BybitSession) -> int:
    append = session.sink.append
    exch = 0
    for t in frame.data:
        tid = t.i
        if tid <= route.last_id:
            continue  # delivered already by an overlapping connection
        route.last_id = tid
        exch = t.T * MS
        side = _SIDES.get(t.S, _NONE)
        append(_TRADE, side, _LAST, route.symbol, exch, recv_ns, t.p, t.v, tid, 0)
    return exch


def on_linear_trades(frame: Any, route: Stream, recv_ns: int, session: BybitSession) -> int:
    """Trade ids are UUIDs: records carry 0. The cross sequence `seq` (equal for the fills of
    one match, which may span messages) drops what an older connection sends late."""
    append = session.sink.append
    exch = 0
    for t in frame.data:
        seq = t.seq
        if seq < route.last_id:
            continue
        route.last_id = seq
        exch = t.T * MS
        side = _SIDES.get(t.S, _NONE)
        append(_TRADE, side, _LAST, route.symbol, exch, recv_ns, t.p, t.v, 0, 0)
    return exch


def on_book(frame: Any, route: Stream, recv_ns: int, session: BybitSession) -> int:
    d = frame.data
    exch: int = (frame.cts or frame.ts) * MS
    book = route.book
    if book is None:
        return exch
    offset = session.offsets.get(route.name, 0) if session.offsets else 0
    kind = frame.type
    if kind == "delta":
        if offset:
            d.last_id += offset
        book.on_delta(d, exch, recv_ns)
    elif kind == "snapshot":
        uid = d.last_id + offset
        if d.last_id == 1 and uid < book.last_id and not book.awaiting:
            # `u` started again after a service restart: overwrite, continue from here (an
            # older snapshot that is not u=1, e.g. a lagging connection's, is dropped)
            offset = session.offsets[route.name] = book.last_id
            uid = d.last_id + offset
            session.restarts += 1
        book.resnapshot(BookSnapshot(uid, d.bids, d.asks, exch), recv_ns)
    else:
        session.events.on_parse_error("orderbook", f"unknown type {kind!r}")
        return 0
    return exch


def on_bbo(frame: Any, route: Stream, recv_ns: int, session: BybitSession) -> int:
    """`orderbook.1`: each message is the whole top of the book."""
    d = frame.data
    u = d.last_id
    if u <= route.last_id and (u != 1 or route.last_id == 1):
        return 0  # the 3-second re-send, or an overlapping connection's (u=1: a restart)
    route.last_id = u
    exch: int = (frame.cts or frame.ts) * MS
    bid, bid_size = d.bids[0] if d.bids else (0.0, 0.0)
    ask, ask_size = d.asks[0] if d.asks else (0.0, 0.0)
    session.sink.append_bbo(_LAST, route.symbol, exch, recv_ns, bid, bid_size, ask, ask_size)
    return exch


# topic prefix -> (frame type, payload type for error reports, handler), per category
SPOT_KINDS: dict[str, tuple[type[BybitFrame], Any, Any]] = {
    "publicTrade": (BybitSpotTradeFrame, list[BybitSpotTrade], on_spot_trades),
    "orderbook.1": (BybitBookFrame, BybitBookData, on_bbo),
    "orderbook.50": (BybitBookFrame, BybitBookData, on_book),
    "orderbook.200": (BybitBookFrame, BybitBookData, on_book),
}
LINEAR_KINDS: dict[str, tuple[type[BybitFrame], Any, Any]] = {
    **SPOT_KINDS,
    "publicTrade": (BybitLinearTradeFrame, list[BybitLinearTrade], on_linear_trades),
}


def topic_kind(topic: str) -> str:
    """`orderbook.200.BTCUSDT` -> `orderbook.200`; `publicTrade.BTCUSDT` -> `publicTrade`."""
    return topic.rpartition(".")[0]


def build_decoder(routes: RouteTable, kinds: dict[str, Any]) -> msgspec.json.Decoder[Any]:
    """A union of one frame class per topic; each class carries its route and handler."""
    members: list[type] = [BybitNoFrame]
    for stream in routes:
        spec = kinds.get(topic_kind(stream.name))
        if spec is None:
            continue
        base, _, handler = spec
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


def request_id(value: Any) -> int | None:
    """Our `req_id`s are integers sent as text; None when the answer carries none (answers
    come in the order of the requests)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


class BybitSession:
    """Per physical connection. Routes are shared with every other session of the worker."""

    def __init__(
        self, routes: RouteTable, sink: Sink, events: SessionEvents, *, linear: bool = False
    ) -> None:
        self.routes = routes
        self.sink = sink
        self.events = events
        self.kinds = LINEAR_KINDS if linear else SPOT_KINDS
        self.offsets: dict[str, int] = {}  # topic -> added to its `u` since a restart (u=1)
        self.restarts = 0
        self._control = msgspec.json.Decoder(BybitControlMsg)
        self.routes_changed()

    def routes_changed(self) -> None:
        key = ("bybit", id(self.kinds))
        self._decode = self.routes.cached(
            key, lambda: build_decoder(self.routes, self.kinds)
        ).decode

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
        if isinstance(msg.topic, str):
            self._on_bad_topic_frame(msg.topic, msg.data)
            return 0
        op, ok, text = msg.op, msg.success, msg.ret_msg
        text = text if isinstance(text, str) else ""
        if op in ("subscribe", "unsubscribe") and isinstance(ok, bool):
            self.events.on_ack(request_id(msg.req_id), ok, None, text)
        elif op == "pong" or (op == "ping" and ok is True):
            self.events.on_pong()
        elif ok is False:
            rid = request_id(msg.req_id)
            if rid is not None:
                self.events.on_ack(rid, False, None, text)
            else:
                self.events.on_parse_error("control", f"venue error: {text or op!r}")
        else:
            self.events.on_parse_error("control", "unrecognised message")
        return 0

    def _on_bad_topic_frame(self, topic: str, data: msgspec.Raw) -> None:
        kind = topic_kind(topic)
        spec = self.kinds.get(kind)
        if spec is None or self.routes.get(topic) is None:
            if not self.routes.was_removed(topic):  # else: in flight after an unsubscribe
                self.events.on_parse_error("unknown_stream", f"frame of topic {topic!r}")
            return
        channel = kind.partition(".")[0]
        try:
            msgspec.json.decode(data, type=spec[1], strict=False)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.events.on_parse_error(channel, f"{exc} (in `data`)")
            return
        self.events.on_parse_error(channel, "frame did not decode")
