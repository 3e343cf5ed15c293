"""Kraken v2 frames -> records, over the real captured frames, asserting exact values computed
independently (Decimals and the frames' own text) in the test."""

from __future__ import annotations

import datetime
import json
import zlib
from decimal import Decimal
from typing import Any

import pytest

from adapters.kraken import VENUE
from adapters.kraken.parse import (
    ACK_BITS,
    SEQ_BITS,
    checksum,
    decimals_in,
    level_text,
    timestamp_ns,
)
from engine.records import ASK, BID, Flag, GapReason, Kind, Side, format_decimal
from engine.streams import RouteTable, Stream, make_stream
from tests.support import FIXTURES, Events, ListSink, book_from_records, frames

KR = FIXTURES / "kraken"
BOOK = KR / "book_snapshot_and_updates_real_2026-07-19.jsonl"
RECV = 1_800_000_000_000_000_000
PRICE, SIZE = 1, 8  # BTC/USD: price precision 1, quantity precision 8 (as the frames print)


def session_for(subs: list[tuple[str, str, int]]):  # type: ignore[no-untyped-def]
    sink, events, routes = ListSink(exchange=VENUE.spec.exchange_id), Events(), RouteTable()
    requested: list[Stream] = []
    for channel, venue_symbol, sid in subs:
        ch = VENUE.spec.channel(channel)
        assert ch is not None
        routes.add(make_stream(VENUE, ch, venue_symbol, sid, sink, requested.append))
    return VENUE.session(routes, sink, events), sink, events, routes, requested


def ns(text: str) -> int:
    head, _, frac = text.rstrip("Z").partition(".")
    moment = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC)
    return int(moment.timestamp()) * 10**9 + int((frac + "0" * 9)[:9])


def dec(value: float, places: int) -> Decimal:
    return Decimal(format_decimal(value, places))


def text_json(frame: bytes) -> Any:
    """The frame with every number kept as its wire text."""
    return json.loads(frame, parse_float=str, parse_int=str)


# -- an independent book: wire text, Decimal order ---------------------------------------------


class TextBook:
    """Kraken's documented procedure on the wire text: apply every level, cut to the depth,
    CRC32 over the top 10 asks (low to high) then bids (high to low), each price then qty
    with the `.` and the leading zeros removed."""

    def __init__(self, depth: int = 10) -> None:
        self.depth = depth
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def apply(self, data: dict[str, Any], snapshot: bool) -> None:
        if snapshot:
            self.bids.clear()
            self.asks.clear()
        for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
            for lv in levels:
                if Decimal(lv["qty"]) == 0:
                    side.pop(Decimal(lv["price"]), None)
                else:
                    side[Decimal(lv["price"])] = (lv["price"], lv["qty"])
        for p in sorted(self.bids, reverse=True)[self.depth :]:
            del self.bids[p]
        for p in sorted(self.asks)[self.depth :]:
            del self.asks[p]

    def checksum(self) -> int:
        def t(s: str) -> str:
            return s.replace(".", "").lstrip("0")

        asks = [self.asks[p] for p in sorted(self.asks)[:10]]
        bids = [self.bids[p] for p in sorted(self.bids, reverse=True)[:10]]
        return zlib.crc32("".join(t(p) + t(q) for p, q in asks + bids).encode())

    def decimals(self) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        return (
            {p: Decimal(q) for p, (_, q) in self.bids.items()},
            {p: Decimal(q) for p, (_, q) in self.asks.items()},
        )


def as_decimals(side: dict[float, float]) -> dict[Decimal, Decimal]:
    return {dec(p, PRICE): dec(q, SIZE) for p, q in side.items()}


# -- book ---------------------------------------------------------------------------------------


def test_every_checksum_of_the_real_capture_matches_the_documented_algorithm() -> None:
    """The test's own reading of the spec agrees with all 41 frames (snapshot + 40 updates)."""
    book = TextBook()
    for frame in frames(BOOK):
        msg = text_json(frame)
        (data,) = msg["data"]
        book.apply(data, msg["type"] == "snapshot")
        assert book.checksum() == int(data["checksum"])
    assert len(frames(BOOK)) == 41


