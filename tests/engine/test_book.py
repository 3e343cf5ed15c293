"""Books and their synchronisation: best-price tracking, refusals, checksum hook, and a property
test of the whole procedure against a simple model (RELIABILITY rows 9, 10, 12)."""

from __future__ import annotations

import random
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.binance.venue import SpotBookRules
from engine.book import Book, BookSync, SyncState
from engine.records import Flag, GapReason, Kind
from engine.venue import BookSnapshot
from tests.support import ListSink, book_from_records


class Delta(msgspec.Struct):
    first_id: int
    last_id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    prev_id: int = -1


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 30), st.integers(0, 3)), max_size=200))
def test_best_prices_track_a_naive_book(ops: list[tuple[bool, int, int]]) -> None:
    book = Book()
    naive: dict[bool, dict[float, float]] = {True: {}, False: {}}
    for is_bid, price, size in ops:
        (book.set_bid if is_bid else book.set_ask)(float(price), float(size))
        if size:
            naive[is_bid][float(price)] = float(size)
        else:
            naive[is_bid].pop(float(price), None)
        assert book.best_bid() == max(naive[True], default=None)
        assert book.best_ask() == min(naive[False], default=None)
    assert book.bids == naive[True] and book.asks == naive[False]
    bids, asks = book.top(3)
    assert bids == sorted(naive[True].items(), reverse=True)[:3]
    assert asks == sorted(naive[False].items())[:3]


def sync(rules: Any = None) -> tuple[BookSync, ListSink, list[BookSync]]:
    sink, requested = ListSink(), []
    bs = BookSync(
        rules=rules or SpotBookRules(), symbol=7, sink=sink, request_snapshot=requested.append
    )
    return bs, sink, requested


SNAP = BookSnapshot(10, [(99.0, 1.0), (98.0, 2.0)], [(101.0, 1.0), (102.0, 3.0)])


def test_a_crossed_update_is_never_published_and_resyncs() -> None:
    bs, sink, requested = sync()
    bs.on_snapshot(SNAP, 1)
    before = len(sink.records)
    bs.on_delta(Delta(11, 11, [(101.5, 1.0)], []), 0, 2)  # a bid above the best ask
    new = sink.records[before:]
    assert [(r.kind, r.aux) for r in new] == [(Kind.GAP, GapReason.CROSSED_BOOK)]
    assert requested == [bs] and bs.state == SyncState.AWAITING_SNAPSHOT


def test_a_crossed_snapshot_is_refused_and_asked_for_again_in_a_new_epoch() -> None:
    bs, sink, requested = sync()
    bs.start()
    epoch = bs.epoch
    bs.on_snapshot(BookSnapshot(10, [(101.5, 1.0)], [(101.0, 1.0)]), 1)
    assert sink.records == [] and bs.state == SyncState.AWAITING_SNAPSHOT
    # the worker's fetch loop refetches when the epoch moved while the book still awaits
    assert requested == [bs, bs] and bs.epoch == epoch + 1
    bs.on_snapshot(SNAP, 2)
    assert bs.state != SyncState.AWAITING_SNAPSHOT and len(sink.records) > 0


def test_a_negative_size_is_refused() -> None:
    bs, sink, requested = sync()
    bs.on_snapshot(SNAP, 1)
    bs.on_delta(Delta(11, 11, [(97.0, -1.0)], []), 0, 2)
    assert sink.records[-1].aux == GapReason.BAD_UPDATE and requested == [bs]


def test_a_checksum_mismatch_resyncs_exactly_once() -> None:
    class Checked(SpotBookRules):
        def verify(self, book: Book, message: Any) -> bool:
            return getattr(message, "ok", True)

    class BadDelta(Delta):
        ok: bool = False

    bs, sink, requested = sync(Checked())
    bs.on_snapshot(SNAP, 1)
    bs.on_delta(Delta(11, 11, [(97.0, 1.0)], []), 0, 2)
    bs.on_delta(BadDelta(12, 12, [(96.0, 1.0)], []), 0, 3)
    bs.on_delta(Delta(13, 13, [(95.0, 1.0)], []), 0, 4)  # suppressed until a new snapshot
    gaps = [r for r in sink.records if r.kind == Kind.GAP]
    assert [g.aux for g in gaps] == [GapReason.CHECKSUM_MISMATCH]
    assert requested == [bs]
    assert not [r for r in sink.records if r.price == 96.0], "the bad update never shows"


# -- the procedure against a model ------------------------------------------------------------

PRICES = [float(p) for p in range(90, 111)]


def feed(seed: int, n: int) -> tuple[list[Delta], list[str]]:
    """A true sequence of deltas (ids step by 1 to 3 per delta, absolute sizes) and, for each,
    what the network does with it: deliver, drop, or deliver twice. Generated from a seed so
    that thousands of sequences run in seconds; a failing seed reproduces exactly."""
    rng = random.Random(seed)
    deltas = []
    uid = 10
    for _ in range(n):
        span = rng.randint(1, 3)
        bids = [(p, float(rng.randint(0, 5))) for p in rng.sample(PRICES[:10], rng.randint(0, 3))]
        asks = [(p, float(rng.randint(0, 5))) for p in rng.sample(PRICES[11:], rng.randint(0, 3))]
        deltas.append(Delta(uid + 1, uid + span, bids, asks))
        uid += span
    fate = [rng.choice(["ok", "ok", "ok", "drop", "dup"]) for _ in range(n)]
    return deltas, fate


def truth_after(deltas: list[Delta], upto: int) -> tuple[dict[float, float], dict[float, float]]:
    bids, asks = dict(SNAP.bids), dict(SNAP.asks)
    for d in deltas:
        if d.last_id > upto:
            break
        for side, levels in ((bids, d.bids), (asks, d.asks)):
            for p, q in levels:
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)
    return bids, asks


@settings(max_examples=3000)
@given(st.integers(0, 2**32), st.integers(1, 60))
def test_book_sync_matches_a_simple_model(seed: int, n: int) -> None:
    deltas, fate = feed(seed, n)
    bs, sink, requested = sync()
    bs.on_snapshot(SNAP, 1)
    model_last, model_gaps, awaiting = SNAP.update_id, 0, False
    delivered_upto = SNAP.update_id
    for d, f in zip(deltas, fate):
        for _ in range({"ok": 1, "drop": 0, "dup": 2}[f]):
            bs.on_delta(d, 0, 2)
            delivered_upto = max(delivered_upto, d.last_id)
            # the model: the documented procedure, on ids alone
            if awaiting or d.last_id <= model_last:
                pass
            elif d.first_id > model_last + 1:
                model_gaps += 1
                awaiting = True
            else:
                model_last = d.last_id
        if awaiting:  # answer the snapshot request with the truth as of now
            assert requested[-1] is bs
            bids, asks = truth_after(deltas, delivered_upto)
            bs.on_snapshot(
                BookSnapshot(delivered_upto, sorted(bids.items()), sorted(asks.items())), 3
            )
            model_last, awaiting = delivered_upto, False
    gaps = [r for r in sink.records if r.kind == Kind.GAP]
    assert len(gaps) == model_gaps == len(requested)
    assert bs.last_id == model_last
    want_bids, want_asks = truth_after(deltas, model_last)
    assert (bs.book.bids, bs.book.asks) == (want_bids, want_asks), "the book equals the truth"
    assert book_from_records(sink.records, 7) == (want_bids, want_asks), "and so does a reader's"
    assert all(r.flags & Flag.LAST for r in sink.records if r.kind in (Kind.GAP, Kind.SNAPSHOT_END))
