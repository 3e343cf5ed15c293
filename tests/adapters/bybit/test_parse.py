"""Bybit v5 frames -> records, over the real captured frames (spot and linear), asserting exact
values computed independently (Decimals) from the frame text."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from adapters.bybit import LINEAR_VENUE, VENUE
from adapters.bybit.venue import BybitVenue, decimals
from engine.errors import VenueRejection
from engine.records import BID, Flag, GapReason, Kind, Side, format_decimal
from engine.streams import RouteTable, Stream, make_stream
from engine.symbols import Market
from tests.support import FIXTURES, Events, ListSink, book_from_records, capture, frames

BY = FIXTURES / "bybit"
RECV = 1_800_000_000_000_000_000
MS = 1_000_000
PLACES = 8  # more than any price or size in the captures has: exact either way
VENUES = {"spot": VENUE, "linear": LINEAR_VENUE}
CAPTURES = {
    "spot": BY / "spot" / "capture_spot_2026-08-09.jsonl",
    "linear": BY / "linear" / "capture_linear_2026-08-09.jsonl",
}
SYMBOLS = {"BTCUSDT": 1, "ETHUSDT": 2, "SOLUSDT": 3, "DOGEUSDT": 4}


def session_for(venue: BybitVenue, subs: list[tuple[str, str, int]]):  # type: ignore[no-untyped-def]
    sink, events, routes = ListSink(exchange=venue.spec.exchange_id), Events(), RouteTable()
    requested: list[Stream] = []
    for channel, venue_symbol, sid in subs:
        ch = venue.spec.channel(channel)
        assert ch is not None
        routes.add(make_stream(venue, ch, venue_symbol, sid, sink, requested.append))
    return venue.session(routes, sink, events), sink, events, routes, requested


def dec(value: float) -> Decimal:
    return Decimal(format_decimal(value, PLACES))


def every(channel: str) -> list[tuple[str, str, int]]:
    return [(channel, s, i) for s, i in SYMBOLS.items()]


# -- trades -------------------------------------------------------------------------------------


def test_a_spot_trade_frame_gives_its_exact_trade_with_the_numeric_id() -> None:
    session, sink, events, routes, _ = session_for(VENUE, every("trades"))
    exch = session.on_message(frames(BY / "spot" / "public_trade_real.jsonl")[0], RECV)
    (r,) = sink.records
    assert exch == r.exch_ts == 1786310821917 * MS
    assert (r.kind, r.side, r.flags, r.symbol, r.ref) == (
        Kind.TRADE,
        Side.SELL,
        Flag.LAST,
        2,
        2280000001739247417,
    )
    assert (dec(r.price), dec(r.size)) == (Decimal("1923.28"), Decimal("0.04537"))
    assert r.recv_ts == RECV and routes.get("publicTrade.ETHUSDT").count == 1
    assert events.errors == [] and events.gaps == []


def test_a_linear_trade_frame_with_five_fills_gives_five_records_with_trade_id_zero() -> None:
    session, sink, events, _, _ = session_for(LINEAR_VENUE, every("trades"))
    frame = frames(BY / "linear" / "public_trade_real.jsonl")[1]
    exch = session.on_message(frame, RECV)
    assert exch == 1786310820346 * MS
    assert [(r.symbol, r.side, r.ref, dec(r.price), dec(r.size)) for r in sink.records] == [
        (2, Side.BUY, 0, Decimal("1922.50"), Decimal(v))
        for v in ("0.01", "1.30", "0.10", "0.10", "0.16")
    ]
    assert all(r.flags == Flag.LAST for r in sink.records) and events.errors == []


def trade_cases() -> list[tuple[str, bytes]]:
    return [
        (category, f)
        for category in VENUES
        for f in frames(BY / category / "public_trade_real.jsonl")
    ]


@pytest.mark.parametrize(("category", "frame"), trade_cases())
def test_every_real_trade_frame_gives_exact_trades(category: str, frame: bytes) -> None:
    session, sink, events, _, _ = session_for(VENUES[category], every("trades"))
    msg = json.loads(frame)
    session.on_message(frame, RECV)
    assert len(sink.records) == len(msg["data"])
    for r, t in zip(sink.records, msg["data"]):
        assert r.symbol == SYMBOLS[t["s"]] and r.exch_ts == t["T"] * MS
        assert r.side == {"Buy": Side.BUY, "Sell": Side.SELL}[t["S"]]
        assert (dec(r.price), dec(r.size)) == (Decimal(t["p"]), Decimal(t["v"]))
        assert r.ref == (int(t["i"]) if category == "spot" else 0)
    assert events.errors == []


def test_spot_trades_delivered_by_two_connections_are_written_once() -> None:
    a, sink, events, routes, _ = session_for(VENUE, every("trades"))
    b = VENUE.session(routes, sink, events)  # an overlapping connection
    trades = frames(BY / "spot" / "public_trade_real.jsonl")
    for f in trades:
        a.on_message(f, RECV)
        b.on_message(f, RECV)
    want = [int(t["i"]) for f in trades for t in json.loads(f)["data"]]
    assert [r.ref for r in sink.records] == want and len(want) == len(set(want)) == 17


# -- books --------------------------------------------------------------------------------------


@pytest.mark.parametrize("category", list(VENUES))
def test_the_snapshot_frame_publishes_the_whole_book_exactly(category: str) -> None:
    session, sink, events, routes, _ = session_for(VENUES[category], every("orderbook"))
    (frame,) = frames(BY / category / "orderbook_snapshot_real.jsonl")
    msg = json.loads(frame)
    exch = session.on_message(frame, RECV)
    assert exch == msg["cts"] * MS  # the matching engine's time, not `ts`
    begin, *levels, end = sink.records
    assert (begin.kind, end.kind) == (Kind.SNAPSHOT_BEGIN, Kind.SNAPSHOT_END)
    assert begin.aux == end.aux == len(levels) == 400
    assert begin.ref == end.ref == msg["data"]["u"]
    want = {("b", Decimal(p)): Decimal(q) for p, q in msg["data"]["b"]}
    want |= {("a", Decimal(p)): Decimal(q) for p, q in msg["data"]["a"]}
    got = {("b" if r.side == BID else "a", dec(r.price)): dec(r.size) for r in levels}
    assert got == want
    sync = routes.get("orderbook.200.BTCUSDT").book
    assert sync.last_id == msg["data"]["u"]
    assert (Decimal(str(sync.book.best_bid())), Decimal(str(sync.book.best_ask()))) == (
        Decimal(msg["data"]["b"][0][0]),
        Decimal(msg["data"]["a"][0][0]),
    )
    assert events.errors == [] and events.gaps == []


@pytest.mark.parametrize("category", list(VENUES))
def test_real_deltas_after_the_snapshot_give_exact_levels(category: str) -> None:
    session, sink, _, routes, _ = session_for(VENUES[category], every("orderbook"))
    session.on_message(frames(BY / category / "orderbook_snapshot_real.jsonl")[0], RECV)
    start = len(sink.records)
    deltas = frames(BY / category / "orderbook_delta_real.jsonl")
    exchs = [session.on_message(f, RECV) for f in deltas]
    msgs = [json.loads(f) for f in deltas]
    assert exchs == [m["cts"] * MS for m in msgs]  # the matching engine's time
    want = [
        (side, Decimal(p), Decimal(q), m["data"]["u"])
        for m in msgs
        for side in ("b", "a")
        for p, q in m["data"][side]
    ]
    got = [
        ("b" if r.side == BID else "a", dec(r.price), dec(r.size), r.ref)
        for r in sink.records[start:]
    ]
    assert got == want
    lasts = [r for r in sink.records[start:] if r.flags & Flag.LAST]
    assert len(lasts) == len(deltas) == routes.get("orderbook.200.BTCUSDT").book.counters.deltas


def _independent_replay(category: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Each captured book's final state, and the trades, straight from the text."""
    books: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
    trades: dict[str, list[tuple[Decimal, Decimal]]] = {}
    n = 0
    for line in capture(CAPTURES[category]):
        if line["dir"] != "recv":
            continue
        msg = json.loads(line["raw"])
        topic = msg.get("topic", "")
        if topic.startswith("orderbook.200."):
            d = msg["data"]
            if msg["type"] == "snapshot":
                books[d["s"]] = {"b": {}, "a": {}}
            for side in ("b", "a"):
                for p, q in d[side]:
                    if Decimal(q) == 0:
                        books[d["s"]][side].pop(Decimal(p), None)
                    else:
                        books[d["s"]][side][Decimal(p)] = Decimal(q)
        elif topic.startswith("publicTrade."):
            for t in msg["data"]:
                trades.setdefault(t["s"], []).append((Decimal(t["p"]), Decimal(t["v"])))
                n += 1
    return books, trades, n


