"""OKX v5 public market data: the declarative venue spec, request builders, REST parsers and
book rules (continuity by `seqId`/`prevSeqId`, the legacy CRC32 checksum, the first book from
REST when the `books` snapshot does not come)."""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from adapters.okx.parse import OkxSession, floats
from adapters.okx.schemas import (
    Level,
    OkxBookDelta,
    OkxBookSnapshot,
    OkxInstruments,
    OkxRestBooks,
)
from engine.book import Book
from engine.errors import VenueRejection
from engine.records import Kind
from engine.streams import RouteTable
from engine.venue import (
    BookSnapshot,
    Channel,
    Heartbeat,
    Instrument,
    Limits,
    Request,
    SessionEvents,
    Sink,
    Venue,
    VenueSpec,
    Verdict,
)

INSTRUMENTS_PATH = "/api/v5/public/instruments?instType=SPOT"
BOOKS_PATH = "/api/v5/market/books"
SNAPSHOT_DEPTH = 400
CHECKSUM_DEPTH = 25
# `books` updates (one per 100 ms) buffered with no snapshot before the book is fetched from REST
REST_FALLBACK_AFTER = 3

SPEC = VenueSpec(
    name="okx",
    exchange_id=5,
    ws_url="wss://ws.okx.com:8443/ws/v5/public",
    rest_url="https://www.okx.com",
    # OKX closes a connection after 30 s without data; the keep-alive is the text `ping`,
    # answered by the text `pong`. Ping after 25 s of silence, give up 5 s later.
    heartbeat=Heartbeat(idle=25.0, timeout=5.0, ping=b"ping", pong=b"pong"),
    limits=Limits(
        # No documented cap of channels per connection; a request's args must stay under
        # 64 KB (100 args are about 5 KB).
        streams_per_connection=500,
        streams_per_request=100,
        # 480 subscribe/unsubscribe/login requests per hour per connection. The engine paces
        # by rate, not by hour: 2 a second keeps a burst of subscriptions short, and a
        # connection's requests over an hour (subscriptions, resyncs: 2 each) stay far below.
        requests_per_second=2.0,
        # 3 connection requests per second per IP: a bucket of 2 refilled at 1/s never lets
        # more than 3 start within a second
        budget=2,
        budget_per_second=1.0,
    ),
    channels=(
        Channel("trades", Kind.TRADE, "trades"),
        Channel("ticker", Kind.BBO, "tickers"),
        Channel("orderbook", Kind.BOOK_LEVEL, "books"),
        Channel("bbo-tbt", Kind.BBO, "bbo-tbt"),
        Channel("books5", Kind.BOOK_LEVEL, "books5"),
    ),
)

_instruments = msgspec.json.Decoder(OkxInstruments)
_books = msgspec.json.Decoder(OkxRestBooks, strict=False)
_encode = msgspec.json.Encoder().encode


def decimals(step: str) -> int:
    """Decimals of an increment such as "0.1" (-> 1), "0.00000001" (-> 8) or "1" (-> 0)."""
    try:
        exponent = Decimal(step).normalize().as_tuple().exponent
    except InvalidOperation:
        raise ValueError(f"not a decimal increment: {step!r}") from None
    return max(0, -exponent) if isinstance(exponent, int) else 0


def checksum_text(bids: list[Level], asks: list[Level]) -> str:
    """The checksummed string: `bidPx:bidSz:askPx:askSz:...` over the best 25 of each side,
    interleaved, a side's remaining levels alone once the other runs out."""
    parts: list[str] = []
    for i in range(max(len(bids), len(asks))):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    return ":".join(parts)