def test_the_real_capture_replays_with_every_checksum_verified_and_the_exact_final_book() -> None:
    session, sink, events, routes, requested = session_for([("orderbook", "BTC/USD", 3)])
    stream = routes.get("book:BTC/USD")
    sync = stream.book
    independent = TextBook()
    for i, frame in enumerate(frames(BOOK)):
        msg = text_json(frame)
        independent.apply(msg["data"][0], msg["type"] == "snapshot")
        exch = session.on_message(frame, RECV + i)
        assert exch == ns(msg["data"][0]["timestamp"])
        # after every message the engine's book is the venue's, cut to depth 10
        assert (as_decimals(sync.book.bids), as_decimals(sync.book.asks)) == independent.decimals()
    assert (sync.counters.snapshots, sync.counters.deltas, sync.counters.gaps) == (1, 40, 0)
    assert requested == [] and events.errors == [] and events.gaps == []
    assert session.precision == {"book:BTC/USD": (PRICE, SIZE)}
    # what readers rebuild from the records is the same final book
    bids, asks = book_from_records(sink.records, 3)
    assert (as_decimals(bids), as_decimals(asks)) == independent.decimals()
    assert len(bids) == len(asks) == 10
    assert sink.of(Kind.GAP) == []
    last = sink.records[-1]
    assert last.flags & Flag.LAST and last.ref == session.epoch | 41
    # the level texts kept message by message give the checksum made from scratch: the last
    # frame's
    texts = VENUE.book_rules.texts[sync.book]
    assert texts.checksum(sync.book) == checksum(sync.book, PRICE, SIZE) == 3061739456
    assert len(texts.bids) == len(texts.asks) == 10


def test_a_levels_text_is_the_venues_without_the_point_and_leading_zeros() -> None:
    assert level_text(64525.0, 0.000051, 1, 8) == "645250" + "5100"
    assert level_text(0.9998, 44620.68691883, 5, 8) == "99980" + "4462068691883"
    assert level_text(3.0, 120.0, 0, 0) == "3" + "120"
    # past 2**52 units a product may not round to the exact integer: the text is printed
    assert level_text(0.1, 5e15, 1, 1) == "1" + "50000000000000000"


def test_the_snapshot_publishes_the_ten_levels_of_each_side_exactly() -> None:
    session, sink, events, routes, _ = session_for([("orderbook", "BTC/USD", 3)])
    frame = frames(KR / "book_snapshot_real.jsonl")[0]
    session.on_message(frame, RECV)
    data = text_json(frame)["data"][0]
    begin, *levels, end = sink.records
    assert (begin.kind, end.kind, begin.aux, end.aux) == (
        Kind.SNAPSHOT_BEGIN,
        Kind.SNAPSHOT_END,
        20,
        20,
    )
    assert begin.exch_ts == ns("2026-07-19T17:54:39.753424Z") == 1784483679753424000
    got = [
        ("bid" if r.side == BID else "ask", dec(r.price, PRICE), dec(r.size, SIZE)) for r in levels
    ]
    want = [("bid", Decimal(lv["price"]), Decimal(lv["qty"])) for lv in data["bids"]] + [
        ("ask", Decimal(lv["price"]), Decimal(lv["qty"])) for lv in data["asks"]
    ]
    assert got == want
    assert got[0] == ("bid", Decimal("64525.0"), Decimal("0.53807066"))
    assert got[10] == ("ask", Decimal("64525.1"), Decimal("0.01077490"))
    assert all(r.flags == Flag.SNAPSHOT and r.ref == session.epoch | 1 for r in levels)
    assert routes.get("book:BTC/USD").book.book.best_bid() == 64525.0
    assert events.errors == []


def test_a_level_that_falls_out_of_range_is_removed_and_written_as_a_removal() -> None:
    """Update 1 inserts ask 64525.3: the 11th ask (64532.8) falls out of depth 10 without a
    `qty: 0` from the venue; update 2 removes 64525.3 and 64532.8 comes back as an insert."""
    session, sink, _, routes, _ = session_for([("orderbook", "BTC/USD", 3)])
    fs = frames(BOOK)
    session.on_message(fs[0], RECV)
    start = len(sink.records)
    session.on_message(fs[1], RECV)
    got = [(r.side, dec(r.price, PRICE), dec(r.size, SIZE)) for r in sink.records[start:]]
    assert got == [
        (ASK, Decimal("64525.3"), Decimal("0.00309336")),
        (ASK, Decimal("64532.8"), Decimal("0E-8")),
    ]
    assert sink.records[-1].flags & Flag.LAST
    asks = routes.get("book:BTC/USD").book.book.asks
    assert len(asks) == 10 and 64532.8 not in asks
    session.on_message(fs[2], RECV)
    assert len(asks) == 10 and asks[64532.8] == 1.23479983 and 64525.3 not in asks


