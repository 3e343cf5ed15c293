"""Binance frames -> records, over real captured frames, asserting exact values."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.binance import USDM_VENUE, VENUE
from adapters.binance.venue import BinanceVenue, decimals
from engine.records import Flag, GapReason, Kind, Side, format_decimal
from engine.streams import RouteTable, Stream, make_stream
from tests.support import FIXTURES, Events, ListSink, book_from_records, capture, frames

SPOT = FIXTURES / "binance" / "spot"
USDM = FIXTURES / "binance" / "usdm"
RECV = 1_700_000_000_000_000_000


def session_for(venue: BinanceVenue, subs: list[tuple[str, str, int]]):  # type: ignore[no-untyped-def]
    sink, events, routes = ListSink(exchange=venue.spec.exchange_id), Events(), RouteTable()
    requested: list[Stream] = []
    for channel, venue_symbol, sid in subs:
        ch = venue.spec.channel(channel)
        assert ch is not None
        routes.add(make_stream(venue, ch, venue_symbol, sid, sink, requested.append))
    return venue.session(routes, sink, events), sink, events, routes, requested


def test_trade_frame() -> None:
    session, sink, events, routes, _ = session_for(VENUE, [("trades", "BTCUSDT", 1)])
    (frame,) = frames(SPOT / "trade_observed.jsonl")
    exch = session.on_message(frame, RECV)
    (r,) = sink.records
    assert exch == 1790649901913 * 1_000_000
    assert (r.kind, r.side, r.flags, r.symbol) == (Kind.TRADE, Side.SELL, Flag.LAST, 1)
    assert (r.exch_ts, r.recv_ts, r.ref) == (1790649901913 * 1_000_000, RECV, 6720857582)
    assert format_decimal(r.price, 2) == "83034.29"
    assert Decimal(format_decimal(r.size, 5)) == Decimal("0.00062000")
    assert routes.get("btcusdt@trade").count == 1
    assert events.errors == []


def test_agg_trade_frames() -> None:
    session, sink, events, _, _ = session_for(
        VENUE, [("aggTrade", "NKNUSDT", 1), ("aggTrade", "LRCBTC", 2)]
    )
    for f in frames(SPOT / "agg_trade_real.jsonl"):
        session.on_message(f, RECV)
    a, b = sink.records
    assert (a.symbol, a.side, a.ref, a.flags) == (
        1,
        Side.BUY,
        15683430,
        Flag.LAST | Flag.AGGREGATED,
    )
    assert (format_decimal(a.price, 4), format_decimal(a.size, 1)) == ("0.3528", "58.0")
    assert (b.symbol, b.ref, format_decimal(b.price, 8), format_decimal(b.size, 0)) == (
        2,
        9213679,
        "0.00000638",
        "177",
    )
    assert b.exch_ts == 1633998534486 * 1_000_000
    assert events.errors == []


def test_book_ticker_frames_become_bbo_records_and_duplicates_are_dropped() -> None:
    session, sink, _, _, _ = session_for(VENUE, [("ticker", "NKNUSDT", 1)])
    lines = [f for f in frames(SPOT / "book_ticker_real.jsonl") if b"nknusdt" in f]
    for f in lines + lines[:3]:  # the last three repeat: an overlapping connection
        session.on_message(f, RECV)
    assert len(sink.records) == len(lines) == 9
    r = sink.records[1]
    assert r.kind == Kind.BBO
    assert (r.price, r.size, r.ask_price, r.ask_size) == (0.3521, 672.0, 0.3525, 1123.0)
    assert r.exch_ts == 0, "spot bookTicker carries no event time"


def test_futures_book_ticker_has_event_time() -> None:
    session, sink, _, _, _ = session_for(USDM_VENUE, [("ticker", "SUSHIUSDT", 4)])
    session.on_message(frames(USDM / "book_ticker_real.jsonl")[0], RECV)
    (r,) = sink.records
    assert r.exch_ts == 1626992741017 * 1_000_000
    assert (r.price, r.size, r.ask_price, r.ask_size) == (7.611, 2.0, 7.612, 297.0)


def test_acks_errors_and_shutdown_notices() -> None:
    session, sink, events, _, _ = session_for(VENUE, [("trades", "BTCUSDT", 1)])
    for f in frames(SPOT / "subscribe_response_doc.jsonl")[:2]:
        session.on_message(f, RECV)
    for f in frames(SPOT / "error_doc.jsonl")[:1]:
        session.on_message(f, RECV)
    for f in frames(SPOT / "server_shutdown_doc.jsonl"):
        session.on_message(f, RECV)
    session.on_message(b'{"result":["btcusdt@trade"],"id":3}', RECV)
    assert events.listings == [(3, ["btcusdt@trade"])]
    assert events.acks == [
        (1, True, None, ""),
        (312, True, None, ""),
        (1, False, 0, "Unknown property"),
    ]
    assert events.notices == [("shutdown", "serverShutdown")] * 2
    assert sink.records == [] and events.errors == []


@pytest.mark.parametrize(
    ("payload", "channel", "detail"),
    [
        (
            b'{"stream":"btcusdt@trade","data":{"E":1,"t":"x","p":"1","q":"1","T":1,"m":true}}',
            "trade",
            "Expected `int`, got `str` - at `$.t`",
        ),
        (b'{"stream":"btcusdt@trade","data":{"E":1,"t":1,"p":"1"', "unknown", "truncated"),
        (b'\xff\xfe{"stream"', "unknown", "invalid"),
        (b'{"unexpected":true}', "control", "unrecognised"),
        (b"[1,2,3]", "unknown", "Expected `object`"),
    ],
)
def test_bad_frames_are_counted_and_skipped(payload: bytes, channel: str, detail: str) -> None:
    session, sink, events, _, _ = session_for(VENUE, [("trades", "BTCUSDT", 1)])
    assert session.on_message(payload, RECV) == 0
    (err,) = events.errors
    assert err[0] == channel
    assert detail.lower() in err[1].lower()
    assert sink.records == []
    good = frames(SPOT / "trade_observed.jsonl")[0]
    session.on_message(good, RECV)
    assert len(sink.records) == 1, "the session keeps working after a bad frame"


def test_frames_of_streams_we_left_are_ignored_but_unknown_streams_are_counted() -> None:
    session, sink, events, routes, _ = session_for(
        VENUE, [("trades", "ETHUSDT", 1), ("trades", "BTCUSDT", 2)]
    )
    routes.remove("btcusdt@trade")
    session.routes_changed()
    frame = frames(SPOT / "trade_observed.jsonl")[0]
    session.on_message(frame, RECV)  # in flight after we unsubscribed
    assert sink.records == [] and events.errors == []
    session.on_message(frame.replace(b"btcusdt@trade", b"btcusdt@mystery"), RECV)
    assert sink.records == []
    assert events.errors == [("unknown_stream", "frame of stream 'btcusdt@mystery'")]


def test_instruments_and_decimals() -> None:
    body = (
        b'{"timezone":"UTC","symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC",'
        b'"quoteAsset":"USDT","filters":[{"filterType":"PRICE_FILTER","minPrice":"0.01000000",'
        b'"maxPrice":"1000000.00000000","tickSize":"0.01000000"},{"filterType":"LOT_SIZE",'
        b'"minQty":"0.00001000","maxQty":"9000.00000000","stepSize":"0.00001000"}]}]}'
    )
    (i,) = VENUE.parse_instruments(body)
    assert (i.venue_symbol, i.symbol, i.price_decimals, i.size_decimals) == (
        "BTCUSDT",
        "BTC-USDT",
        2,
        5,
    )
    assert [decimals(s) for s in ("1.00000000", "0.1", "10", None)] == [0, 1, 0, 0]


def _independent_final_books(path, venue_filter: str, futures: bool):  # type: ignore[no-untyped-def]
    """The final book of every symbol, computed straight from the capture with Decimals."""
    import json

    books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal], int]] = {}
    for line in capture(path):
        if line["dir"] == "http" and venue_filter in line["url"]:
            sym = line["url"].split("symbol=")[1].split("&")[0]
            snap = json.loads(line["raw"])
            books[sym] = (
                {Decimal(p): Decimal(q) for p, q in snap["bids"]},
                {Decimal(p): Decimal(q) for p, q in snap["asks"]},
                snap["lastUpdateId"],
            )
        elif line["dir"] == "recv":
            msg = json.loads(line["raw"])
            data = msg["data"]
            if data.get("e") != "depthUpdate" or data["s"] not in books:
                continue
            bids, asks, last = books[data["s"]]
            if (data["u"] < last) if futures else (data["u"] <= last):
                continue
            for side, key in ((bids, "b"), (asks, "a")):
                for p, q in data[key]:
                    if Decimal(q) == 0:
                        side.pop(Decimal(p), None)
                    else:
                        side[Decimal(p)] = Decimal(q)
            books[data["s"]] = (bids, asks, data["u"])
    return books


@pytest.mark.parametrize(
    ("venue", "path", "url_part", "futures"),
    [
        (VENUE, SPOT / "capture_spot_2021-10-12.jsonl", "/api/v3/depth", False),
        (USDM_VENUE, USDM / "capture_usdm_2021-07-22.jsonl", "/fapi/v1/depth", True),
    ],
)
def test_recorded_sessions_sync_with_zero_gaps_and_rebuild_the_final_books(
    venue: BinanceVenue,
    path,
    url_part: str,
    futures: bool,  # type: ignore[no-untyped-def]
) -> None:
    lines = capture(path)
    symbols = sorted(
        {
            line["url"].split("symbol=")[1].split("&")[0]
            for line in lines
            if line["dir"] == "http" and url_part in line["url"]
        }
    )
    subs = [(ch, s, i + 1) for i, s in enumerate(symbols) for ch in ("orderbook", "ticker")]
    session, sink, events, routes, _ = session_for(venue, subs)
    ids = {s: i + 1 for i, s in enumerate(symbols)}
    for line in lines:
        recv = int(line["ts"] * 1e9)
        if line["dir"] == "http" and url_part in line["url"]:
            sym = line["url"].split("symbol=")[1].split("&")[0]
            stream = routes.get(venue.stream_name(venue.spec.channel("orderbook"), sym))
            stream.book.on_snapshot(venue.parse_snapshot(line["raw"].encode()), recv)
        elif line["dir"] == "recv":
            session.on_message(line["raw"].encode(), recv)
    assert sink.of(Kind.GAP) == [], "zero gaps in a clean recorded session"
    # the capture also carries aggTrade and kline streams this test does not subscribe
    assert {(ch, d.split("@")[1].rstrip("'")) for ch, d in events.errors} <= {
        ("unknown_stream", "aggTrade"),
        ("unknown_stream", "kline_1m"),
    }
    expected = _independent_final_books(path, url_part, futures)
    assert len(sink.of(Kind.SNAPSHOT_END)) == len(symbols)
    for sym, sid in ids.items():
        bids, asks = book_from_records(sink.records, sid)
        want_bids, want_asks, last = expected[sym]
        assert {
            Decimal(format_decimal(p, 8)): Decimal(format_decimal(q, 8)) for p, q in bids.items()
        } == want_bids
        assert {
            Decimal(format_decimal(p, 8)): Decimal(format_decimal(q, 8)) for p, q in asks.items()
        } == want_asks
        stream = routes.get(venue.stream_name(venue.spec.channel("orderbook"), sym))
        assert stream.book.last_id == last
        assert stream.book.book.bids == bids and stream.book.book.asks == asks


def test_skipped_update_id_is_a_gap_with_one_resync_request() -> None:
    session, sink, _, routes, requested = session_for(VENUE, [("orderbook", "NKNUSDT", 1)])
    stream = routes.get("nknusdt@depth@100ms")
    book = stream.book
    book.start()
    assert requested == [stream]
    book.on_snapshot(
        VENUE.parse_snapshot((SPOT / "depth_snapshot_rest_NKNUSDT_real.json").read_bytes()), RECV
    )
    lines = frames(SPOT / "depth_update_real.jsonl")
    session.on_message(lines[0], RECV)  # dropped: u <= lastUpdateId
    session.on_message(lines[1], RECV)  # bridges
    session.on_message(lines[3], RECV)  # lines[2] skipped: a gap
    session.on_message(lines[4], RECV)  # suppressed until a new snapshot
    gaps = sink.of(Kind.GAP)
    assert len(gaps) == 1
    assert (gaps[0].aux, gaps[0].ref, gaps[0].symbol) == (GapReason.SEQUENCE_GAP, 499869754, 1)
    assert requested == [stream, stream], "exactly one new snapshot is requested"
    assert book.counters.gaps == 1 and book.counters.resyncs == 1


def test_futures_snapshot_taken_between_two_events_is_bridged_by_pu() -> None:
    from adapters.binance.venue import FuturesBookRules
    from engine.venue import Verdict
    from tests.engine.test_book import Delta

    rules = FuturesBookRules()
    # ids are shared by every symbol: this symbol's next event starts well above the snapshot
    nxt = Delta(first_id=1005, last_id=1009, bids=[], asks=[], prev_id=1000)
    assert rules.bridge(1000, nxt) == Verdict.APPLY
    assert rules.bridge(999, nxt) == Verdict.GAP, "not the event right after the snapshot"
    assert rules.bridge(1000, Delta(990, 999, [], [], 980)) == Verdict.DROP
