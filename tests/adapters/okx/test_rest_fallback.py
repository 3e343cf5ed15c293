"""The first book from REST when `books` sends no snapshot: the book sync's fallback with OKX's
rules, against the simulator over loopback (`ws_snapshot=0`: updates only), and the bridge by
time that the REST book (no `seqId`) needs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import aiohttp
import picows

from adapters.okx import VENUE
from adapters.okx.schemas import OkxBookDelta, OkxBookSnapshot
from adapters.okx.simulator import OkxSim
from adapters.okx.venue import REST_FALLBACK_AFTER, OkxBookRules
from adapters.simkit import SimServer
from engine.book import BookSync, SyncState
from engine.records import Kind
from engine.streams import RouteTable, Stream, make_stream
from engine.venue import Verdict
from tests.e2e.harness import until
from tests.support import Events, ListSink, RawClient, book_from_records, shape

MS = 1_000_000
SYMBOL = "BTC-USDT"


def books_stream() -> tuple[Stream, ListSink, list[Stream], Callable[[bytes], int]]:
    sink, routes, requested = ListSink(exchange=VENUE.spec.exchange_id), RouteTable(), []
    ch = VENUE.spec.channel("books")
    assert ch is not None
    stream = make_stream(VENUE, ch, SYMBOL, 1, sink, requested.append)
    routes.add(stream)
    session = VENUE.session(routes, sink, Events())
    return stream, sink, requested, lambda f: session.on_message(f, time.time_ns())


async def subscribed(server: SimServer) -> RawClient:
    transport, client = await RawClient.connect(f"{server.ws_url}/ws/v5/public")
    sub = {"id": "1", "op": "subscribe", "args": [{"channel": "books", "instId": SYMBOL}]}
    transport.send(picows.WSMsgType.TEXT, json.dumps(sub).encode())
    return client


class Feeder:
    """Hands the client's frames to the session in order, each once."""

    def __init__(self, client: RawClient, on_message: Callable[[bytes], int]) -> None:
        self.client, self.on_message, self.fed = client, on_message, 0

    def __call__(self) -> None:
        frames = self.client.frames
        while self.fed < len(frames):
            self.on_message(frames[self.fed])
            self.fed += 1


def levels(want: list[list[str]]) -> dict[float, float]:
    return {float(p): float(q) for p, q in want}


async def test_updates_without_a_snapshot_take_one_rest_book() -> None:
    async with SimServer(OkxSim(ws_snapshot="0"), rate=400) as server:
        stream, sink, requested, on_message = books_stream()
        book = stream.book
        assert book is not None
        book.start()  # what the worker does on the subscription's ack
        feed = Feeder(await subscribed(server), on_message)
        await until(lambda: feed() or requested, 10, "the REST request")
        assert requested == [stream] and book.rest_fallback and book.awaiting
        assert kinds_of(sink, Kind.BOOK_LEVEL) == [], "nothing published before a book"
        # the worker's fetch: the venue's own URL and parser, the simulator's REST answer
        url = VENUE.snapshot_url(server.rest_url, SYMBOL)
        assert url is not None
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            body = await resp.read()
        # what OKX documents for GET /api/v5/market/books: asks, bids, ts; no seqId, no checksum
        (data,) = json.loads(body)["data"]
        assert sorted(data) == ["asks", "bids", "ts"] and shape(data) == {
            "asks": [["str"]],
            "bids": [["str"]],
            "ts": "str",
        }
        snap = VENUE.parse_snapshot(body)
        assert isinstance(snap, OkxBookSnapshot) and snap.rest and snap.update_id == 0
        verified = VENUE.book_rules.verified
        book.on_snapshot(snap, time.time_ns(), from_rest=True)
        sim = server.venue
        assert isinstance(sim, OkxSim)
        await until(
            lambda: feed() or book.counters.deltas >= 20, 10, "updates applied after the book"
        )
        server.paused_market = True
        await until(
            lambda: feed() or book.last_id == sim.symbols[SYMBOL].update_id,
            10,
            "the book to reach the simulator's last update",
        )
        want = sim.control(["book"], {"symbol": SYMBOL})
        assert book.state == SyncState.LIVE
        assert (book.book.bids, book.book.asks) == (levels(want["bids"]), levels(want["asks"]))
        assert book_from_records(sink.records, 1) == (book.book.bids, book.book.asks)
        assert len(requested) == 1 and sim.rest_books == {SYMBOL: 1}
        assert (book.counters.gaps, book.counters.resyncs, book.counters.snapshots) == (0, 0, 1)
        assert kinds_of(sink, Kind.GAP) == []
        assert VENUE.book_rules.verified - verified >= 20, "every update's checksum compared"


async def test_a_websocket_snapshot_first_asks_nothing_of_rest() -> None:
    async with SimServer(OkxSim(), rate=400) as server:
        stream, sink, requested, on_message = books_stream()
        book = stream.book
        assert book is not None
        book.start()
        feed = Feeder(await subscribed(server), on_message)
        await until(
            lambda: feed() or book.counters.deltas >= 3 * REST_FALLBACK_AFTER,
            10,
            "updates after the WebSocket snapshot",
        )
        assert requested == [] and not book.rest_fallback
        assert book.counters.snapshots == 1 and kinds_of(sink, Kind.GAP) == []
        assert isinstance(server.venue, OkxSim) and server.venue.rest_books == {}