def corrupt(frame: bytes, old: bytes, new: bytes) -> bytes:
    assert frame.count(old) == 1
    return frame.replace(old, new)


def snapshot_frame(book: TextBook, timestamp: str) -> bytes:
    """A fresh snapshot of the independent book, in the venue's shape (numbers as text)."""

    def levels(side: dict[Decimal, tuple[str, str]], reverse: bool) -> str:
        return ",".join(
            '{{"price":{},"qty":{}}}'.format(*side[p]) for p in sorted(side, reverse=reverse)
        )

    bids, asks = levels(book.bids, True), levels(book.asks, False)
    return (
        '{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
        f'"bids":[{bids}],"asks":[{asks}],"checksum":{book.checksum()},'
        f'"timestamp":"{timestamp}"}}]}}'
    ).encode()


def test_a_corrupted_level_is_one_mismatch_one_gap_and_one_resync() -> None:
    session, sink, events, routes, requested = session_for([("orderbook", "BTC/USD", 3)])
    stream = routes.get("book:BTC/USD")
    fs = frames(BOOK)
    independent = TextBook()
    for f in fs:
        msg = text_json(f)
        independent.apply(msg["data"][0], msg["type"] == "snapshot")
    # update 7 (bid 64523.2 inserted): a wrong quantity on the wire
    bad = corrupt(fs[7], b'"qty":0.77491443', b'"qty":0.77491444')
    for i, f in enumerate(fs):
        session.on_message(bad if i == 7 else f, RECV + i)
        if i == 6:
            assert stream.book.counters.gaps == 0
        if i == 7:
            assert stream.book.counters.gaps == 1 and requested == [stream]
    assert requested == [stream], "exactly one resync"
    (gap,) = sink.of(Kind.GAP)
    assert (gap.aux, gap.symbol, gap.recv_ts) == (GapReason.CHECKSUM_MISMATCH, 3, RECV + 7)
    assert gap.ref == session.epoch | 7, "the last good update's id"
    c = stream.book.counters
    assert (c.deltas, c.gaps, c.resyncs) == (6, 1, 1), "updates after it wait for the snapshot"
    # the resubscription's snapshot: the book is live again, exactly the venue's
    session.on_message(snapshot_frame(independent, "2026-07-19T17:54:41.000000Z"), RECV + 50)
    assert len(sink.of(Kind.SNAPSHOT_BEGIN)) == 2
    assert sink.of(Kind.GAP)[0].seq < sink.of(Kind.SNAPSHOT_BEGIN)[1].seq
    bids, asks = book_from_records(sink.records, 3)
    assert (as_decimals(bids), as_decimals(asks)) == independent.decimals()
    assert requested == [stream] and events.errors == []


def test_a_lost_update_is_caught_by_the_next_checksum() -> None:
    session, sink, _, routes, requested = session_for([("orderbook", "BTC/USD", 3)])
    fs = frames(BOOK)
    for i, f in enumerate(fs[:12]):
        if i != 5:  # update 5 (ask 64530.2 inserted) never arrives
            session.on_message(f, RECV + i)
    (gap,) = sink.of(Kind.GAP)
    assert gap.aux == GapReason.CHECKSUM_MISMATCH and gap.recv_ts == RECV + 6
    assert requested == [routes.get("book:BTC/USD")]


def test_precision_comes_from_the_text_of_the_levels() -> None:
    assert decimals_in(frames(KR / "book_snapshot_real.jsonl")[0]) == (1, 8)
    assert decimals_in(b'{"bids":[{"price":0.99980,"qty":44620.68691883}]}') == (5, 8)
    assert decimals_in(b'{"bids":[{"price":120,"qty":3}]}') == (0, 0)
    assert decimals_in(b'{"bids":[],"asks":[]}') is None


# -- trades and tickers -------------------------------------------------------------------------

TRADES = [("trades", "BTC/USD", 1), ("trades", "MATIC/USD", 2)]


@pytest.mark.parametrize("name", ["trade_observed.jsonl", "trade_doc.jsonl"])
def test_a_trade_snapshot_sets_where_the_stream_starts_and_backfills_on_resubscription(
    name: str,
) -> None:
    (frame,) = frames(KR / name)
    trades = json.loads(frame)["data"]
    session, sink, events, routes, _ = session_for(TRADES)
    session.on_message(frame, RECV)
    assert sink.records == [], "history from before the subscription is not written"
    stream = routes.get(f"trade:{trades[0]['symbol']}")
    assert stream.last_id == trades[-1]["trade_id"]
    stream.last_id = trades[0]["trade_id"]  # a resubscription after the first was delivered
    session.on_message(frame, RECV)
    (r,) = sink.records
    assert r.ref == trades[1]["trade_id"] and events.errors == []


