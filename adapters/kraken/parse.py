"""Kraken Spot WebSocket v2 frames -> normalized records. Pure: no I/O, no event loop.

`KrakenSession.on_message` decodes a frame once (a union tagged by `channel`) and hands it to
its channel's handler, which looks each pair up once in a per-channel table built when the
routes change. Answers to requests (`method`), venue errors and malformed text take the slower
control path.

Ids. Kraken's book and ticker messages carry no sequence. A session numbers them
`connection << 40 | message number`, where `connection` grows with every session of the
process: ordered within a connection, and a newer connection's messages rank above an older
one's, so that during a make-before-break rollover the successor's snapshot takes the book
over and the old connection's late messages are dropped. Trades carry the venue's own
`trade_id`, sequential per pair on every connection.

Books. Every book message carries a CRC32 of the top 10 levels of each side, computed over the
price and quantity text with the `.` and leading zeros removed: asks best first, then bids
best first. The numbers are JSON numbers printed at the pair's full precision, so the text of
a level is its value at that precision. The session reads the precision from the text of the
first book message of each subscription (the snapshot), and the book rules
(`KrakenBookRules.verify`) rebuild the text of each level from its values when it changes
(without its `.` and leading zeros, the text is the value in units of its last digit; see
`LevelTexts`). They also cut the book to the subscribed depth after every message, as the
venue expects (it sends no removal for levels that fall out of range), and write those
removals as levels of the update.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import re
import zlib
from collections.abc import Callable
from typing import Any

import msgspec

from adapters.kraken.schemas import (
    KrakenBookData,
    KrakenBookMsg,
    KrakenControl,
    KrakenFrame,
    KrakenHeartbeatMsg,
    KrakenStatusMsg,
    KrakenTickerMsg,
    KrakenTrade,
    KrakenTradeMsg,
)
from engine.book import Book
from engine.records import Flag, Kind, Side
from engine.streams import RouteTable, Stream
from engine.venue import BookSnapshot, SessionEvents, Sink

SEQ_BITS = 40
DEPTH = 10  # the book depth we subscribe to (the venue's default)
CHECKSUM_LEVELS = 10  # the checksum covers the top 10 levels whatever the depth
# A subscribe or unsubscribe request gets one answer per pair, all with its req_id: the wire
# req_id is `request id << ACK_BITS | number of pairs`, so the session knows when all came.
ACK_BITS = 10
ACK_MASK = (1 << ACK_BITS) - 1
_LAST = int(Flag.LAST)
_TRADE = int(Kind.TRADE)
_SIDES = {"buy": int(Side.BUY), "sell": int(Side.SELL)}
_EXACT = float(1 << 52)  # below this, value * 10**decimals rounds to the exact integer
_POW10 = [10**n for n in range(19)]

_connections = itertools.count(1)
_decode_frame = msgspec.json.Decoder(KrakenFrame).decode
_decode_control = msgspec.json.Decoder(KrakenControl).decode
_PRICE_TEXT = re.compile(rb'"price":-?[0-9]+(?:\.([0-9]*))?')
_QTY_TEXT = re.compile(rb'"qty":-?[0-9]+(?:\.([0-9]*))?')


class KrakenBookDelta(msgspec.Struct, gc=False):
    """One `update` message of one pair's book, for `engine.book.BookSync`, with what
    `KrakenBookRules.verify` needs: the venue's checksum, the pair's precision and the depth."""

    first_id: int
    last_id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    checksum: int
    price_decimals: int
    qty_decimals: int
    depth: int = DEPTH
    prev_id: int = -1


class KrakenBookSnapshot(BookSnapshot, frozen=True):
    checksum: int = 0
    price_decimals: int = 0
    qty_decimals: int = 0
    depth: int = DEPTH


def decimals_in(payload: memoryview | bytes) -> tuple[int, int] | None:
    """The price and quantity precision of a book message, from its text (the most fraction
    digits any price or quantity shows; the venue prints all of a pair's alike). None when
    the message has no level."""
    data = bytes(payload)
    prices = _PRICE_TEXT.findall(data)
    qtys = _QTY_TEXT.findall(data)
    if not prices or not qtys:
        return None
    return max(map(len, prices)), max(map(len, qtys))


def level_text(price: float, qty: float, price_decimals: int, qty_decimals: int) -> str:
    """One level's part of the checksum text: the price then the quantity as the venue prints
    them, without `.` and leading zeros, which is each value in units of its last digit."""
    sp, sq = price * _POW10[price_decimals], qty * _POW10[qty_decimals]
    if sp < _EXACT and sq < _EXACT:  # the product rounds to the exact integer
        return f"{int(sp + 0.5)}{int(sq + 0.5)}"
    price_text = f"{price:.{price_decimals}f}".replace(".", "").lstrip("0")
    return price_text + f"{qty:.{qty_decimals}f}".replace(".", "").lstrip("0")


def checksum(book: Book, price_decimals: int, qty_decimals: int) -> int:
    """Kraken's CRC32 of the book's top 10 asks (low to high) then top 10 bids (high to low):
    each level's price text then its quantity text, without `.` and leading zeros."""
    asks, bids = book.asks, book.bids
    text = "".join(
        level_text(p, asks[p], price_decimals, qty_decimals) for p in _top_asks(asks)
    ) + "".join(level_text(p, bids[p], price_decimals, qty_decimals) for p in _top_bids(bids))
    return zlib.crc32(text.encode())


def _top_asks(asks: dict[float, float]) -> list[float]:
    if len(asks) <= 4 * CHECKSUM_LEVELS:
        return sorted(asks)[:CHECKSUM_LEVELS]
    return heapq.nsmallest(CHECKSUM_LEVELS, asks)


def _top_bids(bids: dict[float, float]) -> list[float]:
    if len(bids) <= 4 * CHECKSUM_LEVELS:
        return sorted(bids, reverse=True)[:CHECKSUM_LEVELS]
    return heapq.nlargest(CHECKSUM_LEVELS, bids)


class LevelTexts:
    """The checksum text of every level of one book, kept up to date from the levels of each
    message (a level's text is made once, when it changes), and each side's top-10 text kept
    until that side changes: most updates touch one side, so a checksum is one sort of the
    top prices of that side, 10 look-ups and one CRC32."""

    __slots__ = ("_ask_crc", "_bid_text", "asks", "bids", "precision")

    def __init__(self, book: Book, price_decimals: int, qty_decimals: int) -> None:
        self.precision = (price_decimals, qty_decimals)
        pd, qd = price_decimals, qty_decimals
        self.bids = {p: level_text(p, q, pd, qd).encode() for p, q in book.bids.items()}
        self.asks = {p: level_text(p, q, pd, qd).encode() for p, q in book.asks.items()}
        self._ask_crc: int | None = None  # CRC32 of the top asks' text (None: to redo)
        self._bid_text: bytes | None = None  # the top bids' text (None: to redo)

    def update(self, delta: KrakenBookDelta) -> None:
        pd, qd = self.precision
        if delta.bids:
            self._bid_text = None
            bids = self.bids
            for p, q in delta.bids:
                if q:
                    bids[p] = level_text(p, q, pd, qd).encode()
                else:
                    bids.pop(p, None)
        if delta.asks:
            self._ask_crc = None
            asks = self.asks
            for p, q in delta.asks:
                if q:
                    asks[p] = level_text(p, q, pd, qd).encode()
                else:
                    asks.pop(p, None)

    def checksum(self, book: Book) -> int:
        ask_crc = self._ask_crc
        if ask_crc is None:
            asks = self.asks
            ask_crc = self._ask_crc = zlib.crc32(b"".join([asks[p] for p in _top_asks(book.asks)]))
        bid_text = self._bid_text
        if bid_text is None:
            bids = self.bids
            bid_text = self._bid_text = b"".join([bids[p] for p in _top_bids(book.bids)])
        return zlib.crc32(bid_text, ask_crc)


def truncate(book: Book, delta: KrakenBookDelta) -> None:
    """Cut each side to the subscribed depth, adding the removals to the update's levels (so
    that readers' books lose them too)."""
    depth = delta.depth
    bids, asks = book.bids, book.asks
    if len(bids) > depth:
        for p in heapq.nsmallest(len(bids) - depth, bids):
            book.set_bid(p, 0.0)
            delta.bids.append((p, 0.0))
    if len(asks) > depth:
        for p in heapq.nlargest(len(asks) - depth, asks):
            book.set_ask(p, 0.0)
            delta.asks.append((p, 0.0))


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_second_ns: dict[str, int] = {}  # "2026-07-19T17:54:39" -> its ns: market data shares seconds
_FRACTION: list[int] = [10 ** (9 - digits) for digits in range(10)]


def timestamp_ns(text: str) -> int:
    """RFC 3339 time as Kraken writes it (`2026-07-19T17:54:39.753424Z`) in ns since the
    epoch; 0 when it is not one."""
    try:
        second = _second_ns.get(text[:19])
        if second is None:
            if len(text) < 20 or text[10] != "T":
                return 0
            moment = datetime.datetime.fromisoformat(text[:19]).replace(tzinfo=datetime.UTC)
            if len(_second_ns) > 4096:
                _second_ns.clear()
            second = _second_ns[text[:19]] = (
                (moment - _EPOCH) // datetime.timedelta(seconds=1) * 10**9
            )
        if text[19] == "." and text[-1] == "Z":
            fraction = text[20:-1]
            return second + int(fraction) * _FRACTION[len(fraction)]
        if len(text) == 20 and text[19] == "Z":
            return second
    except (ValueError, IndexError):
        pass
    return 0


def request_id(value: Any) -> tuple[int | None, int]:
    """Our request id and the number of pairs it covers from a wire req_id (None: none)."""
    if type(value) is not int or value < 0:
        return None, 1
    return value >> ACK_BITS, value & ACK_MASK


class KrakenSession:
    """One physical connection: its message numbering, the precision of its books and the
    answers still expected per request. Routes are shared with every other session."""

    def __init__(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> None:
        self.routes = routes
        self.sink = sink
        self.events = events
        self.epoch = next(_connections) << SEQ_BITS
        self.seq = 0
        self.precision: dict[str, tuple[int, int]] = {}  # book stream -> price, qty decimals
        self.answers: dict[int, int] = {}  # wire req_id -> answers still expected (-1: failed)
        self._dispatch: dict[type, Callable[[Any, memoryview | bytes, int], int]] = {
            KrakenBookMsg: self._on_book,
            KrakenTradeMsg: self._on_trades,
            KrakenTickerMsg: self._on_ticker,
            KrakenHeartbeatMsg: self._on_heartbeat,
            KrakenStatusMsg: self._on_status,
        }
        self.routes_changed()

    def routes_changed(self) -> None:
        tables: dict[str, dict[str, Stream]] = {"book": {}, "trade": {}, "ticker": {}}
        for stream in self.routes:
            table = tables.get(stream.channel.native)
            if table is not None:
                table[stream.venue_symbol] = stream
        self._books = tables["book"]
        self._trades = tables["trade"]
        self._tickers = tables["ticker"]

    def on_message(self, payload: memoryview | bytes, recv_ns: int) -> int:
        try:
            msg = _decode_frame(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return self._on_other(payload, exc)
        return self._dispatch[type(msg)](msg, payload, recv_ns)

    # -- market data ----------------------------------------------------------------------------

    def _on_book(self, msg: KrakenBookMsg, payload: memoryview | bytes, recv_ns: int) -> int:
        exch = 0
        snapshot = msg.type == "snapshot"
        for d in msg.data:
            stream = self._books.get(d.symbol)
            if stream is None or stream.book is None:
                self._unrouted("book", d.symbol)
                continue
            stream.count += 1
            stream.last_ns = recv_ns
            self.seq += 1
            uid = self.epoch | self.seq
            exch = timestamp_ns(d.timestamp)
            precision = self.precision.get(stream.name)
            if snapshot or precision is None:
                found = decimals_in(payload)
                if found is not None:
                    precision = self.precision[stream.name] = found
            pd, qd = precision or (0, 0)
            if snapshot:
                snap = _snapshot(d, uid, exch, pd, qd)
                stream.book.resnapshot(snap, recv_ns)
            else:
                bids = [(lv.price, lv.qty) for lv in d.bids]
                asks = [(lv.price, lv.qty) for lv in d.asks]
                delta = KrakenBookDelta(uid, uid, bids, asks, d.checksum, pd, qd)
                stream.book.on_delta(delta, exch, recv_ns)
        return exch

    def _on_ticker(self, msg: KrakenTickerMsg, payload: memoryview | bytes, recv_ns: int) -> int:
        exch = 0
        append_bbo = self.sink.append_bbo
        for t in msg.data:
            stream = self._tickers.get(t.symbol)
            if stream is None:
                self._unrouted("ticker", t.symbol)
                continue
            stream.count += 1
            stream.last_ns = recv_ns
            self.seq += 1
            uid = self.epoch | self.seq
            if uid < stream.last_id:
                continue  # an older connection's, after a newer one took over
            stream.last_id = uid
            exch = timestamp_ns(t.timestamp) if t.timestamp else 0
            append_bbo(_LAST, stream.symbol, exch, recv_ns, t.bid, t.bid_qty, t.ask, t.ask_qty)
        return exch

    def _on_trades(self, msg: KrakenTradeMsg, payload: memoryview | bytes, recv_ns: int) -> int:
        if msg.type == "snapshot":
            return self._trade_history(msg.data, recv_ns)
        exch = 0
        for t in msg.data:  # oldest first
            stream = self._trades.get(t.symbol)
            if stream is None:
                self._unrouted("trade", t.symbol)
                continue
            stream.count += 1
            stream.last_ns = recv_ns
            if t.trade_id > stream.last_id:  # else delivered by an overlapping connection
                exch = self._trade(stream, t, recv_ns)
        return exch

    def _trade(self, stream: Stream, t: KrakenTrade, recv_ns: int) -> int:
        stream.last_id = t.trade_id
        exch = timestamp_ns(t.timestamp)
        side = _SIDES.get(t.side)
        if side is None:
            self.events.on_parse_error("trade", f"unknown side {t.side!r}")
            side = int(Side.NONE)
        self.sink.append(
            _TRADE, side, _LAST, stream.symbol, exch, recv_ns, t.price, t.qty, t.trade_id, 0
        )
        return exch

    def _trade_history(self, trades: list[KrakenTrade], recv_ns: int) -> int:
        """The recent trades sent on subscribing (`snapshot: true`). On a stream's first
        subscription they are history from before it: they only set the starting id. On a
        resubscription (reconnect, resync) those newer than the last one delivered are the
        trades missed meanwhile, and are written."""
        first_time: dict[int, bool] = {}
        exch = 0
        for t in trades:  # oldest first
            stream = self._trades.get(t.symbol)
            if stream is None:
                self._unrouted("trade", t.symbol)
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

    def _unrouted(self, native: str, symbol: str) -> None:
        name = f"{native}:{symbol}"
        if not self.routes.was_removed(name):  # else: in flight after an unsubscribe
            self.events.on_parse_error("unknown_stream", f"frame of stream {name!r}")

    # -- control ----------------------------------------------------------------------------------

    def _on_heartbeat(self, msg: KrakenHeartbeatMsg, payload: memoryview | bytes, recv: int) -> int:
        return 0  # its arrival is what counts (the engine's liveness)

    def _on_status(self, msg: KrakenStatusMsg, payload: memoryview | bytes, recv: int) -> int:
        for s in msg.data:
            if s.system != "online":
                # maintenance, cancel_only, post_only, limit_only: the whole venue, not this
                # connection (a new connection would not fare better): reported, no rollover
                self.events.on_notice("status", f"system {s.system}")
        return 0

    def _on_other(self, payload: memoryview | bytes, exc: Exception) -> int:
        try:
            msg = _decode_control(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as err:
            self.events.on_parse_error("unknown", str(err))
            return 0
        method = msg.method
        if method == "pong":
            self.events.on_pong()
        elif method in ("subscribe", "unsubscribe"):
            self._on_answer(msg)
        elif method is not None and msg.error is not None:
            self.events.on_ack(None, False, None, str(msg.error))
        elif msg.channel in ("book", "trade", "ticker", "heartbeat", "status"):
            self.events.on_parse_error(str(msg.channel), str(exc))
        elif isinstance(msg.channel, str):
            self.events.on_parse_error("unknown_channel", f"frame of channel {msg.channel!r}")
        elif msg.error is not None:  # e.g. {"error": "Exceeded msg rate"} without a method
            self.events.on_ack(None, False, None, str(msg.error))
        else:
            self.events.on_parse_error("control", "unrecognised message")
        return 0

    def _on_answer(self, msg: KrakenControl) -> None:
        """One pair's answer to a subscribe or unsubscribe. A request is acknowledged once
        every pair's answer came; the first error refuses it with the venue's text."""
        rid, pairs = request_id(msg.req_id)
        if msg.success is not True:
            text = str(msg.error or "request failed")
            if rid is None:
                self.events.on_ack(None, False, None, text)
                return
            if self.answers.get(msg.req_id) != -1:
                if pairs > 1:  # the other pairs' answers are still to come: ignore them
                    self.answers[msg.req_id] = -1
                self.events.on_ack(rid, False, None, text)
            return
        if rid is None:
            self.events.on_ack(None, True, None, "")
            return
        left = self.answers.get(msg.req_id, pairs) - 1
        if left < 0:
            return  # the request failed already (or an answer too many)
        if left == 0:
            self.answers.pop(msg.req_id, None)
            self.events.on_ack(rid, True, None, "")
        else:
            self.answers[msg.req_id] = left


def _snapshot(d: KrakenBookData, uid: int, exch: int, pd: int, qd: int) -> KrakenBookSnapshot:
    return KrakenBookSnapshot(
        uid,
        [(lv.price, lv.qty) for lv in d.bids],
        [(lv.price, lv.qty) for lv in d.asks],
        exch,
        d.checksum,
        pd,
        qd,
    )