def kinds_of(sink: ListSink, kind: Kind) -> list[object]:
    return [r for r in sink.records if r.kind == kind]


# -- the bridge by time, step by step ---------------------------------------------------------


def delta(prev: int, seq: int, bid: float) -> OkxBookDelta:
    return OkxBookDelta(seq, seq, prev, [(bid, 1.0)], [], [], [], 0)


def fallback_sync() -> tuple[BookSync, ListSink, list[BookSync]]:
    sink, requested = ListSink(), []
    sync = BookSync(rules=OkxBookRules(), symbol=1, sink=sink, request_snapshot=requested.append)
    sync.start()
    return sync, sink, requested


def rest_book(ts_ms: int) -> OkxBookSnapshot:
    return OkxBookSnapshot(0, [(100.0, 5.0)], [(101.0, 5.0)], ts_ms * MS, rest=True)


def test_buffered_updates_bridge_to_the_rest_book_by_time() -> None:
    sync, sink, requested = fallback_sync()
    ts = 1_700_000_000_000
    sync.on_delta(delta(-1, 10, 90.0), (ts - 1) * MS, 0)  # in the REST book already
    sync.on_delta(delta(10, 11, 91.0), ts * MS, 0)  # stamped as the REST book: in it
    assert requested == [] and sync.awaiting
    sync.on_delta(delta(11, 12, 92.0), (ts + 1) * MS, 0)  # the first later: applies
    assert requested == [sync] and sync.rest_fallback, "one request at the third update"
    sync.on_delta(delta(12, 13, 93.0), (ts + 2) * MS, 0)
    assert requested == [sync], "asked once"
    sync.on_snapshot(rest_book(ts), 0, from_rest=True)
    sync.on_delta(delta(13, 14, 94.0), (ts + 3) * MS, 0)
    assert (sync.state, sync.last_id, sync.counters.dropped) == (SyncState.LIVE, 14, 2)
    assert sync.book.bids == {100.0: 5.0, 92.0: 1.0, 93.0: 1.0, 94.0: 1.0}
    assert book_from_records(sink.records, 1) == (sync.book.bids, sync.book.asks)


def test_no_later_update_buffered_the_next_live_one_bridges() -> None:
    sync, _, requested = fallback_sync()
    ts = 1_700_000_000_000
    for i in range(REST_FALLBACK_AFTER):
        sync.on_delta(delta(9 + i, 10 + i, 90.0 + i), (ts - 5 + i) * MS, 0)
    sync.on_snapshot(rest_book(ts), 0, from_rest=True)
    assert sync.state == SyncState.BRIDGING and sync.counters.dropped == REST_FALLBACK_AFTER
    sync.on_delta(delta(12, 13, 95.0), ts * MS, 0)  # at the book's time: dropped
    sync.on_delta(delta(13, 14, 96.0), (ts + 1) * MS, 0)
    assert (sync.state, sync.last_id) == (SyncState.LIVE, 14)
    sync.on_delta(delta(20, 21, 97.0), (ts + 2) * MS, 0)  # prevSeqId chain broken: a gap
    assert sync.awaiting and sync.counters.gaps == 1 and requested == [sync, sync]
    assert not sync.rest_fallback, "a resync asks the venue again (a resubscription) first"


def test_a_websocket_snapshot_arriving_first_wins() -> None:
    sync, _, requested = fallback_sync()
    ts = 1_700_000_000_000
    for i in range(REST_FALLBACK_AFTER):
        sync.on_delta(delta(9 + i, 10 + i, 90.0 + i), (ts + i) * MS, 0)
    assert requested == [sync]
    # the venue's snapshot, late: it bridges by id as usual
    sync.resnapshot(OkxBookSnapshot(11, [(100.0, 5.0)], [(101.0, 5.0)], ts * MS), 0)
    assert (sync.state, sync.last_id) == (SyncState.LIVE, 12)
    assert not sync.awaiting, "the REST answer finds a book that awaits nothing: discarded"


def test_rules_without_the_fallback_never_ask_rest() -> None:
    class NoFallback(OkxBookRules):
        rest_fallback_after = None

    sink, requested = ListSink(), []
    sync = BookSync(rules=NoFallback(), symbol=1, sink=sink, request_snapshot=requested.append)
    sync.start()
    for i in range(50):
        sync.on_delta(delta(9 + i, 10 + i, 90.0), i * MS, 0)
    assert requested == [] and not sync.rest_fallback


def test_bridge_rest_verdicts() -> None:
    rules, snap = OkxBookRules(), rest_book(1_000)
    assert rules.bridge_rest(snap, delta(5, 6, 1.0), 999 * MS) == Verdict.DROP
    assert rules.bridge_rest(snap, delta(5, 6, 1.0), 1_000 * MS) == Verdict.DROP
    assert rules.bridge_rest(snap, delta(5, 6, 1.0), 1_001 * MS) == Verdict.APPLY
