"""OKX frames -> normalized records. Pure: no I/O, no event loop.

`OkxSession.on_message` decodes a frame once (`OkxMsg`: pushes and answers alike), looks its
stream up once in a per-channel table (`arg.channel`, then `arg.instId`) built when the routes
change, and hands it to the channel's handler. Answers (`event`: subscribe, unsubscribe, error,
notice) take the control path; frames that do not decode take the slower path and are counted.

Ids. Trades carry `tradeId`, increasing per instrument; `bbo-tbt` and books carry `seqId`;
tickers carry only their time (ms), pushed at most every 100 ms. Each drops what an overlapping
connection already delivered. Books go to the engine's book sync with OKX's rules
(`adapters.okx.venue.OkxBookRules`): `books` sends a snapshot on subscribing then updates, each
naming the `seqId` before it (`prevSeqId`); `books5` sends its whole five levels every time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from adapters.okx.schemas import OkxBookDelta, OkxBookSnapshot, OkxMsg, OkxOther
from engine.records import Flag, GapReason, Kind, Side
from engine.streams import RouteTable, Stream
from engine.venue import SessionEvents, Sink

MS = 1_000_000  # ns per ms
# A snapshot this far below its live book is not a late one (connections lag by a few ids)
# but the venue's ids after a reset: OKX resets `seqId` after maintenance.
RESET_MARGIN = 1_000_000
_LAST = int(Flag.LAST)
_TRADE = int(Kind.TRADE)
_SIDES = {"buy": int(Side.BUY), "sell": int(Side.SELL)}
# answers that carry nothing we act on (OKX reports connection counts per channel); its
# `channel-conn-count-error` (too many connections on a channel) is counted as unrecognised
_QUIET_EVENTS = frozenset(("channel-conn-count", "login"))
SHUTDOWN_CODES = frozenset(("64008",))  # "The connection will soon be closed for a service upgrade"

_decode = msgspec.json.Decoder(OkxMsg, strict=False).decode
_decode_other = msgspec.json.Decoder(OkxOther).decode


def floats(levels: list[Any]) -> list[tuple[float, float]]:
    return [(float(p), float(s)) for p, s, _, _ in levels]


def on_trades(msg: OkxMsg, stream: Stream, recv_ns: int, session: OkxSession) -> int:
    exch = 0
    append = session.sink.append
    for d in msg.data:
        tid = d.tradeId
        if tid <= stream.last_id:
            continue  # delivered already by an overlapping connection
        stream.last_id = tid
        side = _SIDES.get(d.side)
        if side is None:
            session.events.on_parse_error("trades", f"unknown side {d.side!r}")
            side = int(Side.NONE)
        exch = d.ts * MS
        append(_TRADE, side, _LAST, stream.symbol, exch, recv_ns, d.px, d.sz, tid, 0)
    return exch


def on_tickers(msg: OkxMsg, stream: Stream, recv_ns: int, session: OkxSession) -> int:
    exch = 0
    for d in msg.data:
        if d.ts <= stream.last_id:
            continue
        stream.last_id = d.ts
        exch = d.ts * MS
        session.sink.append_bbo(
            _LAST, stream.symbol, exch, recv_ns, d.bidPx, d.bidSz, d.askPx, d.askSz
        )
    return exch


def on_bbo(msg: OkxMsg, stream: Stream, recv_ns: int, session: OkxSession) -> int:
    exch = 0
    for d in msg.data:
        if d.seqId <= stream.last_id:
            continue
        stream.last_id = d.seqId
        exch = d.ts * MS
        bids, asks = d.bids, d.asks
        bid, bid_size = (float(bids[0][0]), float(bids[0][1])) if bids else (0.0, 0.0)
        ask, ask_size = (float(asks[0][0]), float(asks[0][1])) if asks else (0.0, 0.0)
        session.sink.append_bbo(_LAST, stream.symbol, exch, recv_ns, bid, bid_size, ask, ask_size)
    return exch


def on_books(msg: OkxMsg, stream: Stream, recv_ns: int, session: OkxSession) -> int:
    book = stream.book
    exch = 0
    if book is None:
        return 0
    snapshot = msg.action != "update"  # "snapshot"
    for d in msg.data:
        exch = d.ts * MS
        if snapshot:
            snap = OkxBookSnapshot(
                d.seqId,
                floats(d.bids),
                floats(d.asks),
                exch,
                bid_text=d.bids,
                ask_text=d.asks,
                checksum=d.checksum,
            )
            if not book.awaiting and d.seqId + RESET_MARGIN < book.last_id:
                # far below the book: the venue reset its ids (maintenance) and this
                # connection carries the new ones; the engine would drop it as stale and
                # then every update of this connection too. Start again from it.
                book.invalidate(GapReason.SEQUENCE_GAP, recv_ns, request=False)
                book.on_snapshot(snap, recv_ns)
            else:
                book.resnapshot(snap, recv_ns)
        else:
            delta = OkxBookDelta(
                d.seqId,
                d.seqId,
                d.prevSeqId,
                floats(d.bids) if d.bids else [],
                floats(d.asks) if d.asks else [],
                d.bids,
                d.asks,
                d.checksum,
            )
            book.on_delta(delta, exch, recv_ns)
    return exch


def on_books5(msg: OkxMsg, stream: Stream, recv_ns: int, session: OkxSession) -> int:
    """Every push is the whole top five: a snapshot that a live book hands over to."""
    book = stream.book
    exch = 0
    if book is None:
        return 0
    for d in msg.data:
        exch = d.ts * MS
        book.resnapshot(OkxBookSnapshot(d.seqId, floats(d.bids), floats(d.asks), exch), recv_ns)
    return exch


Handler = Callable[[OkxMsg, Stream, int, "OkxSession"], int]
HANDLERS: dict[str, Handler] = {
    "trades": on_trades,
    "tickers": on_tickers,
    "bbo-tbt": on_bbo,
    "books": on_books,
    "books5": on_books5,
}


def request_id(value: str) -> int | None:
    """Our request ids are integers sent as strings; None when the answer carries none."""
    return int(value) if value.isdigit() else None


class OkxSession:
    """One physical connection. Routes are shared with every other session of the worker."""

    def __init__(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> None:
        self.routes = routes
        self.sink = sink
        self.events = events
        self._tables: dict[str, tuple[dict[str, Stream], Handler]] = {}
        self.routes_changed()

    def routes_changed(self) -> None:
        tables: dict[str, tuple[dict[str, Stream], Handler]] = {
            channel: ({}, handler) for channel, handler in HANDLERS.items()
        }
        for stream in self.routes:
            entry = tables.get(stream.channel.native)
            if entry is not None:
                entry[0][stream.venue_symbol] = stream
        self._tables = tables

    def on_message(self, payload: memoryview | bytes, recv_ns: int) -> int:
        try:
            msg = _decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return self._on_bad(payload, exc)
        arg = msg.arg
        if msg.event or arg is None:
            return self._on_control(msg)
        entry = self._tables.get(arg.channel)
        stream = entry[0].get(arg.instId) if entry is not None else None
        if stream is None:
            self._unrouted(arg.channel, arg.instId)
            return 0
        stream.count += 1
        stream.last_ns = recv_ns
        return entry[1](msg, stream, recv_ns, self)  # type: ignore[index]

    def _unrouted(self, channel: str, inst_id: str) -> None:
        name = f"{channel}:{inst_id}"
        if channel not in HANDLERS:
            self.events.on_parse_error("unknown_channel", f"frame of channel {channel!r}")
        elif not self.routes.was_removed(name):  # else: in flight after an unsubscribe
            self.events.on_parse_error("unknown_stream", f"frame of stream {name!r}")

    def _on_control(self, msg: OkxMsg) -> int:
        event = msg.event
        if event in ("subscribe", "unsubscribe"):
            # one answer per channel of the request, each with the request's id: the first
            # settles the request, the engine ignores the others
            self.events.on_ack(request_id(msg.id), True, None, "")
        elif event == "error":
            self.events.on_ack(request_id(msg.id), False, msg.code or None, msg.msg)
        elif event == "notice":
            if msg.code in SHUTDOWN_CODES:
                self.events.on_notice("shutdown", msg.msg or f"notice {msg.code}")
        elif event not in _QUIET_EVENTS:
            self.events.on_parse_error("control", f"unrecognised message {event!r}")
        return 0

    def _on_bad(self, payload: memoryview | bytes, exc: Exception) -> int:
        if bytes(payload) == b"pong":  # the engine takes pongs first; a late one is harmless
            self.events.on_pong()
            return 0
        try:
            other = _decode_other(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as err:
            self.events.on_parse_error("unknown", str(err))
            return 0
        arg = other.arg
        channel = arg.get("channel") if isinstance(arg, dict) else None
        if isinstance(channel, str):
            self.events.on_parse_error(
                channel if channel in HANDLERS else "unknown_channel", str(exc)
            )
        else:
            self.events.on_parse_error("control", str(exc))
        return 0