@pytest.mark.parametrize(
    ("category", "books", "deltas", "acks", "unrouted"),
    [("spot", 2, 548, 7, 81 + 25), ("linear", 4, 1594, 17, 758 + 71)],
)
def test_replaying_the_recorded_session_rebuilds_every_book_with_zero_false_gaps(
    category: str, books: int, deltas: int, acks: int, unrouted: int
) -> None:
    venue = VENUES[category]
    session, sink, events, routes, requested = session_for(
        venue, every("orderbook") + every("trades")
    )
    for line in capture(CAPTURES[category]):
        if line["dir"] == "recv":
            session.on_message(line["raw"].encode(), int(line["ts"] * 1e9))
    assert events.gaps == [] and sink.of(Kind.GAP) == [] and requested == []
    # tickers and kline topics were subscribed by the recorder, not by us
    assert [ch for ch, _ in events.errors] == ["unknown_stream"] * unrouted
    assert len(events.acks) == acks and all(a[:2] == (None, True) for a in events.acks)
    want_books, want_trades, n_trades = _independent_replay(category)
    assert len(want_books) == books
    total = 0
    for symbol, want in want_books.items():
        sid = SYMBOLS[symbol]
        bids, asks = book_from_records(sink.records, sid)
        assert {dec(p): dec(q) for p, q in bids.items()} == want["b"]
        assert {dec(p): dec(q) for p, q in asks.items()} == want["a"]
        sync = routes.get(f"orderbook.200.{symbol}").book
        assert (sync.book.bids, sync.book.asks) == (bids, asks)
        assert sync.counters.snapshots == 1 and sync.counters.dropped == 0
        total += sync.counters.deltas
    assert total == deltas
    got = {
        s: [(dec(r.price), dec(r.size)) for r in sink.of(Kind.TRADE) if r.symbol == sid]
        for s, sid in SYMBOLS.items()
    }
    assert {s: t for s, t in got.items() if t} == want_trades
    assert len(sink.of(Kind.TRADE)) == n_trades


