"""OKX end to end, what the venue-parametrized tests cannot show: a corrupted level is caught
by the book's checksum and resyncs that book once (and a venue sending checksum 0 is never
checked); a prevSeqId gap suppresses the book's updates until its fresh snapshot; the 64008
notice rolls the connection over without a gap; books5 and bbo-tbt through the engine; with no
`books` snapshot on the WebSocket (`ws_snapshot=0`), each book's first one comes from REST, once
per symbol, and a resync goes through REST again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from engine.manager import WebSocketManager
from engine.records import GapReason, Kind, Record
from tests.e2e.conftest import Engine, engine_config
from tests.e2e.harness import CASES, SimProc, as_text, book_of, kinds, normalize, until
from tests.e2e.test_engine import assert_books_match

pytestmark = pytest.mark.slow
OKX = next(c for c in CASES if c.exchange == "okx")


async def started(instance: str, sim: SimProc) -> Engine:
    return Engine(await WebSocketManager(engine_config(instance, OKX, sim)).start(), OKX)


@pytest.fixture
async def sim() -> AsyncIterator[SimProc]:
    s = await SimProc(OKX).start()
    yield s
    await s.stop()


@pytest.fixture
async def engine(instance: str, sim: SimProc) -> AsyncIterator[Engine]:
    eng = await started(instance, sim)
    yield eng
    await eng.close()


async def snapshots(engine: Engine) -> list[int]:
    await engine.open()
    sids = [engine.symbol_id(s) for s in OKX.venue_symbols]
    await until(
        lambda: all(kinds(engine.read(), Kind.SNAPSHOT_END, s) for s in sids), 10, "snapshots"
    )
    return sids


def between_gap_and_snapshot(recs: list[Record], sid: int) -> list[Record]:
    (gap,) = kinds(recs, Kind.GAP, sid)
    fresh = kinds(recs, Kind.SNAPSHOT_BEGIN, sid)[1]
    return [r for r in kinds(recs, Kind.BOOK_LEVEL, sid) if gap.seq < r.seq < fresh.seq]


async def test_a_corrupted_level_resyncs_that_book_once(engine: Engine, sim: SimProc) -> None:
    btc, eth = await snapshots(engine)
    await sim.control("corrupt", symbol="BTC-USDT")
    await until(lambda: len(kinds(engine.read(), Kind.SNAPSHOT_END, btc)) >= 2, 10, "the resync")
    await assert_books_match(engine, sim)
    assert (await sim.stats())["corrupted"] == 1
    recs = engine.read()
    assert [g.aux for g in kinds(recs, Kind.GAP, btc)] == [GapReason.CHECKSUM_MISMATCH]
    assert len(kinds(recs, Kind.SNAPSHOT_END, btc)) == 2, "exactly one resync"
    assert between_gap_and_snapshot(recs, btc) == [], "updates suppressed until the snapshot"
    assert kinds(recs, Kind.GAP, eth) == [] and len(kinds(recs, Kind.SNAPSHOT_END, eth)) == 1
    m = engine.manager.metrics("c1")
    assert (m.gaps, m.resyncs, m.reconnects, m.parse_errors) == (1, 1, 0, {})


async def test_checksum_zero_is_never_checked(instance: str) -> None:
    sim = await SimProc(OKX, args=["--option", "checksums=0"]).start()
    engine = await started(instance, sim)
    try:
        btc, eth = await snapshots(engine)
        await assert_books_match(engine, sim)  # no false mismatch on the way
        await sim.control("pause", value=0)
        await sim.control("corrupt", symbol="BTC-USDT")

        async def corrupted() -> bool:
            return bool((await sim.stats())["corrupted"] == 1)

        await until(corrupted, 10, "the corrupted update")
        await sim.quiesce()
        last = (await sim.stats())["update_ids"]["BTC-USDT"]
        await until(
            lambda: max(r.ref for r in kinds(engine.read(), Kind.BOOK_LEVEL, btc)) == last,
            10,
            "every BTC-USDT update, the corrupted one and after",
        )
        recs = engine.read()
        assert kinds(recs, Kind.GAP) == [], "no checksum, nothing to compare: no resync"
        assert [len(kinds(recs, Kind.SNAPSHOT_END, s)) for s in (btc, eth)] == [1, 1]
        m = engine.manager.metrics("c1")
        assert (m.gaps, m.resyncs, m.reconnects, m.parse_errors) == (0, 0, 0, {})
    finally:
        await engine.close()
        await sim.stop()


async def test_a_prev_seq_id_gap_suppresses_updates_until_the_fresh_snapshot(
    engine: Engine, sim: SimProc
) -> None:
    sids = await snapshots(engine)
    await sim.fault("skip", n=4)
    await until(
        lambda: all(len(kinds(engine.read(), Kind.SNAPSHOT_END, s)) >= 2 for s in sids),
        10,
        "the resyncs",
    )
    await assert_books_match(engine, sim)
    recs = engine.read()
    for sid in sids:
        assert [g.aux for g in kinds(recs, Kind.GAP, sid)] == [GapReason.SEQUENCE_GAP]
        assert len(kinds(recs, Kind.SNAPSHOT_END, sid)) == 2
        assert between_gap_and_snapshot(recs, sid) == []
    stats = await sim.stats()
    assert stats["violations"] == {}


async def test_the_service_upgrade_notice_rolls_over_make_before_break(
    engine: Engine, sim: SimProc
) -> None:
    sids = await snapshots(engine)
    assert (await sim.stats())["connections_total"] == 1
    await sim.fault("shutdown", grace=1.5)
    await until(lambda: engine.manager.metrics("c1").rollovers >= 1, 10, "a rollover")

    async def old_one_gone() -> bool:
        stats = await sim.stats()
        return bool(stats["connections_total"] == 2 and stats["clients"] == 1)

    await until(old_one_gone, 10, "the old connection cut by the venue")
    # trades are a random share of the simulated market: see some on every symbol before the
    # books are compared (which stops the market)
    await until(
        lambda: all(len(kinds(engine.read(), Kind.TRADE, s)) >= 2 for s in sids),
        15,
        "trades on every symbol",
    )
    await assert_books_match(engine, sim)
    recs = engine.read()
    assert kinds(recs, Kind.GAP) == []
    for sid in sids:
        assert len(kinds(recs, Kind.SNAPSHOT_END, sid)) == 1, "no resync across the switch"
        refs = [r.ref for r in kinds(recs, Kind.TRADE, sid)]
        assert refs == list(range(refs[0], refs[0] + len(refs))), "no trade lost or twice"
    assert engine.manager.metrics("c1").reconnects == 0


async def test_books5_and_bbo_tbt(engine: Engine, sim: SimProc) -> None:
    await engine.open(channels=("books5", "bbo-tbt"))
    sid = engine.symbol_id("BTC-USDT")
    await until(lambda: len(kinds(engine.read(), Kind.BBO, sid)) >= 3, 10, "bbo-tbt")
    await sim.quiesce()
    want = await sim.control("book", symbol="BTC-USDT")
    best_bids = sorted(want["bids"], key=lambda lv: Decimal(lv[0]), reverse=True)[:5]
    best_asks = sorted(want["asks"], key=lambda lv: Decimal(lv[0]))[:5]

    def top5() -> bool:
        bids, asks = book_of(engine.read(), sid)
        return normalize(as_text(bids, engine.table, sid)) == normalize(dict(best_bids)) and (
            normalize(as_text(asks, engine.table, sid)) == normalize(dict(best_asks))
        )

    await until(top5, 10, "the book to be the simulator's best five levels")

    def last_bbo() -> bool:
        bbo = kinds(engine.read(), Kind.BBO, sid)[-1]
        return (Decimal(repr(bbo.price)), Decimal(repr(bbo.ask_price))) == (
            Decimal(best_bids[0][0]),
            Decimal(best_asks[0][0]),
        )

    await until(last_bbo, 10, "the last bbo-tbt to be the best bid and ask")
    recs = engine.read()
    assert len(kinds(recs, Kind.SNAPSHOT_END, sid)) == 1 and kinds(recs, Kind.GAP) == []
    assert engine.manager.metrics("c1").parse_errors == {}


async def live_from_rest(engine: Engine) -> list[int]:
    """The books' first snapshots, then an update after each: the REST book bridged (the first
    update after it applies whatever its `prevSeqId`; the chain is checked from there)."""
    sids = await snapshots(engine)

    def updated(sid: int) -> bool:
        recs = engine.read()
        end = kinds(recs, Kind.SNAPSHOT_END, sid)[0]
        return any(r.seq > end.seq for r in kinds(recs, Kind.BOOK_LEVEL, sid))

    await until(lambda: all(updated(s) for s in sids), 10, "updates after the REST books")
    return sids


async def test_without_a_websocket_snapshot_the_first_book_comes_from_rest(
    instance: str,
) -> None:
    sim = await SimProc(OKX, args=["--option", "ws_snapshot=0"]).start()
    engine = await started(instance, sim)
    try:
        sids = await live_from_rest(engine)
        await assert_books_match(engine, sim)
        recs = engine.read()
        assert kinds(recs, Kind.GAP) == []
        for sid in sids:
            (snap,) = kinds(recs, Kind.SNAPSHOT_BEGIN, sid)
            assert snap.ref == 0, "the REST book carries no seqId"
            assert kinds(recs, Kind.BOOK_LEVEL, sid)[-1].ref > 0, "updates after it, by seqId"
        stats = await sim.stats()
        assert stats["rest_books"] == {s: 1 for s in OKX.venue_symbols}
        assert stats["violations"] == {}
        m = engine.manager.metrics("c1")
        assert (m.gaps, m.resyncs, m.reconnects, m.parse_errors) == (0, 0, 0, {})
    finally:
        await engine.close()
        await sim.stop()


async def test_without_a_websocket_snapshot_a_resync_takes_rest_again(instance: str) -> None:
    sim = await SimProc(OKX, args=["--option", "ws_snapshot=0"]).start()
    engine = await started(instance, sim)
    try:
        sids = await live_from_rest(engine)
        await sim.fault("skip", n=4)
        await until(
            lambda: all(len(kinds(engine.read(), Kind.SNAPSHOT_END, s)) >= 2 for s in sids),
            10,
            "the resyncs",
        )
        await assert_books_match(engine, sim)
        recs = engine.read()
        for sid in sids:
            assert [g.aux for g in kinds(recs, Kind.GAP, sid)] == [GapReason.SEQUENCE_GAP]
            assert len(kinds(recs, Kind.SNAPSHOT_END, sid)) == 2
            assert between_gap_and_snapshot(recs, sid) == []
        stats = await sim.stats()
        assert stats["rest_books"] == {s: 2 for s in OKX.venue_symbols}
        assert stats["violations"] == {}
    finally:
        await engine.close()
        await sim.stop()
