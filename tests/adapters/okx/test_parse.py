"""OKX frames -> records, over the real captured frames (and the documented ones), asserting
exact values; the 2022 recording replayed with every checksum verified."""

from __future__ import annotations

import json
import zlib
from decimal import Decimal
from typing import Any

import pytest

from adapters.okx import VENUE
from adapters.okx.schemas import OkxBookDelta
from adapters.okx.venue import OkxBookRules, checksum, checksum_text, decimals
from engine.errors import VenueRejection
from engine.records import Flag, GapReason, Kind, Side, format_decimal
from engine.streams import RouteTable, Stream, make_stream
from engine.venue import Verdict
from tests.support import FIXTURES, Events, ListSink, book_from_records, capture, frames

OKX = FIXTURES / "okx"
RECV = 1_700_000_000_000_000_000
MS = 1_000_000


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
    return Decimal(format_decimal(value, decimals))


def lines_of(name: str) -> list[dict[str, Any]]:
    return [json.loads(f) for f in frames(OKX / name)]


# -- trades and tickers -----------------------------------------------------------------------


def test_a_trade_frame() -> None:
    session, sink, events, routes, _ = session_for([("trades", "BTC-USDT", 3)])
    exch = session.on_message(frames(OKX / "trades_real.jsonl")[2], RECV)
    (r,) = sink.records
    assert exch == 1652459224818 * MS
    assert (r.kind, r.side, r.flags, r.symbol) == (Kind.TRADE, Side.BUY, Flag.LAST, 3)
    assert (r.exch_ts, r.recv_ts, r.ref) == (1652459224818 * MS, RECV, 338476307)
    assert format_decimal(r.price, 1) == "30236.0"
    assert format_decimal(r.size, 8) == "0.00020000"
    assert routes.get("trades:BTC-USDT").count == 1
    assert events.errors == []


TRADES = lines_of("trades_real.jsonl") + lines_of("trades_doc.jsonl")[:1]


@pytest.mark.parametrize("frame", TRADES, ids=lambda f: f["data"][0]["tradeId"])
def test_every_trade_frame(frame: dict[str, Any]) -> None:
    (d,) = frame["data"]
    session, sink, events, _, _ = session_for([("trades", d["instId"], 7)])
    assert session.on_message(json.dumps(frame).encode(), RECV) == int(d["ts"]) * MS
    (r,) = sink.records
    assert r.side == {"buy": Side.BUY, "sell": Side.SELL}[d["side"]]
    assert exact(r.price, places(d["px"])) == Decimal(d["px"])
    assert exact(r.size, places(d["sz"])) == Decimal(d["sz"])
    assert (r.ref, r.exch_ts, r.symbol) == (int(d["tradeId"]), int(d["ts"]) * MS, 7)
    assert events.errors == []


def test_a_trade_delivered_twice_is_written_once() -> None:
    session, sink, _, _, _ = session_for([("trades", "BTC-USDT", 1)])
    lines = [f for f in frames(OKX / "trades_real.jsonl") if b'"BTC-USDT"' in f]
    for f in lines + lines:  # the second pass: an overlapping connection's copies
        session.on_message(f, RECV)
    refs = [r.ref for r in sink.records]
    assert refs == sorted(set(refs)) and len(refs) == len(lines)


TICKERS = lines_of("tickers_real.jsonl") + lines_of("tickers_doc.jsonl")


@pytest.mark.parametrize("frame", TICKERS, ids=lambda f: f["data"][0]["ts"])
def test_every_ticker_frame_is_a_bbo_record(frame: dict[str, Any]) -> None:
    (d,) = frame["data"]
    session, sink, events, _, _ = session_for([("ticker", d["instId"], 2)])
    assert session.on_message(json.dumps(frame).encode(), RECV) == int(d["ts"]) * MS
    (r,) = sink.records
    assert (r.kind, r.flags, r.symbol, r.exch_ts) == (Kind.BBO, Flag.LAST, 2, int(d["ts"]) * MS)
    for value, key in ((r.price, "bidPx"), (r.size, "bidSz"), (r.ask_price, "askPx")):
        assert exact(value, places(d[key])) == Decimal(d[key])
    assert exact(r.ask_size, places(d["askSz"])) == Decimal(d["askSz"])
    assert events.errors == []