def test_trade_updates_give_exact_trades_with_the_takers_side() -> None:
    (frame,) = frames(KR / "trade_observed.jsonl")
    update = frame.replace(b'"type":"snapshot"', b'"type":"update"')
    session, sink, events, _, _ = session_for(TRADES)
    exch = session.on_message(update, RECV)
    a, b = sink.records
    assert (a.kind, a.side, a.flags, a.symbol, a.ref) == (
        Kind.TRADE,
        Side.SELL,
        Flag.LAST,
        1,
        70635251,
    )
    assert (dec(a.price, PRICE), dec(a.size, SIZE)) == (Decimal("68466.9"), Decimal("0.01919415"))
    assert a.exch_ts == ns("2024-05-27T12:33:10.826003Z") == 1716813190826003000
    assert (b.side, b.ref, dec(b.price, PRICE), dec(b.size, SIZE)) == (
        Side.BUY,
        70635252,
        Decimal("68471.2"),
        Decimal("0.00007723"),
    )
    assert exch == b.exch_ts == ns("2024-05-27T12:33:10.980704Z")
    assert a.recv_ts == b.recv_ts == RECV and events.errors == []
    # an overlapping connection (rollover) delivers them again: nothing twice
    VENUE.session(session.routes, sink, events).on_message(update, RECV)
    assert len(sink.records) == 2


TICKERS = frames(KR / "ticker_observed.jsonl")


@pytest.mark.parametrize("frame", TICKERS, ids=["2026_snapshot", "2024_snapshot", "2024_update"])
def test_ticker_frames_become_exact_bbo_records(frame: bytes) -> None:
    session, sink, events, _, _ = session_for([("ticker", "BTC/USD", 1), ("ticker", "USDT/USD", 2)])
    exch = session.on_message(frame, RECV)
    t = text_json(frame)["data"][0]
    (r,) = sink.records
    places = 5 if t["symbol"] == "USDT/USD" else PRICE
    assert r.kind == Kind.BBO and r.flags == Flag.LAST
    assert r.symbol == {"BTC/USD": 1, "USDT/USD": 2}[t["symbol"]]
    assert (dec(r.price, places), dec(r.size, SIZE)) == (Decimal(t["bid"]), Decimal(t["bid_qty"]))
    assert (dec(r.ask_price, places), dec(r.ask_size, SIZE)) == (
        Decimal(t["ask"]),
        Decimal(t["ask_qty"]),
    )
    assert exch == r.exch_ts == (ns(t["timestamp"]) if "timestamp" in t else 0)
    assert events.errors == []


def test_the_2026_ticker_values() -> None:
    session, sink, _, _, _ = session_for([("ticker", "USDT/USD", 2)])
    session.on_message(TICKERS[0], RECV)
    (r,) = sink.records
    assert (r.price, r.size, r.ask_price, r.ask_size) == (
        0.9998,
        44620.68691883,
        0.99981,
        1087605.70466858,
    )
    assert r.exch_ts == 1790222058054886000  # 2026-09-24T03:54:18.054886Z


# -- control ------------------------------------------------------------------------------------


def test_observed_acks_errors_pongs_heartbeats_and_status() -> None:
    session, sink, events, _, _ = session_for(TRADES)
    for f in frames(KR / "subscribe_ack_observed.jsonl"):
        session.on_message(f, RECV)
    assert events.acks == [(None, True, None, "")] * 3  # no req_id: the oldest request
    (err,) = frames(KR / "error_observed.jsonl")
    session.on_message(err, RECV)
    assert events.acks[-1] == (None, False, None, "Currency pair not supported NOPE/USD")
    _ping, pong = frames(KR / "ping_pong.jsonl")
    session.on_message(pong, RECV)
    assert events.pongs == 1
    for f in frames(KR / "heartbeat.jsonl") + frames(KR / "status_observed.jsonl"):
        assert session.on_message(f, RECV) == 0
    assert events.notices == [] and sink.records == [] and events.errors == []


def test_a_status_other_than_online_is_a_notice() -> None:
    session, _, events, _, _ = session_for(TRADES)
    (f, _) = frames(KR / "status_observed.jsonl")
    session.on_message(f.replace(b'"online"', b'"maintenance"'), RECV)
    assert events.notices == [("status", "system maintenance")]