def _book_frame(category: str, kind: str, u: int, bids: Any, asks: Any, topic: str = "") -> bytes:
    """A real frame of the capture with its type, `u` and levels replaced."""
    name = "orderbook_snapshot_real" if kind == "snapshot" else "orderbook_delta_real"
    msg = json.loads(frames(BY / category / f"{name}.jsonl")[0])
    msg["type"] = kind
    msg["data"].update(u=u, b=bids, a=asks)
    if topic:
        msg["topic"] = topic
    return json.dumps(msg).encode()


@pytest.mark.parametrize("category", list(VENUES))
def test_a_u1_snapshot_mid_stream_overwrites_the_book_without_a_gap(category: str) -> None:
    session, sink, events, routes, requested = session_for(VENUES[category], every("orderbook"))
    session.on_message(frames(BY / category / "orderbook_snapshot_real.jsonl")[0], RECV)
    for f in frames(BY / category / "orderbook_delta_real.jsonl")[:5]:
        session.on_message(f, RECV)
    sync = routes.get("orderbook.200.BTCUSDT").book
    before = sync.last_id
    start = len(sink.records)
    # the service restarted: `u` starts again at 1 with a fresh snapshot
    restart = _book_frame(category, "snapshot", 1, [["100.5", "2"], ["100", "1"]], [["101", "3"]])
    session.on_message(restart, RECV)
    session.on_message(_book_frame(category, "delta", 2, [["100.5", "0"]], [["102", "4"]]), RECV)
    session.on_message(_book_frame(category, "delta", 3, [], [["101", "1.5"]]), RECV)
    written = sink.records[start:]
    assert {Kind(r.kind) for r in written} == {Kind.BOOK_LEVEL}, "no gap, no second snapshot"
    assert events.gaps == [] and requested == [] and events.errors == []
    assert (sync.book.bids, sync.book.asks) == ({100.0: 1.0}, {101.0: 1.5, 102.0: 4.0})
    assert book_from_records(sink.records, 1) == (sync.book.bids, sync.book.asks)
    assert sync.last_id == before + 3 and session.offsets == {"orderbook.200.BTCUSDT": before}
    assert [r.ref for r in written if r.flags & Flag.LAST] == [before + 1, before + 2, before + 3]
    # continuity still holds after the restart: u=5 after u=3 is a gap
    session.on_message(_book_frame(category, "delta", 5, [], [["103", "1"]]), RECV)
    assert [r.aux for r in sink.of(Kind.GAP)] == [GapReason.SEQUENCE_GAP]
    assert requested == [routes.get("orderbook.200.BTCUSDT")]