def test_the_first_real_btc_usdt_ticker_exactly() -> None:
    session, sink, _, _, _ = session_for([("ticker", "BTC-USDT", 2)])
    session.on_message(frames(OKX / "tickers_real.jsonl")[2], RECV)
    (r,) = sink.records
    assert format_decimal(r.price, 1) == "30228.6"
    assert format_decimal(r.size, 8) == "0.23393000"
    assert format_decimal(r.ask_price, 1) == "30228.7"
    assert format_decimal(r.ask_size, 8) == "1.55896972"


def test_bbo_tbt_is_a_bbo_record_deduplicated_by_seq_id() -> None:
    line = frames(OKX / "books_doc.jsonl")[2]
    session, sink, events, _, _ = session_for([("bbo-tbt", "BCH-USDT-SWAP", 4)])
    assert session.on_message(line, RECV) == 1670324386802 * MS
    assert session.on_message(line, RECV) == 0  # the same seqId again: a duplicate
    (r,) = sink.records
    assert (r.kind, r.symbol) == (Kind.BBO, 4)
    assert (r.price, r.size, r.ask_price, r.ask_size) == (111.05, 57745.0, 111.06, 55154.0)
    assert events.errors == []


def test_books5_pushes_are_snapshots_handed_over_by_changes() -> None:
    line = frames(OKX / "books_doc.jsonl")[3]
    session, sink, events, _, _ = session_for([("books5", "BCH-USDT-SWAP", 5)])
    session.on_message(line, RECV)
    frame = json.loads(line)
    (d,) = frame["data"]
    bids, asks = book_from_records(sink.records, 5)
    assert bids == {float(p): float(q) for p, q, _, _ in d["bids"]}
    assert asks == {float(p): float(q) for p, q, _, _ in d["asks"]}
    # the next push moves one level: one update of that level, no second snapshot
    d["bids"][0][1] = "1"
    d["seqId"] += 1
    n = len(sink.records)
    session.on_message(json.dumps(frame).encode(), RECV)
    new = sink.records[n:]
    assert [(r.kind, r.price, r.size) for r in new] == [(Kind.BOOK_LEVEL, 111.05, 1.0)]
    assert len(sink.of(Kind.SNAPSHOT_BEGIN)) == 1 and events.errors == []


# -- answers and notices ---------------------------------------------------------------------


def test_real_acks_carry_no_id_and_settle_the_oldest_request() -> None:
    session, _, events, _, _ = session_for([])
    for f in frames(OKX / "subscribe_ack_real.jsonl"):
        assert session.on_message(f, RECV) == 0
    assert events.acks == [(None, True, None, "")] * 9 and events.errors == []


def test_documented_ack_and_error_carry_the_request_id() -> None:
    session, _, events, _, _ = session_for([])
    session.on_message(frames(OKX / "subscribe_ack_doc.jsonl")[0], RECV)
    session.on_message(frames(OKX / "error_doc.jsonl")[0], RECV)
    (ok, err) = events.acks
    assert ok == (1512, True, None, "")
    assert err[:3] == (1512, False, "60012") and err[3].startswith("Invalid request: ")


def test_the_service_upgrade_notice_starts_a_rollover() -> None:
    session, _, events, _, _ = session_for([])
    session.on_message(frames(OKX / "notice_doc.jsonl")[0], RECV)
    assert events.notices == [
        ("shutdown", "The connection will soon be closed for a service upgrade. Please reconnect.")
    ]