def ack(req_id: int, symbol: str, ok: bool = True) -> bytes:
    if ok:
        return (
            '{"method":"subscribe","result":{"channel":"trade","snapshot":true,'
            f'"symbol":"{symbol}"}},"success":true,"time_in":"2026-07-20T21:04:03.811983Z",'
            f'"time_out":"2026-07-20T21:04:03.812018Z","req_id":{req_id}}}'
        ).encode()
    return (
        f'{{"error":"Currency pair not supported {symbol}","method":"subscribe",'
        f'"success":false,"symbol":"{symbol}","time_in":"2026-09-24T03:54:32.996743Z",'
        f'"time_out":"2026-09-24T03:54:32.996775Z","req_id":{req_id}}}'
    ).encode()


def test_requests_carry_their_pair_count_and_are_acked_once_every_pair_answered() -> None:
    names = ["trade:BTC/USD", "trade:ETH/USD", "book:BTC/USD"]
    reqs = VENUE.requests(names, 40, subscribe=True)
    assert [json.loads(r.text) for r in reqs] == [
        {
            "method": "subscribe",
            "params": {"channel": "trade", "symbol": ["BTC/USD", "ETH/USD"], "snapshot": True},
            "req_id": 40 << ACK_BITS | 2,
        },
        {
            "method": "subscribe",
            "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10, "snapshot": True},
            "req_id": 41 << ACK_BITS | 1,
        },
    ]
    assert [(r.id, r.streams) for r in reqs] == [
        (40, ("trade:BTC/USD", "trade:ETH/USD")),
        (41, ("book:BTC/USD",)),
    ]
    (ticker,) = VENUE.requests(["ticker:BTC/USD"], 45, subscribe=True)
    assert json.loads(ticker.text)["params"] == {
        "channel": "ticker",
        "symbol": ["BTC/USD"],
        "event_trigger": "bbo",  # every change of the best bid or offer, not only trades
        "snapshot": True,
    }
    (unsub,) = VENUE.requests(["trade:BTC/USD"], 50, subscribe=False)
    assert json.loads(unsub.text) == {
        "method": "unsubscribe",
        "params": {"channel": "trade", "symbol": ["BTC/USD"]},
        "req_id": 50 << ACK_BITS | 1,
    }
    session, _, events, _, _ = session_for(TRADES)
    session.on_message(ack(40 << ACK_BITS | 2, "BTC/USD"), RECV)
    assert events.acks == [], "one pair of two answered"
    session.on_message(ack(40 << ACK_BITS | 2, "ETH/USD"), RECV)
    assert events.acks == [(40, True, None, "")]
    # a refusal of one pair refuses the request once, with the venue's text
    session.on_message(ack(42 << ACK_BITS | 2, "NOPE/USD", ok=False), RECV)
    session.on_message(ack(42 << ACK_BITS | 2, "BTC/USD"), RECV)
    assert events.acks[1:] == [(42, False, None, "Currency pair not supported NOPE/USD")]
    assert session.answers == {42 << ACK_BITS | 2: -1}


def test_requests_stay_within_the_pairs_per_message_limit() -> None:
    names = [f"ticker:S{i:04d}/USD" for i in range(120)]
    reqs = VENUE.requests(names, 1, subscribe=True)
    assert [len(r.streams) for r in reqs] == [50, 50, 20]
    assert [json.loads(r.text)["req_id"] & ((1 << ACK_BITS) - 1) for r in reqs] == [50, 50, 20]


