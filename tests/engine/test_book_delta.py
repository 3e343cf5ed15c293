"""BookSync's per-delta path: levels applied and written in order, the last one flagged, a
removal by size 0, and a bad level (negative size) invalidating the book."""

from __future__ import annotations

from types import SimpleNamespace

from adapters.binance.venue import SpotBookRules
from engine.book import BookSync
from engine.records import ASK, BID, Flag, GapReason, Kind
from engine.venue import BookSnapshot
from tests.support import ListSink


def delta(first: int, last: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]]):  # type: ignore[no-untyped-def]
    return SimpleNamespace(first_id=first, last_id=last, prev_id=-1, bids=bids, asks=asks)


def synced() -> tuple[BookSync, ListSink, list[BookSync]]:
    sink = ListSink()
    asked: list[BookSync] = []
    sync = BookSync(rules=SpotBookRules(), symbol=7, sink=sink, request_snapshot=asked.append)
    sync.start()
    sync.on_snapshot(BookSnapshot(100, [(10.0, 1.0), (9.0, 2.0)], [(11.0, 1.0), (12.0, 3.0)]), 1)
    sink.records.clear()
    return sync, sink, asked


def test_delta_levels_are_applied_and_written_in_order() -> None:
    sync, sink, _ = synced()
    sync.on_delta(delta(101, 104, [(10.0, 0.0), (9.5, 4.0)], [(11.0, 2.0), (13.0, 1.0)]), 5, 6)
    assert sync.book.bids == {9.0: 2.0, 9.5: 4.0}
    assert sync.book.asks == {11.0: 2.0, 12.0: 3.0, 13.0: 1.0}
    assert sync.book.best_bid() == 9.5 and sync.book.best_ask() == 11.0
    recs = sink.records
    assert [(r.kind, r.side, r.price, r.size, r.ref) for r in recs] == [
        (Kind.BOOK_LEVEL, BID, 10.0, 0.0, 104),
        (Kind.BOOK_LEVEL, BID, 9.5, 4.0, 104),
        (Kind.BOOK_LEVEL, ASK, 11.0, 2.0, 104),
        (Kind.BOOK_LEVEL, ASK, 13.0, 1.0, 104),
    ]
    assert [r.flags & Flag.LAST for r in recs] == [0, 0, 0, Flag.LAST]
    assert all(r.exch_ts == 5 and r.recv_ts == 6 and r.symbol == 7 for r in recs)


def test_last_flag_lands_on_the_last_bid_when_there_are_no_asks() -> None:
    sync, sink, _ = synced()
    sync.on_delta(delta(101, 102, [(9.0, 1.0), (8.0, 1.0)], []), 5, 6)
    assert [r.flags & Flag.LAST for r in sink.records] == [0, Flag.LAST]


def test_a_negative_size_invalidates_the_book_and_asks_for_a_snapshot() -> None:
    sync, sink, asked = synced()
    asked.clear()
    sync.on_delta(delta(101, 102, [(9.0, 1.0)], [(11.0, -1.0)]), 5, 6)
    gaps = sink.of(Kind.GAP)
    assert len(gaps) == 1 and gaps[0].aux == GapReason.BAD_UPDATE
    assert not sink.of(Kind.BOOK_LEVEL)
    assert sync.awaiting and asked == [sync]
    assert sync.book.bids == {} and sync.book.asks == {}