def test_requests_carry_an_id_and_one_arg_per_stream() -> None:
    (req,) = VENUE.requests(["books:BTC-USDT", "trades:ETH-USDT"], 7, subscribe=True)
    assert req.id == 7 and req.streams == ("books:BTC-USDT", "trades:ETH-USDT")
    assert json.loads(req.text) == {
        "id": "7",
        "op": "subscribe",
        "args": [
            {"channel": "books", "instId": "BTC-USDT"},
            {"channel": "trades", "instId": "ETH-USDT"},
        ],
    }
    names = [f"trades:S{i}-USDT" for i in range(250)]
    reqs = VENUE.requests(names, 1, subscribe=False)
    assert [(r.id, len(r.streams), r.subscribe) for r in reqs] == [
        (1, 100, False),
        (2, 100, False),
        (3, 50, False),
    ]
    assert json.loads(reqs[0].text)["op"] == "unsubscribe"


@pytest.mark.parametrize(
    ("payload", "channel"),
    [
        (b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"px":', "unknown"),
        (b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"px":[]}]}', "trades"),
        (b'{"arg":{"channel":"mystery","instId":"BTC-USDT"},"data":[{}]}', "unknown_channel"),
        (b'{"arg":{"channel":"trades","instId":"NOPE-USDT"},"data":[]}', "unknown_stream"),
        (b'{"event":"surprise"}', "control"),
        (b"\xff\xfe", "unknown"),
    ],
)
def test_bad_frames_are_counted_once_and_never_raise(payload: bytes, channel: str) -> None:
    session, sink, events, _, _ = session_for([("trades", "BTC-USDT", 1)])
    assert session.on_message(payload, RECV) == 0
    assert [c for c, _ in events.errors] == [channel] and sink.records == []


def test_instruments_give_exact_decimals() -> None:
    body = json.dumps(
        {
            "code": "0",
            "msg": "",
            "data": [
                {
                    "instType": "SPOT",
                    "instId": "BTC-USDT",
                    "baseCcy": "BTC",
                    "quoteCcy": "USDT",
                    "tickSz": "0.1",
                    "lotSz": "0.00000001",
                    "state": "live",
                },
                {
                    "instType": "SPOT",
                    "instId": "SHIB-USDT",
                    "baseCcy": "SHIB",
                    "quoteCcy": "USDT",
                    "tickSz": "0.00000001",
                    "lotSz": "1",
                    "state": "live",
                },
                {
                    "instType": "SPOT",
                    "instId": "BAD-USDT",
                    "baseCcy": "BAD",
                    "quoteCcy": "USDT",
                    "tickSz": "x",
                    "lotSz": "1",
                    "state": "live",
                },
            ],
        }
    ).encode()
    got = [
        (i.venue_symbol, i.symbol, i.price_decimals, i.size_decimals)
        for i in VENUE.parse_instruments(body)
    ]
    assert got == [("BTC-USDT", "BTC-USDT", 1, 8), ("SHIB-USDT", "SHIB-USDT", 8, 0)]
    with pytest.raises(VenueRejection):
        VENUE.parse_instruments(b'{"code":"50011","msg":"Too Many Requests","data":[]}')
    assert decimals("0.0010") == 3 and decimals("10") == 0


def test_rest_snapshot() -> None:
    assert VENUE.snapshot_url("https://www.okx.com/", "BTC-USDT") == (
        "https://www.okx.com/api/v5/market/books?instId=BTC-USDT&sz=400"
    )
    body = (
        b'{"code":"0","msg":"","data":[{"asks":[["41006.8","0.60038921","0","1"]],'
        b'"bids":[["41006.3","0.30178218","0","2"]],"ts":"1629966436396"}]}'
    )
    snap = VENUE.parse_snapshot(body)
    assert (snap.bids, snap.asks) == ([(41006.3, 0.30178218)], [(41006.8, 0.60038921)])
    assert snap.exch_ts == 1629966436396 * MS


# -- book rules -------------------------------------------------------------------------------


def delta(prev: int, seq: int) -> OkxBookDelta:
    return OkxBookDelta(seq, seq, prev, [], [], [], [], 0)