BAD = [
    (b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD"', "unknown"),
    (b'{"channel":"trade","type":"update","data":"\xff\xfe"}', "trade"),
    (b'{"channel":"mystery","type":"update","data":[]}', "unknown_channel"),
    (
        b'{"channel":"trade","type":"update","data":[{"symbol":1,"side":[],"price":{},'
        b'"qty":null,"ord_type":2,"trade_id":"x","timestamp":3}]}',
        "trade",
    ),
    (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD"}]}', "book"),
    (b"[1,2,3]", "unknown"),
    (b'{"something":"else"}', "control"),
]


@pytest.mark.parametrize(("payload", "channel"), BAD)
def test_bad_frames_are_counted_and_skipped(payload: bytes, channel: str) -> None:
    session, sink, events, _, _ = session_for([*TRADES, ("orderbook", "BTC/USD", 1)])
    assert session.on_message(payload, RECV) == 0
    assert [c for c, _ in events.errors] == [channel]
    assert sink.records == []


def test_frames_of_streams_we_left_are_ignored_but_unknown_streams_are_counted() -> None:
    session, sink, events, routes, _ = session_for(TRADES)
    update = frames(KR / "trade_observed.jsonl")[0].replace(b"snapshot", b"update")
    routes.remove("trade:BTC/USD")
    session.routes_changed()
    session.on_message(update, RECV)
    assert sink.records == [] and events.errors == []
    session.on_message(frames(KR / "ticker_observed.jsonl")[1], RECV)
    assert events.errors == [("unknown_stream", "frame of stream 'ticker:BTC/USD'")]


def test_a_newer_connection_takes_the_book_over_without_a_gap_or_a_second_snapshot() -> None:
    old, sink, _, routes, requested = session_for([("orderbook", "BTC/USD", 3)])
    fs = frames(BOOK)
    for f in fs[:10]:
        old.on_message(f, RECV)
    new = VENUE.session(routes, sink, old.events)
    assert new.epoch > old.epoch
    independent = TextBook()
    for f in fs[:21]:
        msg = text_json(f)
        independent.apply(msg["data"][0], msg["type"] == "snapshot")
    for f in fs[10:21]:
        old.on_message(f, RECV)
    new.on_message(snapshot_frame(independent, "2026-07-19T17:54:41.000000Z"), RECV)
    old.on_message(fs[21], RECV)  # the old connection's late update: dropped
    assert len(sink.of(Kind.SNAPSHOT_BEGIN)) == 1 and sink.of(Kind.GAP) == []
    assert routes.get("book:BTC/USD").book.counters.dropped == 1 and requested == []
    bids, asks = book_from_records(sink.records, 3)
    assert (as_decimals(bids), as_decimals(asks)) == independent.decimals()


# -- instruments and symbols --------------------------------------------------------------------

# The shape of GET /0/public/AssetPairs as the docs describe it (fields we use, others omitted);
# the values are BTC/USD's and a dark pool pair's (no `wsname`).
ASSET_PAIRS = json.dumps(
    {
        "error": [],
        "result": {
            "XXBTZUSD": {
                "altname": "XBTUSD",
                "wsname": "XBT/USD",
                "aclass_base": "currency",
                "base": "XXBT",
                "aclass_quote": "currency",
                "quote": "ZUSD",
                "lot": "unit",
                "cost_decimals": 5,
                "pair_decimals": 1,
                "lot_decimals": 8,
                "lot_multiplier": 1,
                "status": "online",
            },
            "ETHXBT": {
                "altname": "ETHXBT",
                "wsname": "ETH/XBT",
                "base": "XETH",
                "quote": "XXBT",
                "pair_decimals": 5,
                "lot_decimals": 8,
            },
            "XXBTZUSD.d": {"altname": "XBTUSD.d", "base": "XXBT", "quote": "ZUSD"},
        },
    }
).encode()


def test_asset_pairs_become_instruments_with_the_v2_names() -> None:
    assert VENUE.instruments_url("https://api.kraken.com/") == (
        "https://api.kraken.com/0/public/AssetPairs"
    )
    insts = VENUE.parse_instruments(ASSET_PAIRS)
    assert [(i.venue_symbol, i.symbol, i.price_decimals, i.size_decimals) for i in insts] == [
        ("BTC/USD", "BTC-USD", 1, 8),
        ("ETH/BTC", "ETH-BTC", 5, 8),
    ]


def test_an_asset_pairs_error_is_a_rejection() -> None:
    from engine.errors import VenueRejection

    with pytest.raises(VenueRejection, match="EGeneral:Too many requests"):
        VENUE.parse_instruments(b'{"error":["EGeneral:Too many requests"]}')


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("BTC/USD", "BTC-USD"),
        ("xbt/usd", "BTC-USD"),
        ("eth-xbt", "ETH-BTC"),
        ("USDT/USD", "USDT-USD"),
    ],
)
def test_symbols_are_normalized_with_bitcoin_as_btc(text: str, want: str) -> None:
    assert VENUE.normalize_symbol(text) == want


def test_spec() -> None:
    spec = VENUE.spec
    assert (spec.name, spec.exchange_id, spec.ws_url) == ("kraken", 4, "wss://ws.kraken.com/v2")
    assert spec.heartbeat.ping == b'{"method":"ping"}'
    assert [c.native for c in spec.channels] == ["trade", "ticker", "book"]
    assert VENUE.book_rules.snapshot_from_rest is False
    assert SEQ_BITS == 40 and timestamp_ns("not a time") == 0