def test_a_skipped_u_is_a_gap_and_an_old_delta_is_dropped() -> None:
    session, sink, _, routes, requested = session_for(VENUE, every("orderbook"))
    session.on_message(frames(BY / "spot" / "orderbook_snapshot_real.jsonl")[0], RECV)
    deltas = frames(BY / "spot" / "orderbook_delta_real.jsonl")
    session.on_message(deltas[0], RECV)
    session.on_message(deltas[0], RECV)  # again: an overlapping connection's
    sync = routes.get("orderbook.200.BTCUSDT").book
    assert sync.counters.dropped == 1 and sink.of(Kind.GAP) == []
    session.on_message(deltas[2], RECV)  # deltas[1] was lost
    (gap,) = sink.of(Kind.GAP)
    assert (gap.ref, gap.aux) == (json.loads(deltas[0])["data"]["u"], GapReason.SEQUENCE_GAP)
    assert requested == [routes.get("orderbook.200.BTCUSDT")] and sync.awaiting


def test_orderbook_1_is_the_best_bid_and_offer() -> None:
    session, sink, events, routes, _ = session_for(VENUE, every("ticker"))
    topic = "orderbook.1.BTCUSDT"
    snap = _book_frame(
        "spot", "snapshot", 7, [["65140.4", "0.885797"]], [["65140.5", "0.3"]], topic
    )
    session.on_message(snap, RECV)
    session.on_message(snap, RECV)  # the 3-second re-send with the same u: nothing new
    session.on_message(_book_frame("spot", "snapshot", 8, [["65140.3", "1"]], [], topic), RECV)
    session.on_message(_book_frame("spot", "snapshot", 1, [["9", "1"]], [["10", "2"]], topic), RECV)
    got = [
        (r.kind, r.symbol, dec(r.price), dec(r.size), dec(r.ask_price), dec(r.ask_size))
        for r in sink.records
    ]
    assert got == [
        (Kind.BBO, 1, Decimal("65140.4"), Decimal("0.885797"), Decimal("65140.5"), Decimal("0.3")),
        (Kind.BBO, 1, Decimal("65140.3"), Decimal(1), Decimal(0), Decimal(0)),
        (Kind.BBO, 1, Decimal(9), Decimal(1), Decimal(10), Decimal(2)),  # u=1: a restart
    ]
    assert sink.records[0].exch_ts == json.loads(snap)["cts"] * MS
    assert routes.get(topic).last_id == 1 and events.errors == []


# -- control ------------------------------------------------------------------------------------


@pytest.mark.parametrize("category", list(VENUES))
def test_real_acks_answer_the_oldest_request(category: str) -> None:
    session, sink, events, _, _ = session_for(VENUES[category], every("trades"))
    for f in frames(BY / category / "subscribe_ack_real.jsonl"):
        session.on_message(f, RECV)
    text = "subscribe" if category == "spot" else ""
    assert events.acks == [(None, True, None, text)] * 3 and sink.records == []