@pytest.mark.parametrize(
    ("last", "prev", "seq", "verdict"),
    [
        (100, 100, 107, Verdict.APPLY),  # names the book's id
        (100, 100, 100, Verdict.APPLY),  # no change (the venue's keep-alive)
        (9_000, 9_000, 12, Verdict.APPLY),  # ids reset after maintenance: seqId < prevSeqId
        (107, 100, 107, Verdict.DROP),  # delivered already
        (107, 90, 100, Verdict.DROP),  # older still
        (100, 103, 110, Verdict.GAP),  # updates 100..103 lost
        (0, 0, 0, Verdict.APPLY),  # a 2022 recording: no ids at all
    ],
)
def test_continuity_rules(last: int, prev: int, seq: int, verdict: Verdict) -> None:
    rules = OkxBookRules()
    assert rules.follow(last, delta(prev, seq)) == verdict
    assert rules.bridge(last, delta(prev, seq)) == verdict


def test_the_documented_checksum_example_text() -> None:
    bids = [("3366.1", "7", "0", "3"), ("3366", "6", "3", "4")]
    asks = [("3366.8", "9", "10", "3"), ("3368", "8", "3", "4")]
    assert checksum_text(bids, asks) == "3366.1:7:3366.8:9:3366:6:3368:8"
    assert checksum_text(bids, asks[:1]) == "3366.1:7:3366.8:9:3366:6"
    crc = zlib.crc32(b"3366.1:7:3366.8:9:3366:6:3368:8")
    assert checksum(bids, asks) == crc - 2**32 if crc >= 2**31 else crc


def test_the_documented_book_examples_carry_a_checksum_of_other_levels() -> None:
    """Surprising: the docs' snapshot example's checksum is not its levels' (the example's
    numbers were edited); the real 2022 frames all match (see the replay)."""
    (d,) = json.loads(frames(OKX / "books_doc.jsonl")[0])["data"]
    assert d["checksum"] == -855196043
    assert checksum(d["bids"], d["asks"]) != d["checksum"]


# -- the 2022 recording, replayed ------------------------------------------------------------

BOOK_SYMBOLS = {"BTC-USDT": 1, "BTC-USD-220527": 2, "UNI-USD-SWAP": 3}


def recorded() -> list[bytes]:
    out = []
    for rec in capture(OKX / "capture_2022-05-13.jsonl"):
        if rec["dir"] == "recv":
            raw = rec["raw"]
            out.append(raw.encode() if isinstance(raw, str) else json.dumps(raw).encode())
    return out


def decimal_books(lines: list[bytes]) -> dict[str, tuple[dict[Decimal, Decimal], ...]]:
    """The final books, computed independently of the adapter: Decimals, every message."""
    books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
    for line in lines:
        m = json.loads(line)
        if m.get("arg", {}).get("channel") != "books" or "data" not in m:
            continue
        if m["action"] == "snapshot":
            books[m["arg"]["instId"]] = ({}, {})
        bids, asks = books[m["arg"]["instId"]]
        for side, key in ((bids, "bids"), (asks, "asks")):
            for px, sz, _, _ in m["data"][0][key]:
                if Decimal(sz):
                    side[Decimal(px)] = Decimal(sz)
                else:
                    side.pop(Decimal(px), None)
    return books


def replay(lines: list[bytes]):  # type: ignore[no-untyped-def]
    subs = [("orderbook", s, sid) for s, sid in BOOK_SYMBOLS.items()]
    subs += [("trades", s, 10 + sid) for s, sid in BOOK_SYMBOLS.items()]
    subs += [("ticker", s, 20 + sid) for s, sid in BOOK_SYMBOLS.items()]
    session, sink, events, routes, requested = session_for(subs)
    for name in [f"books:{s}" for s in BOOK_SYMBOLS]:
        routes.get(name).book.start()  # subscribed: the snapshot comes over the WebSocket
    for i, line in enumerate(lines):
        session.on_message(line, RECV + i)
    return session, sink, events, routes, requested


