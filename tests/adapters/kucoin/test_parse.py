"""KuCoin frames -> records, over real captured frames, asserting exact values."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest

from adapters.kucoin import VENUE
from adapters.kucoin.schemas import KucoinLevel2Msg
from adapters.kucoin.venue import KucoinBookRules, bullet_prepared, decimals
from engine.errors import RetryableError, VenueRejection
from engine.records import Flag, GapReason, Kind, Side, format_decimal
from engine.streams import RouteTable, Stream, make_stream
from engine.venue import BookSnapshot, Verdict
from tests.support import FIXTURES, Events, ListSink, book_from_records, capture, frames

KUCOIN = FIXTURES / "kucoin"
RECV = 1_700_000_000_000_000_000


def session_for(subs: list[tuple[str, str, int]]):  # type: ignore[no-untyped-def]
    sink, events, routes = ListSink(exchange=VENUE.spec.exchange_id), Events(), RouteTable()
    requested: list[Stream] = []
    for channel, venue_symbol, sid in subs:
        ch = VENUE.spec.channel(channel)
        assert ch is not None
        routes.add(make_stream(VENUE, ch, venue_symbol, sid, sink, requested.append))
    return VENUE.session(routes, sink, events), sink, events, routes, requested


def places(text: str) -> int:
    return len(text.partition(".")[2])


def exact(value: float, decimals: int) -> Decimal:
    """The venue's value back from the float, as a reader does with the symbol's decimals."""
    return Decimal(format_decimal(value, decimals))


def lines_of(name: str) -> list[dict[str, Any]]:
    return [json.loads(f) for f in frames(KUCOIN / name)]


def test_a_match_frame() -> None:
    session, sink, events, routes, _ = session_for([("trades", "DAPPT-BTC", 1)])
    exch = session.on_message(frames(KUCOIN / "match_real.jsonl")[0], RECV)
    (r,) = sink.records
    assert exch == 1619378327739050725, "match time is in ns"
    assert (r.kind, r.side, r.flags, r.symbol) == (Kind.TRADE, Side.BUY, Flag.LAST, 1)
    assert (r.exch_ts, r.recv_ts, r.ref) == (1619378327739050725, RECV, 1612701563869)
    assert format_decimal(r.price, 10) == "0.0000001117"
    assert format_decimal(r.size, 4) == "81.8814"
    assert routes.get("/market/match:DAPPT-BTC").count == 1
    assert events.errors == []


@pytest.mark.parametrize("frame", lines_of("match_real.jsonl"), ids=lambda f: f["data"]["sequence"])
def test_every_real_match_frame(frame: dict[str, Any]) -> None:
    d = frame["data"]
    session, sink, events, _, _ = session_for([("trades", d["symbol"], 7)])
    assert session.on_message(json.dumps(frame).encode(), RECV) == int(d["time"])
    (r,) = sink.records
    assert r.side == {"buy": Side.BUY, "sell": Side.SELL}[d["side"]]
    assert exact(r.price, places(d["price"])) == Decimal(d["price"])
    assert exact(r.size, places(d["size"])) == Decimal(d["size"])
    assert (r.ref, r.exch_ts, r.symbol) == (int(d["sequence"]), int(d["time"]), 7)
    assert events.errors == []


def test_a_ticker_frame_is_a_bbo_record() -> None:
    session, sink, _, _, _ = session_for([("ticker", "BCHSV-USDT", 2)])
    assert session.on_message(frames(KUCOIN / "ticker_real.jsonl")[1], RECV) == (
        1619378326330 * 1_000_000
    )
    (r,) = sink.records
    assert (r.kind, r.flags, r.symbol, r.exch_ts) == (Kind.BBO, Flag.LAST, 2, 1619378326330 * 10**6)
    assert (format_decimal(r.price, 3), format_decimal(r.size, 8)) == ("242.654", "0.68148185")
    assert (format_decimal(r.ask_price, 3), format_decimal(r.ask_size, 8)) == (
        "242.951",
        "4.51280965",
    )


@pytest.mark.parametrize(
    "frame", lines_of("ticker_real.jsonl"), ids=lambda f: f["data"]["sequence"]
)
def test_every_real_ticker_frame(frame: dict[str, Any]) -> None:
    d = frame["data"]
    session, sink, _, _, _ = session_for([("ticker", frame["topic"].split(":")[1], 3)])
    session.on_message(json.dumps(frame).encode(), RECV)
    (r,) = sink.records
    keys = ("bestBid", "bestBidSize", "bestAsk", "bestAskSize")
    got = [exact(v, places(d[k])) for v, k in zip((r.price, r.size, r.ask_price, r.ask_size), keys)]
    assert got == [Decimal(d[k]) for k in keys]
    assert r.exch_ts == d["time"] * 1_000_000


def test_tickers_already_delivered_by_an_overlapping_connection_are_dropped() -> None:
    session, sink, _, routes, _ = session_for([("ticker", "BCHSV-USDT", 1)])
    lines = [f for f in frames(KUCOIN / "ticker_real.jsonl") if b"BCHSV-USDT" in f]
    for f in lines + lines[:2]:  # the last two repeat, as a second connection would send them
        session.on_message(f, RECV)
    assert len(sink.records) == len(lines) == 5
    assert routes.get("/market/ticker:BCHSV-USDT").last_id == 1613277183909


def test_matches_already_delivered_are_dropped() -> None:
    session, sink, _, _, _ = session_for([("trades", "DAPPT-BTC", 1)])
    lines = [f for f in frames(KUCOIN / "match_real.jsonl") if b"DAPPT-BTC" in f]
    for f in lines[:3] + lines[:5]:
        session.on_message(f, RECV)
    assert [r.ref for r in sink.records] == [
        int(json.loads(f)["data"]["sequence"]) for f in lines[:5]
    ]


def snapshot_bchsv() -> BookSnapshot:
    return VENUE.parse_snapshot((KUCOIN / "level2_snapshot_rest_BCHSV-USDT_real.json").read_bytes())


def test_rest_snapshot() -> None:
    snap = snapshot_bchsv()
    assert (snap.update_id, snap.exch_ts) == (1613277183892, 1619378326628 * 1_000_000)
    assert (len(snap.bids), len(snap.asks)) == (172, 399)
    assert snap.bids[0] == (242.649, 5.0) and snap.asks[0] == (242.951, 4.51280965)


def test_level2_after_the_snapshot_drops_the_old_and_skips_sequence_steps() -> None:
    session, sink, events, routes, requested = session_for([("orderbook", "BCHSV-USDT", 1)])
    sync = routes.get("/market/level2:BCHSV-USDT").book
    sync.start()
    lines = frames(KUCOIN / "level2_update_real.jsonl")
    for f in lines[:19]:  # all at or below the snapshot's sequence: buffered, then dropped
        session.on_message(f, RECV)
    sync.on_snapshot(snapshot_bchsv(), RECV)
    assert sync.counters.dropped == 19
    for f in lines[19:]:
        session.on_message(f, RECV)
    assert sink.of(Kind.GAP) == [] and events.errors == []
    assert sync.last_id == 1613277183892 + len(lines) - 19
    changes = sink.records[sink.records.index(sink.of(Kind.SNAPSHOT_END)[0]) + 1 :]
    # lines 19..: "243.287" ask removed, "242.646" bid removed, a "0" step, "242.647" bid added..
    assert [
        (r.side, format_decimal(r.price, 3), format_decimal(r.size, 8)) for r in changes[:3]
    ] == [
        (Side.SELL, "243.287", "0.00000000"),
        (Side.BUY, "242.646", "0.00000000"),
        (Side.BUY, "242.647", "0.68148185"),
    ]
    steps = sum(1 for f in lines[19:] if b'["0","0"' in f)
    assert len(changes) == len(lines) - 19 - steps, "a price of 0 is a sequence step, no level"
    assert requested == [routes.get("/market/level2:BCHSV-USDT")]


def test_a_skipped_sequence_is_a_gap_with_one_resync_request() -> None:
    session, sink, _, routes, requested = session_for([("orderbook", "BCHSV-USDT", 1)])
    stream = routes.get("/market/level2:BCHSV-USDT")
    stream.book.start()
    stream.book.on_snapshot(snapshot_bchsv(), RECV)
    lines = frames(KUCOIN / "level2_update_real.jsonl")
    session.on_message(lines[19], RECV)  # bridges (starts at snapshot + 1)
    session.on_message(lines[21], RECV)  # lines[20] skipped
    session.on_message(lines[22], RECV)  # suppressed until a new snapshot
    (gap,) = sink.of(Kind.GAP)
    assert (gap.aux, gap.ref, gap.symbol) == (GapReason.SEQUENCE_GAP, 1613277183893, 1)
    assert requested == [stream, stream], "exactly one new snapshot is requested"


def test_bridging_update_applies_only_the_changes_newer_than_the_snapshot() -> None:
    """The documented example spans 14103844..14103847; a snapshot at 14103845 already holds
    the two ask changes (their sequences are 14103845 and 14103844)."""
    session, sink, _, routes, _ = session_for([("orderbook", "BTC-USDT", 1)])
    sync = routes.get("/market/level2:BTC-USDT").book
    sync.start()
    sync.on_snapshot(BookSnapshot(14103845, [(18891.0, 1.0)], [(18906.0, 0.00331)]), RECV)
    session.on_message(frames(KUCOIN / "level2_update_doc.jsonl")[0], RECV)
    (level,) = sink.of(Kind.BOOK_LEVEL)[2:]
    assert (level.side, level.price, level.size, level.ref) == (
        Side.BUY,
        18891.9,
        0.15688,
        14103847,
    )
    assert level.exch_ts == 1663747970273 * 1_000_000
    assert sync.book.asks == {18906.0: 0.00331} and sync.last_id == 14103847


@pytest.mark.parametrize(
    ("first", "last", "known", "verdict"),
    [
        (10, 10, 10, Verdict.DROP),  # already in the book
        (8, 12, 12, Verdict.DROP),
        (11, 11, 10, Verdict.APPLY),  # continues it
        (9, 12, 10, Verdict.APPLY),  # overlaps it
        (12, 12, 10, Verdict.GAP),  # 11 is missing
        (13, 12, 10, Verdict.GAP),  # nonsense: start after end
    ],
)
def test_book_rules(first: int, last: int, known: int, verdict: Verdict) -> None:
    delta = msgspec.json.decode(
        json.dumps(
            {"sequenceStart": first, "sequenceEnd": last, "changes": {"asks": [], "bids": []}}
        ),
        type=KucoinLevel2Msg,
    )
    rules = KucoinBookRules()
    assert rules.bridge(known, delta) == verdict
    assert rules.follow(known, delta) == verdict


@pytest.mark.parametrize("subs", [[("trades", "BTC-USDT", 1)], []], ids=["subscribed", "none"])
def test_welcome_acks_pongs_and_errors(subs: list[tuple[str, str, int]]) -> None:
    session, sink, events, _, _ = session_for(subs)
    for name in ("welcome_real.jsonl", "ack_real.jsonl", "ack_doc.jsonl", "error_observed.jsonl"):
        for f in frames(KUCOIN / name):
            assert session.on_message(f, RECV) == 0
    _ping, pong = frames(KUCOIN / "ping_pong_doc.jsonl")
    session.on_message(pong, RECV)
    assert events.welcomes == 1 and events.pongs == 1
    assert events.acks == [
        (1, True, None, ""),
        (1, True, None, ""),
        (1, True, None, ""),
        (1545910660739, True, None, ""),
        (1665514264414, False, 404, "topic /market/match:ETH-UrSDT is not found"),
        (-1, False, 509, "exceed max subscription count limitation of 400 per session"),
    ]
    assert sink.records == [] and events.errors == []


@pytest.mark.parametrize(
    ("payload", "channel", "detail"),
    [
        (
            b'{"type":"message","topic":"/market/match:BTC-USDT","subject":"trade.l3match",'
            b'"data":{"sequence":"1","side":"buy","price":"1","size":"x","time":"1"}}',
            "match",
            "Expected `float`, got `str` - at `$.size`",
        ),
        (
            b'{"type":"message","topic":"/market/match:BTC-USDT","data":{"sequence":"1"',
            "unknown",
            "truncated",
        ),
        (b'\xff\xfe{"type"', "unknown", "invalid"),
        (b'{"type":"surprise","id":"1"}', "control", "unrecognised message type 'surprise'"),
        (b"[1,2,3]", "unknown", "Expected `object`"),
        (
            b'{"type":"message","topic":"/market/match:BTC-USDT","subject":"trade.l3match",'
            b'"data":{"sequence":"2","side":"short","price":"1","size":"1","time":"1"}}',
            "match",
            "unknown side 'short'",
        ),
    ],
)
def test_bad_frames_are_counted_and_skipped(payload: bytes, channel: str, detail: str) -> None:
    session, sink, events, _, _ = session_for([("trades", "BTC-USDT", 1)])
    assert session.on_message(payload, RECV) in (0, 1)
    (err,) = events.errors
    assert err[0] == channel
    assert detail.lower() in err[1].lower()
    good = frames(KUCOIN / "match_doc.jsonl")[0]
    session.on_message(good, RECV)
    assert sink.of(Kind.TRADE)[-1].ref == 1545896669145, "the session keeps working"


def test_frames_of_topics_we_left_are_ignored_but_unknown_topics_are_counted() -> None:
    session, sink, events, routes, _ = session_for(
        [("trades", "DAPPT-BTC", 1), ("trades", "BTC-USDT", 2)]
    )
    routes.remove("/market/match:DAPPT-BTC")
    session.routes_changed()
    frame = frames(KUCOIN / "match_real.jsonl")[0]
    session.on_message(frame, RECV)  # in flight after we unsubscribed
    assert sink.records == [] and events.errors == []
    session.on_message(frames(KUCOIN / "candles_real.jsonl")[0], RECV)
    assert events.errors == [("unknown_stream", "frame of topic '/market/candles:DAPPT-BTC_1min'")]


def test_instruments_and_decimals() -> None:
    body = (
        b'{"code":"200000","data":[{"symbol":"BTC-USDT","name":"BTC-USDT","baseCurrency":"BTC",'
        b'"quoteCurrency":"USDT","feeCurrency":"USDT","market":"USDS","baseMinSize":"0.00001",'
        b'"quoteMinSize":"0.1","baseMaxSize":"10000000000","quoteMaxSize":"99999999",'
        b'"baseIncrement":"0.00000001","quoteIncrement":"0.000001","priceIncrement":"0.1",'
        b'"priceLimitRate":"0.1","minFunds":"0.1","isMarginEnabled":true,"enableTrading":true},'
        b'{"symbol":"ODD-USDT","baseCurrency":"ODD","quoteCurrency":"USDT",'
        b'"baseIncrement":"tiny","priceIncrement":"0.1"}]}'
    )
    (i,) = VENUE.parse_instruments(body)
    assert (i.venue_symbol, i.symbol, i.price_decimals, i.size_decimals) == (
        "BTC-USDT",
        "BTC-USDT",
        1,
        8,
    )
    assert [decimals(s) for s in ("0.00000001", "0.1", "1", "10", "0.0050", "1E-7")] == [
        8,
        1,
        0,
        0,
        3,
        7,
    ]
    with pytest.raises(VenueRejection, match="400001"):
        VENUE.parse_instruments(b'{"code":"400001","msg":"nope"}')


def test_bullet_answer_gives_the_url_and_the_heartbeat() -> None:
    body = (KUCOIN / "bullet_public_response_doc.jsonl").read_bytes()
    prepared = bullet_prepared(body, "c0ffee")
    url = urlsplit(prepared.url)
    assert (url.scheme, url.netloc, url.path) == ("wss", "ws-api-spot.kucoin.com", "/")
    query = parse_qs(url.query)
    token = json.loads(body)["data"]["token"]
    assert query == {"token": [token], "connectId": ["c0ffee"]}
    assert "%3D" in url.query, "the token's '=' are escaped"
    hb = prepared.heartbeat
    assert hb is not None
    assert (hb.idle, hb.timeout, hb.periodic) == (18.0, 10.0, True)
    assert hb.ping == b'{"id":"wsm","type":"ping"}' and hb.pong is None, "the session reports pongs"
    long_timeout = body.replace(b'"pingTimeout":10000', b'"pingTimeout":30000')
    hb = bullet_prepared(long_timeout, "x").heartbeat
    assert hb is not None and (hb.idle, hb.timeout) == (18.0, 18.0), "never past the next ping"
    with pytest.raises(VenueRejection):
        bullet_prepared(b'{"code":"429000","msg":"Too many requests"}', "x")
    with pytest.raises(RetryableError):
        bullet_prepared(b'{"code":"200000","data":{"token":"t","instanceServers":[]}}', "x")
    with pytest.raises(RetryableError):
        bullet_prepared(b"<html>", "x")


def test_subscribe_requests_put_up_to_100_symbols_in_one_topic() -> None:
    match = VENUE.spec.channel("trades")
    book = VENUE.spec.channel("orderbook")
    symbols = [f"S{i}-USDT" for i in range(250)]
    streams = [VENUE.stream_name(match, s) for s in symbols] + [VENUE.stream_name(book, "BTC-USDT")]
    reqs = VENUE.requests(streams, 40, subscribe=True)
    assert [r.id for r in reqs] == [40, 41, 42, 43]
    assert [len(r.streams) for r in reqs] == [100, 100, 50, 1]
    first = json.loads(reqs[0].text)
    assert first == {
        "id": 40,
        "type": "subscribe",
        "topic": "/market/match:" + ",".join(symbols[:100]),
        "privateChannel": False,
        "response": True,
    }
    assert json.loads(reqs[3].text)["topic"] == "/market/level2:BTC-USDT"
    (unsub,) = VENUE.requests(streams[:2], 1, subscribe=False)
    assert json.loads(unsub.text)["type"] == "unsubscribe" and not unsub.subscribe
    assert unsub.streams == ("/market/match:S0-USDT", "/market/match:S1-USDT")


def capture_decimals(path: Path) -> dict[str, tuple[int, int]]:
    """Each symbol's price and size decimals, as its instrument would give them: the most
    decimals any of its prices (sizes) has in the capture."""
    out: dict[str, tuple[int, int]] = {}

    def widen(sym: str, levels: list[list[str]]) -> None:
        pd, sd = out.get(sym, (0, 0))
        for level in levels:
            pd, sd = max(pd, places(level[0])), max(sd, places(level[1]))
        out[sym] = (pd, sd)

    for line in capture(path):
        if line["dir"] == "http":
            data = json.loads(line["raw"])["data"]
            sym = line["url"].split("symbol=")[1]
            widen(sym, data["bids"] + data["asks"])
        elif line["dir"] == "recv" and '"trade.l2update"' in line["raw"]:
            data = json.loads(line["raw"])["data"]
            widen(data["symbol"], data["changes"]["bids"] + data["changes"]["asks"])
    return out


def _independent_final_books(path: Path) -> dict[str, tuple[dict[Decimal, Decimal], ...]]:
    """Every symbol's final book from the capture with Decimals, verifying on the way that each
    applied update continues the previous one exactly."""
    books: dict[str, Any] = {}
    updates: dict[str, list[dict[str, Any]]] = {}
    for line in capture(path):
        if line["dir"] == "http":
            data = json.loads(line["raw"])["data"]
            sym = line["url"].split("symbol=")[1]
            books[sym] = (
                {Decimal(p): Decimal(q) for p, q in data["bids"]},
                {Decimal(p): Decimal(q) for p, q in data["asks"]},
                int(data["sequence"]),
            )
        elif line["dir"] == "recv":
            msg = json.loads(line["raw"])
            if msg.get("subject") == "trade.l2update":
                updates.setdefault(msg["data"]["symbol"], []).append(msg["data"])
    out = {}
    for sym, (bids, asks, seq) in books.items():
        for u in updates[sym]:
            if u["sequenceEnd"] <= seq:
                continue
            assert u["sequenceStart"] == seq + 1, f"{sym}: the capture itself has a gap"
            for side, levels in ((bids, u["changes"]["bids"]), (asks, u["changes"]["asks"])):
                for p, q, _ in levels:
                    if Decimal(p) == 0:
                        continue
                    if Decimal(q) == 0:
                        side.pop(Decimal(p), None)
                    else:
                        side[Decimal(p)] = Decimal(q)
            seq = u["sequenceEnd"]
        out[sym] = (bids, asks, seq)
    return out


def test_recorded_session_syncs_with_zero_gaps_and_rebuilds_the_final_books() -> None:
    path = KUCOIN / "capture_2021-04-25.jsonl"
    lines = sorted(capture(path), key=lambda line: line["ts"])  # REST answers by arrival time
    symbols = sorted(line["url"].split("symbol=")[1] for line in lines if line["dir"] == "http")
    assert len(symbols) == 9
    ids = {s: i + 1 for i, s in enumerate(symbols)}
    subs = [(ch, s, ids[s]) for s in symbols for ch in ("orderbook", "ticker", "trades")]
    session, sink, events, routes, _ = session_for(subs)
    books = {s: routes.get(f"/market/level2:{s}").book for s in symbols}
    for sync in books.values():
        sync.start()  # subscribed: updates are buffered until the snapshot arrives
    for line in lines:
        recv = int(line["ts"] * 1e9)
        if line["dir"] == "http":
            sym = line["url"].split("symbol=")[1]
            books[sym].on_snapshot(VENUE.parse_snapshot(line["raw"].encode()), recv)
        elif line["dir"] == "recv":
            session.on_message(line["raw"].encode(), recv)
    assert sink.of(Kind.GAP) == [], "zero gaps in a clean recorded session"
    assert events.welcomes == 1 and len(events.acks) == 13
    # the capture also carries candles this test does not subscribe
    assert {(ch, d.split(":")[0]) for ch, d in events.errors} == {
        ("unknown_stream", "frame of topic '/market/candles")
    }
    assert len(sink.of(Kind.SNAPSHOT_END)) == len(symbols)
    assert len(sink.of(Kind.TRADE)) == 18 and len(sink.of(Kind.BBO)) == 830
    expected = _independent_final_books(path)
    places_of = capture_decimals(path)
    for sym, sid in ids.items():
        bids, asks = book_from_records(sink.records, sid)
        want_bids, want_asks, last = expected[sym]
        pd, sd = places_of[sym]
        for got, want in ((bids, want_bids), (asks, want_asks)):
            # the records hold the nearest double of every venue value ...
            assert got == {float(p): float(q) for p, q in want.items()}, sym
            # ... and the symbol's decimals give the venue's text back wherever a double can
            # carry that many decimals (below 2**53 units)
            for p, q in want.items():
                assert exact(float(p), pd) == p
                if q * 10**sd < 2**53:
                    assert exact(got[float(p)], sd) == q, (sym, p, q)
        assert books[sym].last_id == last
        assert books[sym].book.bids == bids and books[sym].book.asks == asks