def test_documented_acks_and_observed_errors_carry_req_id_and_ret_msg() -> None:
    session, _, events, _, _ = session_for(VENUE, every("trades"))
    for f in frames(BY / "subscribe_ack_doc.jsonl") + frames(BY / "error_observed.jsonl"):
        session.on_message(f, RECV)
    assert events.acks == [
        (10001, True, None, "subscribe"),
        (None, True, None, ""),
        (None, False, None, "error:handler not found,topic:liquidations:BTCUSDT"),
        (None, False, None, "error:handler not found,topic:getOrderBook.1.BTCUSDT"),
    ]
    assert events.errors == []


def test_every_documented_pong_is_a_pong() -> None:
    session, _, events, _, _ = session_for(VENUE, every("trades"))
    ping, *pongs = frames(BY / "ping_pong_doc.jsonl")
    assert json.loads(ping) == {"req_id": "100001", "op": "ping"}
    for f in pongs:
        session.on_message(f, RECV)
    assert events.pongs == 3 and events.acks == [] and events.errors == []


@pytest.mark.parametrize(
    ("payload", "channel", "detail"),
    [
        (
            b'{"topic":"publicTrade.BTCUSDT","ts":1,"type":"snapshot","data":[{"T":"x"}]}',
            "publicTrade",
            "Expected `int`, got `str` - at `$[0].T` (in `data`)",
        ),
        (b'{"topic":"publicTrade.BTCUSDT","ts":1,"data":[{"T":', "unknown", "truncated"),
        (b'\xff\xfe{"topic"', "unknown", "invalid"),
        (b'{"topic":"kline.1.BTCUSDT","data":[]}', "unknown_stream", "kline.1.BTCUSDT"),
        (b'{"unexpected":true}', "control", "unrecognised"),
        (b'{"success":false,"ret_msg":"bad op","op":"auth"}', "control", "bad op"),
        (b"[1,2,3]", "unknown", "Expected `object`"),
    ],
)
def test_bad_frames_are_counted_and_skipped(payload: bytes, channel: str, detail: str) -> None:
    session, sink, events, _, _ = session_for(VENUE, every("trades"))
    assert session.on_message(payload, RECV) == 0
    (err,) = events.errors
    assert err[0] == channel
    assert detail.lower() in err[1].lower()
    assert sink.records == [] and events.gaps == []
    session.on_message(frames(BY / "spot" / "public_trade_real.jsonl")[1], RECV)
    assert len(sink.records) == 1, "the session keeps working after a bad frame"


def test_frames_of_topics_we_left_are_ignored_but_unknown_topics_are_counted() -> None:
    session, sink, events, routes, _ = session_for(VENUE, every("trades"))
    routes.remove("publicTrade.ETHUSDT")
    session.routes_changed()
    session.on_message(frames(BY / "spot" / "public_trade_real.jsonl")[0], RECV)
    assert sink.records == [] and events.errors == []
    session.on_message(frames(BY / "spot" / "tickers_real.jsonl")[0], RECV)
    assert events.errors == [("unknown_stream", "frame of topic 'tickers.BTCUSDT'")]


# -- requests and instruments -------------------------------------------------------------------


def test_requests_carry_at_most_ten_args_and_our_req_id() -> None:
    names = [f"publicTrade.S{i}USDT" for i in range(23)]
    reqs = VENUE.requests(names, 40, subscribe=True)
    assert [r.id for r in reqs] == [40, 41, 42]
    assert [json.loads(r.text) for r in reqs] == [
        {"req_id": str(40 + n), "op": "subscribe", "args": names[n * 10 : n * 10 + 10]}
        for n in range(3)
    ]
    assert [len(r.streams) for r in reqs] == [10, 10, 3]
    (unsub,) = VENUE.requests(names[:2], 7, subscribe=False)
    assert json.loads(unsub.text)["op"] == "unsubscribe" and not unsub.subscribe
    assert VENUE.connect_url("wss://stream.bybit.com") == "wss://stream.bybit.com/v5/public/spot"
    assert LINEAR_VENUE.connect_url("ws://h:1/") == "ws://h:1/v5/public/linear"
    assert VENUE.stream_name(VENUE.spec.channel("ticker"), "BTCUSDT") == "orderbook.1.BTCUSDT"
    assert (VENUE.spec.exchange_id, LINEAR_VENUE.spec.exchange_id) == (3, 12)