def checksum(bids: list[Level], asks: list[Level]) -> int:
    """OKX's signed 32-bit CRC32 of `checksum_text` (levels best first, at most 25 used)."""
    crc = zlib.crc32(checksum_text(bids[:CHECKSUM_DEPTH], asks[:CHECKSUM_DEPTH]).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class _Side:
    """One side's levels as the venue wrote them (`"price:size"`), best first: sort keys
    (-price for bids, price for asks) and texts in two aligned lists, so the best 25 are a
    slice."""

    __slots__ = ("keys", "texts")

    def __init__(self, levels: list[Level], sign: float) -> None:
        pairs = sorted((sign * float(lv[0]), f"{lv[0]}:{lv[1]}") for lv in levels if float(lv[1]))
        self.keys = [k for k, _ in pairs]
        self.texts = [t for _, t in pairs]

    def update(self, floats: list[tuple[float, float]], raw: list[Level], sign: float) -> None:
        keys, texts = self.keys, self.texts
        for (price, size), level in zip(floats, raw, strict=True):
            key = sign * price
            i = bisect_left(keys, key)
            found = i < len(keys) and keys[i] == key
            if size:
                if found:
                    texts[i] = level[0] + ":" + level[1]
                else:
                    keys.insert(i, key)
                    texts.insert(i, level[0] + ":" + level[1])
            elif found:
                del keys[i]
                del texts[i]


class _Texts:
    """The original text of one book's levels (see `_Side`)."""

    __slots__ = ("asks", "bids", "book")

    def __init__(self, book: Book, bids: list[Level], asks: list[Level]) -> None:
        self.book = book
        self.bids = _Side(bids, -1.0)
        self.asks = _Side(asks, 1.0)

    def checksum(self) -> int:
        b = self.bids.texts[:CHECKSUM_DEPTH]
        a = self.asks.texts[:CHECKSUM_DEPTH]
        n = min(len(b), len(a))
        parts = b[:n] + a[:n]
        parts[0::2] = b[:n]
        parts[1::2] = a[:n]
        parts += b[n:] or a[n:]
        crc = zlib.crc32(":".join(parts).encode())
        return crc - (1 << 32) if crc >= 1 << 31 else crc


class OkxBookRules:
    """`books`: a snapshot on subscribing (`prevSeqId` -1), then updates whose `prevSeqId` is
    the `seqId` of the message before. An update that names the book's id applies, including
    one with `prevSeqId == seqId` (no change: the venue's keep-alive) and one whose `seqId` is
    below its `prevSeqId` (the venue reset its ids after maintenance); one at or below the book's
    id that does not name it was delivered already (an overlapping connection); anything else
    means updates were lost. Recordings from before OKX added the ids carry neither (0 == 0).

    `verify` checks the CRC32 `checksum` of the best 25 levels of each side, computed over the
    levels' original text, whenever the message carries a non-zero one (0: none).

    REST fallback: `books` sends its snapshot right after the subscription's ack; a book that
    buffered `REST_FALLBACK_AFTER` updates without one takes its first book from `GET
    /api/v5/market/books` (see `engine.book`). That answer has no `seqId`, only `ts`, the
    book's generation time (ms), so `bridge_rest` bridges by time: an update with `ts` at or
    before the book's is in it already (dropped); the first later one applies whatever its
    `prevSeqId`, and from it the `prevSeqId` chain is followed as usual.
    What can go wrong: an update with the same `ts` as the REST book but not in it (the REST
    book is served from a cache refreshed every 50 ms, and `ts` has 1 ms resolution), or a REST
    book older than its `ts` says. Either leaves the book off by one update's levels, which
    the `seqId` chain cannot see. The checksum of the next update does: the REST book's level
    text is kept (`OkxBookSnapshot.rest`), so the first update carrying a non-zero checksum
    compares the whole top 25 and a mismatch writes a `CHECKSUM_MISMATCH` gap and resyncs.
    With checksum 0 (none) nothing catches it but a crossed book; a wrong level can then stay
    until it is overwritten or the book resyncs."""

    snapshot_from_rest = False
    rest_fallback_after: int | None = REST_FALLBACK_AFTER

    def __init__(self) -> None:
        self._texts: dict[int, _Texts] = {}  # id(book) -> its levels' text
        self.verified = 0  # checksums compared (all books of the worker)

    def bridge(self, snapshot_id: int, delta: Any) -> Verdict:
        return self.follow(snapshot_id, delta)

    def bridge_rest(self, snapshot: BookSnapshot, delta: Any, exch_ts: int) -> Verdict:
        """The REST book has no id: an update stamped at or before it is in it already."""
        return Verdict.DROP if exch_ts <= snapshot.exch_ts else Verdict.APPLY

    def follow(self, last_id: int, delta: Any) -> Verdict:
        if delta.prev_id == last_id:
            return Verdict.APPLY
        if delta.last_id <= last_id:
            return Verdict.DROP
        return Verdict.GAP

    def verify(self, book: Book, message: Any) -> bool:
        """Called by the book sync after each applied message. The levels' text is kept from
        a snapshot with a checksum on; a message with checksum 0 (none: OKX sends 0 since
        2025) stops it until the next snapshot, so books without checksums cost nothing."""
        key = id(book)
        expected = message.checksum if isinstance(message, OkxBookSnapshot | OkxBookDelta) else 0
        if isinstance(message, OkxBookSnapshot) and message.rest:
            # no checksum of its own: keep its text for the checksums of the updates after it
            if message.bid_text is not None and message.ask_text is not None:
                self._texts[key] = _Texts(book, message.bid_text, message.ask_text)
            return True
        if not expected:
            self._texts.pop(key, None)
            return True
        if isinstance(message, OkxBookSnapshot):
            if message.bid_text is None or message.ask_text is None:
                self._texts.pop(key, None)
                return True
            texts = self._texts[key] = _Texts(book, message.bid_text, message.ask_text)
        else:
            found = self._texts.get(key)
            if found is None or found.book is not book:
                return True  # no snapshot text to check against (see above)
            texts = found
            if message.bid_text:
                texts.bids.update(message.bids, message.bid_text, -1.0)
            if message.ask_text:
                texts.asks.update(message.asks, message.ask_text, 1.0)
        self.verified += 1
        return bool(texts.checksum() == expected)


class OkxVenue(Venue):
    spec = SPEC
    book_rules = OkxBookRules()

    def stream_name(self, channel: Channel, venue_symbol: str) -> str:
        return f"{channel.native}:{venue_symbol}"

    def connect_url(self, ws_url: str) -> str:
        return ws_url

    def requests(self, streams: Sequence[str], first_id: int, *, subscribe: bool) -> list[Request]:
        """`{"id":"7","op":"subscribe","args":[{"channel":..,"instId":..},..]}`, up to
        `streams_per_request` channels each. OKX answers each channel of a request on its own,
        echoing the request's `id`."""
        per = self.spec.limits.streams_per_request
        op = "subscribe" if subscribe else "unsubscribe"
        out: list[Request] = []
        for i in range(0, len(streams), per):
            chunk = tuple(streams[i : i + per])
            rid = first_id + len(out)
            args = []
            for name in chunk:
                channel, _, inst_id = name.partition(":")
                args.append({"channel": channel, "instId": inst_id})
            text = _encode({"id": str(rid), "op": op, "args": args})
            out.append(Request(rid, text, chunk, subscribe))
        return out

    def instruments_url(self, rest_url: str) -> str:
        return rest_url.rstrip("/") + INSTRUMENTS_PATH

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        answer = _instruments.decode(body)
        if answer.code != "0":
            raise VenueRejection("okx", answer.code, answer.msg or "instruments refused")
        out = []
        for inst in answer.data:
            if inst.instType != "SPOT":
                continue
            try:
                price, size = decimals(inst.tickSz), decimals(inst.lotSz)
            except ValueError:
                continue  # no exact decimals for it: leave it out rather than guess
            base, quote = inst.baseCcy, inst.quoteCcy
            if not (base and quote):
                base, _, quote = inst.instId.partition("-")
            out.append(Instrument(inst.instId, base, quote, price, size))
        return out

    def snapshot_url(self, rest_url: str, venue_symbol: str) -> str | None:
        return f"{rest_url.rstrip('/')}{BOOKS_PATH}?instId={venue_symbol}&sz={SNAPSHOT_DEPTH}"

    def parse_snapshot(self, body: bytes) -> BookSnapshot:
        answer = _books.decode(body)
        if answer.code != "0" or not answer.data:
            raise VenueRejection("okx", answer.code, answer.msg or "book refused")
        b = answer.data[0]
        # no update id (the REST book has no `seqId`): bridged by `ts`, see `OkxBookRules`
        return OkxBookSnapshot(
            0,
            floats(b.bids),
            floats(b.asks),
            b.ts * 1_000_000,
            bid_text=b.bids,
            ask_text=b.asks,
            rest=True,
        )

    def session(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> OkxSession:
        return OkxSession(routes, sink, events)

    def simulator(self, **options: Any) -> Any:
        from adapters.okx.simulator import OkxSim

        return OkxSim(**options)


VENUE = OkxVenue()
