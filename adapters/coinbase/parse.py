"""Coinbase Advanced Trade frames -> normalized records. Pure: no I/O, no event loop.

`CoinbaseSession.on_message` decodes a frame once (a union tagged by `channel`), checks the
connection-wide `sequence_num`, and hands the frame to its channel's handler, which looks each
product up once in a per-channel table built when the routes change. Anything else (venue
errors, unknown channels, malformed text) takes the slower path and is counted.

Ids. Coinbase's order book and ticker messages carry no per-product sequence: their order is
the connection's `sequence_num`, which starts again on every connection. A session therefore
numbers them `connection << 40 | sequence_num`, where `connection` grows with every session of
the process: ordered within a connection, and a newer connection's messages rank above an
older one's, so that during a make-before-break rollover the successor's snapshot takes the
book over and the old connection's late messages are dropped. Trades carry the venue's own
`trade_id`, increasing per product on every connection.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable
from typing import Any

import msgspec

from adapters.coinbase.schemas import (
    CoinbaseFrame,
    CoinbaseHeartbeatsMsg,
    CoinbaseL2Msg,
    CoinbaseOther,
    CoinbaseSubscriptionsMsg,
    CoinbaseTickerMsg,
    CoinbaseTrade,
    CoinbaseTradesMsg,
)
from engine.records import Flag, GapReason, Kind, Side
from engine.streams import RouteTable, Stream
from engine.venue import BookSnapshot, SessionEvents, Sink

SEQ_BITS = 40
_LAST = int(Flag.LAST)
_TRADE = int(Kind.TRADE)
# `side` of a market trade is the resting (maker) order's side, as the recorded frames show:
# trades at the best ask say SELL, trades at the best bid say BUY. Records carry the taker's.
_AGGRESSOR = {"BUY": int(Side.SELL), "SELL": int(Side.BUY)}
# frame channel -> the native channel its streams are subscribed as
CHANNELS = {"l2_data": "level2", "market_trades": "market_trades", "ticker": "ticker"}

_connections = itertools.count(1)
_decode_frame = msgspec.json.Decoder(CoinbaseFrame, strict=False).decode
_decode_other = msgspec.json.Decoder(CoinbaseOther).decode


class CoinbaseBookDelta(msgspec.Struct, gc=False):
    """One `update` event of one product's book, for `engine.book.BookSync`."""

    first_id: int
    last_id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    prev_id: int = -1


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_second_ns: dict[str, int] = {}  # "2026-08-09T21:05:48" -> its ns: market data shares seconds
_FRACTION: list[int] = [10 ** (9 - digits) for digits in range(10)]


def timestamp_ns(text: str) -> int:
    """RFC 3339 time as Coinbase writes it (`2026-08-09T21:05:48.228568804Z`, UTC, any number
    of fraction digits) in ns since the epoch; 0 when it is not one."""
    try:
        second = _second_ns.get(text[:19])
        if second is None:
            second = _second(text[:19])
        if text[19] == "." and text[-1] == "Z":
            fraction = text[20:-1]
            return second + int(fraction) * _FRACTION[len(fraction)]
        if len(text) == 20 and text[19] == "Z":
            return second
    except (ValueError, IndexError):
        pass
    return _timestamp_ns_other(text)


def _second(prefix: str) -> int:
    if len(prefix) != 19 or prefix[10] != "T":
        raise ValueError(prefix)
    moment = datetime.datetime.fromisoformat(prefix).replace(tzinfo=datetime.UTC)
    if len(_second_ns) > 4096:
        _second_ns.clear()
    ns = _second_ns[prefix] = (moment - _EPOCH) // datetime.timedelta(seconds=1) * 10**9
    return ns