def places_of(lines: list[bytes], inst: str) -> tuple[int, int]:
    pd = sd = 0
    for line in lines:
        m = json.loads(line)
        if m.get("arg") == {"channel": "books", "instId": inst} and "data" in m:
            for key in ("bids", "asks"):
                for px, sz, _, _ in m["data"][0][key]:
                    pd, sd = max(pd, places(px)), max(sd, places(sz))
    return pd, sd


def test_replay_verifies_every_checksum_and_rebuilds_the_books_exactly() -> None:
    lines = recorded()
    book_messages = [ln for ln in lines if b'"channel":"books"' in ln and b'"data"' in ln]
    assert len(book_messages) == 290
    rules = VENUE.book_rules
    assert isinstance(rules, OkxBookRules)
    before = rules.verified
    _, sink, events, routes, requested = replay(lines)
    assert rules.verified - before == 290, "every message's non-zero checksum was compared"
    assert sink.of(Kind.GAP) == [] and requested == [], "no false gap"
    assert events.errors == []
    want = decimal_books(lines)
    for inst, sid in BOOK_SYMBOLS.items():
        book = routes.get(f"books:{inst}").book
        assert (book.counters.gaps, book.counters.snapshots) == (0, 1)
        pd, sd = places_of(lines, inst)
        bids, asks = book_from_records(sink.records, sid)
        got_bids = {exact(p, pd): exact(q, sd) for p, q in bids.items()}
        got_asks = {exact(p, pd): exact(q, sd) for p, q in asks.items()}
        assert (got_bids, got_asks) == want[inst]
    btc_updates = [ln for ln in book_messages if b'"BTC-USDT"' in ln]
    assert routes.get("books:BTC-USDT").book.counters.deltas == len(btc_updates) - 1
    trades = [json.loads(ln) for ln in lines if b'"channel":"trades"' in ln and b"data" in ln]
    assert [r.ref for r in sink.of(Kind.TRADE)] == [int(t["data"][0]["tradeId"]) for t in trades]


def corrupt(lines: list[bytes], nth: int, *, zero_checksums: bool = False) -> list[bytes]:
    """The `nth` BTC-USDT book update with its first bid's size changed; optionally every
    checksum replaced by 0 (no checksum)."""
    out, seen = [], 0
    for line in lines:
        m = json.loads(line)
        if m.get("arg", {}).get("channel") == "books" and "data" in m:
            if zero_checksums:
                m["data"][0]["checksum"] = 0
            if m["arg"]["instId"] == "BTC-USDT" and m["action"] == "update":
                seen += 1
                if seen == nth:
                    level = m["data"][0]["bids"][0]
                    level[1] = str(Decimal(level[1]) + Decimal("0.5"))
            line = json.dumps(m, separators=(",", ":")).encode()
        out.append(line)
    return out


def test_a_corrupted_level_is_caught_by_that_message_and_resyncs_once() -> None:
    lines = corrupt(recorded(), 10)
    _, sink, _, routes, requested = replay(lines)
    btc = routes.get("books:BTC-USDT")
    (gap,) = sink.of(Kind.GAP)
    assert (gap.symbol, gap.aux) == (1, GapReason.CHECKSUM_MISMATCH)
    assert requested == [btc], "exactly one fresh snapshot asked for"
    assert btc.book.counters.deltas == 9, "the 10th update is the one caught"
    after = [r for r in sink.records if r.seq > gap.seq and r.symbol == 1]
    assert after == [], "updates are suppressed until the fresh snapshot"
    assert btc.book.awaiting
    for inst in ("BTC-USD-220527", "UNI-USD-SWAP"):
        assert routes.get(f"books:{inst}").book.counters.gaps == 0