# The documented shape of GET /v5/market/instruments-info (no response was captured).
SPOT_INSTRUMENTS = {
    "retCode": 0,
    "retMsg": "OK",
    "result": {
        "category": "spot",
        "list": [
            {
                "symbol": "BTCUSDT",
                "baseCoin": "BTC",
                "quoteCoin": "USDT",
                "innovation": "0",
                "status": "Trading",
                "marginTrading": "utaOnly",
                "lotSizeFilter": {
                    "basePrecision": "0.000001",
                    "quotePrecision": "0.00000001",
                    "minOrderQty": "0.000048",
                    "maxOrderQty": "71.73956243",
                    "minOrderAmt": "1",
                    "maxOrderAmt": "2000000",
                },
                "priceFilter": {"tickSize": "0.1"},
            },
            {
                "symbol": "ETHUSDT",
                "baseCoin": "ETH",
                "quoteCoin": "USDT",
                "status": "Trading",
                "lotSizeFilter": {"basePrecision": "0.00001"},
                "priceFilter": {"tickSize": "0.01"},
            },
        ],
    },
    "retExtInfo": {},
    "time": 1786310816000,
}
LINEAR_INSTRUMENTS = {
    "retCode": 0,
    "retMsg": "OK",
    "result": {
        "category": "linear",
        "list": [
            {
                "symbol": "BTCUSDT",
                "contractType": "LinearPerpetual",
                "status": "Trading",
                "baseCoin": "BTC",
                "quoteCoin": "USDT",
                "priceScale": "2",
                "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
                "lotSizeFilter": {
                    "maxOrderQty": "1190.000",
                    "minOrderQty": "0.001",
                    "qtyStep": "0.001",
                },
            },
            {
                "symbol": "BTCUSDT-26DEC26",
                "contractType": "LinearFutures",
                "status": "Trading",
                "baseCoin": "BTC",
                "quoteCoin": "USDT",
                "priceFilter": {"tickSize": "0.50"},
                "lotSizeFilter": {"qtyStep": "0.001"},
            },
            {
                "symbol": "DOGEUSDT",
                "contractType": "LinearPerpetual",
                "status": "Trading",
                "baseCoin": "DOGE",
                "quoteCoin": "USDT",
                "priceFilter": {"tickSize": "0.00001"},
                "lotSizeFilter": {"qtyStep": "1"},
            },
        ],
        "nextPageCursor": "",
    },
}


def test_instruments_give_base_quote_and_exact_decimals() -> None:
    spot = VENUE.parse_instruments(json.dumps(SPOT_INSTRUMENTS).encode())
    assert [
        (i.venue_symbol, i.symbol, i.price_decimals, i.size_decimals, i.market) for i in spot
    ] == [
        ("BTCUSDT", "BTC-USDT", 1, 6, Market.SPOT),
        ("ETHUSDT", "ETH-USDT", 2, 5, Market.SPOT),
    ]
    linear = LINEAR_VENUE.parse_instruments(json.dumps(LINEAR_INSTRUMENTS).encode())
    assert [
        (i.venue_symbol, i.symbol, i.price_decimals, i.size_decimals, i.market) for i in linear
    ] == [
        ("BTCUSDT", "BTC-USDT", 1, 3, Market.LINEAR),
        ("DOGEUSDT", "DOGE-USDT", 5, 0, Market.LINEAR),
    ], "dated futures left out: they would share the perpetual's BASE-QUOTE"
    assert VENUE.instruments_url("https://api.bybit.com/") == (
        "https://api.bybit.com/v5/market/instruments-info?category=spot"
    )
    assert decimals("0.10") == 1 and decimals("10") == 0
    with pytest.raises(VenueRejection, match="params error"):
        VENUE.parse_instruments(b'{"retCode":10001,"retMsg":"params error","result":{}}')