def _timestamp_ns_other(text: str) -> int:
    """Any other RFC 3339 form (an offset, more than 9 fraction digits), at microsecond
    precision; 0 when it is not a time with a zone."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return 0
    if moment.tzinfo is None:
        return 0
    return (moment - _EPOCH) // datetime.timedelta(microseconds=1) * 1000


class CoinbaseSession:
    """One physical connection: its `sequence_num` and heartbeat counter. Routes are shared
    with every other session of the worker."""

    def __init__(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> None:
        self.routes = routes
        self.sink = sink
        self.events = events
        self.epoch = next(_connections) << SEQ_BITS
        self.next_seq = -1  # unknown until the first frame
        self.heartbeat = -1  # the last heartbeat_counter (-1: take the next as the baseline)
        self._dispatch: dict[type, Callable[[Any, int], int]] = {
            CoinbaseL2Msg: self._on_l2,
            CoinbaseTradesMsg: self._on_trades,
            CoinbaseTickerMsg: self._on_ticker,
            CoinbaseHeartbeatsMsg: self._on_heartbeats,
            CoinbaseSubscriptionsMsg: self._on_subscriptions,
        }
        self.routes_changed()

    def routes_changed(self) -> None:
        tables: dict[str, dict[str, Stream]] = {native: {} for native in CHANNELS.values()}
        for stream in self.routes:
            table = tables.get(stream.channel.native)
            if table is not None:
                table[stream.venue_symbol] = stream
        self._books = tables["level2"]
        self._trades = tables["market_trades"]
        self._tickers = tables["ticker"]

    def on_message(self, payload: memoryview | bytes, recv_ns: int) -> int:
        try:
            msg = _decode_frame(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return self._on_other(payload, exc)
        seq = msg.sequence_num
        if seq != self.next_seq:
            self._sequence_break(seq)
        self.next_seq = seq + 1
        return self._dispatch[type(msg)](msg, recv_ns)

    # -- continuity ---------------------------------------------------------------------------

    def _sequence_break(self, seq: int) -> None:
        if self.next_seq < 0:
            return  # the connection's first frame sets the baseline
        self._gap(GapReason.SEQUENCE_GAP)

    def _gap(self, reason: GapReason) -> None:
        """Messages were lost on this connection: every book it carries resynchronises."""
        self.heartbeat = -1  # the same loss shows in the next heartbeat: report it once
        self.events.on_gap(None, reason)

    def _on_heartbeats(self, msg: CoinbaseHeartbeatsMsg, recv_ns: int) -> int:
        for ev in msg.events:
            counter = ev.heartbeat_counter
            if self.heartbeat >= 0 and counter != self.heartbeat + 1:
                self._gap(GapReason.SEQUENCE_GAP)
            self.heartbeat = counter
        return timestamp_ns(msg.timestamp)

    # -- market data ----------------------------------------------------------------------------

    def _on_l2(self, msg: CoinbaseL2Msg, recv_ns: int) -> int:
        uid = self.epoch | msg.sequence_num
        exch = 0
        for ev in msg.events:
            stream = self._books.get(ev.product_id)
            if stream is None or stream.book is None:
                self._unrouted("level2", ev.product_id)
                continue
            stream.count += 1
            stream.last_ns = recv_ns
            levels = ev.updates
            exch = timestamp_ns(levels[-1].event_time if levels else msg.timestamp)
            bids = [(u.price_level, u.new_quantity) for u in levels if u.side == "bid"]
            asks = [(u.price_level, u.new_quantity) for u in levels if u.side == "offer"]
            if ev.type == "update":
                stream.book.on_delta(CoinbaseBookDelta(uid, uid, bids, asks), exch, recv_ns)
            else:
                stream.book.resnapshot(BookSnapshot(uid, bids, asks, exch), recv_ns)
        return exch

    def _on_ticker(self, msg: CoinbaseTickerMsg, recv_ns: int) -> int:
        uid = self.epoch | msg.sequence_num
        exch = timestamp_ns(msg.timestamp)
        append_bbo = self.sink.append_bbo
        for ev in msg.events:
            for t in ev.tickers:
                stream = self._tickers.get(t.product_id)
                if stream is None:
                    self._unrouted("ticker", t.product_id)
                    continue
                stream.count += 1
                stream.last_ns = recv_ns
                if uid < stream.last_id:
                    continue  # an older connection's, after a newer one took over
                stream.last_id = uid
                append_bbo(
                    _LAST,
                    stream.symbol,
                    exch,
                    recv_ns,
                    t.best_bid,
                    t.best_bid_quantity,
                    t.best_ask,
                    t.best_ask_quantity,
                )
        return exch

    def _on_trades(self, msg: CoinbaseTradesMsg, recv_ns: int) -> int:
        exch = 0
        for ev in msg.events:
            if ev.type == "snapshot":
                exch = self._trade_history(ev.trades, recv_ns) or exch
                continue
            for t in reversed(ev.trades):  # oldest first
                stream = self._trades.get(t.product_id)
                if stream is None:
                    self._unrouted("market_trades", t.product_id)
                    continue
                stream.count += 1
                stream.last_ns = recv_ns
                if t.trade_id > stream.last_id:  # else delivered by an overlapping connection
                    exch = self._trade(stream, t, recv_ns)
        return exch

    def _trade(self, stream: Stream, t: CoinbaseTrade, recv_ns: int) -> int:
        stream.last_id = t.trade_id
        exch = timestamp_ns(t.time)
        side = _AGGRESSOR.get(t.side, 0)
        self.sink.append(
            _TRADE, side, _LAST, stream.symbol, exch, recv_ns, t.price, t.size, t.trade_id, 0
        )
        return exch

    def _trade_history(self, trades: list[CoinbaseTrade], recv_ns: int) -> int:
        """The recent trades sent on subscribing. On a stream's first subscription they are
        history from before it: they only set the starting id. On a resubscription (after a
        reconnect or a resync) those newer than the last one delivered are the trades missed
        meanwhile, and are written."""
        first_time: dict[int, bool] = {}
        exch = 0
        for t in reversed(trades):
            stream = self._trades.get(t.product_id)
            if stream is None:
                self._unrouted("market_trades", t.product_id)
                continue
            fresh = first_time.setdefault(id(stream), stream.last_id == 0)
            stream.count += 1
            stream.last_ns = recv_ns
            if t.trade_id <= stream.last_id:
                continue
            if fresh:
                stream.last_id = t.trade_id
            else:
                exch = self._trade(stream, t, recv_ns)
        return exch

    def _unrouted(self, native: str, product_id: str) -> None:
        name = f"{native}:{product_id}"
        if not self.routes.was_removed(name):  # else: in flight after an unsubscribe
            self.events.on_parse_error("unknown_stream", f"frame of stream {name!r}")

    # -- control ----------------------------------------------------------------------------------

    def _on_subscriptions(self, msg: CoinbaseSubscriptionsMsg, recv_ns: int) -> int:
        # Cumulative, one per subscribe or unsubscribe, in the order of the requests.
        self.events.on_ack(None, True, None, "")
        return 0

    def _on_other(self, payload: memoryview | bytes, exc: Exception) -> int:
        try:
            msg = _decode_other(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as err:
            self.events.on_parse_error("unknown", str(err))
            return 0
        if msg.type == "error":
            text = str(msg.message or "error")
            if msg.reason:
                text = f"{text}: {msg.reason}"
            self.events.on_ack(None, False, None, text)
            return 0
        channel = msg.channel if isinstance(msg.channel, str) else None
        seq = msg.sequence_num
        if type(seq) is int:  # a frame that took its place in the sequence
            if seq != self.next_seq:
                self._sequence_break(seq)
            self.next_seq = seq + 1
        if channel in CHANNELS or channel in ("heartbeats", "subscriptions"):
            self.events.on_parse_error(channel, str(exc))
            if channel == "l2_data" and type(seq) is int:
                self._gap(GapReason.BAD_UPDATE)  # a book missed this update
        elif channel is not None:
            self.events.on_parse_error("unknown_channel", f"frame of channel {channel!r}")
        else:
            self.events.on_parse_error("control", "unrecognised message")
        return 0