def test_checksum_zero_means_none_and_never_resyncs() -> None:
    lines = corrupt(recorded(), 10, zero_checksums=True)
    rules = VENUE.book_rules
    before = rules.verified  # type: ignore[union-attr]
    _, sink, events, _, requested = replay(lines)
    assert rules.verified == before  # type: ignore[union-attr]
    assert sink.of(Kind.GAP) == [] and requested == [] and events.errors == []


def doc_book(prev: int, seq: int, *, bids: list[list[str]] | None = None) -> bytes:
    frame = json.loads(frames(OKX / "books_doc.jsonl")[1])
    d = frame["data"][0]
    d.update(prevSeqId=prev, seqId=seq, checksum=0, bids=bids or [], asks=[])
    return json.dumps(frame).encode()


def test_a_prev_seq_id_gap_recovers_exactly_once() -> None:
    session, sink, events, routes, requested = session_for([("orderbook", "BTC-USDT", 1)])
    stream = routes.get("books:BTC-USDT")
    stream.book.start()
    first = json.loads(frames(OKX / "books_doc.jsonl")[0])
    first["data"][0]["checksum"] = 0  # the example's own is not its levels'
    snapshot = json.dumps(first).encode()
    session.on_message(snapshot, RECV)  # seqId 123456
    assert stream.book.counters.gaps == 0 and stream.book.last_id == 123456
    session.on_message(doc_book(123456, 123457, bids=[["8476.97", "1", "0", "1"]]), RECV)
    session.on_message(doc_book(123457, 123457), RECV)  # no change
    assert (stream.book.last_id, stream.book.counters.deltas) == (123457, 2)
    session.on_message(doc_book(123460, 123470), RECV)  # 123458..123460 lost
    session.on_message(doc_book(123470, 123471, bids=[["8476.97", "2", "0", "1"]]), RECV)
    session.on_message(doc_book(123471, 123480), RECV)
    (gap,) = sink.of(Kind.GAP)
    assert gap.aux == GapReason.SEQUENCE_GAP and requested == [stream]
    assert [r for r in sink.records if r.seq > gap.seq] == [], "suppressed until the snapshot"
    fresh = json.loads(snapshot)
    fresh["data"][0].update(seqId=123480, checksum=0)
    session.on_message(json.dumps(fresh).encode(), RECV)
    session.on_message(doc_book(123480, 123481, bids=[["8476.97", "3", "0", "1"]]), RECV)
    assert len(sink.of(Kind.SNAPSHOT_BEGIN)) == 2 and requested == [stream]
    assert sink.records[-1].size == 3.0 and stream.book.last_id == 123481
    assert events.errors == []


def test_a_snapshot_far_below_the_book_is_a_reset_and_taken_with_a_gap() -> None:
    """After maintenance OKX's ids start again: a new connection's snapshot far below the
    book is taken (one GAP, then the snapshot), not dropped as a late one; a snapshot a
    little below (another connection lagging) is dropped as before."""
    session, sink, _, routes, requested = session_for([("orderbook", "BTC-USDT", 1)])
    book = routes.get("books:BTC-USDT").book
    book.start()
    first = json.loads(frames(OKX / "books_doc.jsonl")[0])
    first["data"][0].update(checksum=0, seqId=50_000_000)
    session.on_message(json.dumps(first).encode(), RECV)
    late = dict(first, data=[dict(first["data"][0], seqId=49_999_990)])
    session.on_message(json.dumps(late).encode(), RECV)
    assert book.counters.dropped == 1 and sink.of(Kind.GAP) == []
    reset = dict(first, data=[dict(first["data"][0], seqId=12)])
    session.on_message(json.dumps(reset).encode(), RECV)
    (gap,) = sink.of(Kind.GAP)
    assert gap.aux == GapReason.SEQUENCE_GAP and book.last_id == 12 and requested == []
    assert len(sink.of(Kind.SNAPSHOT_BEGIN)) == 2
    session.on_message(doc_book(12, 13, bids=[["8476.97", "5", "0", "1"]]), RECV)
    assert book.last_id == 13 and sink.records[-1].size == 5.0
