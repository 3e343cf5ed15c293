"""Kraken only, end to end: a book update with a corrupted level fails the venue's checksum in
exactly that message, and the book resyncs exactly once (a GAP record, then a fresh snapshot by
resubscription) while the other book of the connection is untouched."""

from __future__ import annotations

from typing import Any

import pytest

from engine.manager import WebSocketManager
from engine.records import GapReason, Kind
from tests.e2e.conftest import Engine, engine_config
from tests.e2e.harness import CASES, SimProc, kinds, until
from tests.e2e.test_engine import assert_books_match

pytestmark = pytest.mark.slow
CASE = next(c for c in CASES if c.exchange == "kraken")


@pytest.fixture
async def kraken(instance: str) -> Any:
    sim = await SimProc(CASE).start()
    engine = Engine(await WebSocketManager(engine_config(instance, CASE, sim)).start(), CASE)
    yield engine, sim
    await engine.close()
    await sim.stop()


async def test_a_corrupted_level_is_one_checksum_mismatch_and_one_resync(
    kraken: tuple[Engine, SimProc],
) -> None:
    engine, sim = kraken
    await engine.open()
    btc, eth = (engine.symbol_id(s) for s in CASE.venue_symbols)
    await until(
        lambda: all(kinds(engine.read(), Kind.SNAPSHOT_END, s) for s in (btc, eth)),
        10,
        "snapshots",
    )
    answer = await sim.control("corrupt", symbol="BTC/USD")
    assert answer == {"ok": True, "corrupted": 0}
    await until(lambda: len(kinds(engine.read(), Kind.SNAPSHOT_END, btc)) >= 2, 10, "resync")
    await assert_books_match(engine, sim)
    recs = engine.read()
    gaps = kinds(recs, Kind.GAP, btc)
    snapshots = kinds(recs, Kind.SNAPSHOT_BEGIN, btc)
    assert [g.aux for g in gaps] == [GapReason.CHECKSUM_MISMATCH], "one mismatch, one gap"
    assert len(snapshots) == 2, "exactly one resync"
    assert snapshots[0].seq < gaps[0].seq < snapshots[1].seq, "gap, then the fresh snapshot"
    assert kinds(recs, Kind.GAP, eth) == [] and len(kinds(recs, Kind.SNAPSHOT_BEGIN, eth)) == 1
    stats = await sim.stats()
    assert stats["corrupted"] == 1 and stats["violations"] == {}
    m = engine.manager.metrics("c1")
    assert (m.gaps, m.resyncs, m.reconnects, m.parse_errors) == (1, 1, 0, {})
    # the resubscription went out as an unsubscribe and a subscribe of the book alone
    assert stats["subscribe_requests"] == 5  # 2 trades, 2 books, the book again


async def test_books_are_cut_to_the_depth_and_trades_are_the_venues(
    kraken: tuple[Engine, SimProc],
) -> None:
    engine, sim = kraken
    await engine.open()
    btc = engine.symbol_id("BTC/USD")
    await until(lambda: len(kinds(engine.read(), Kind.TRADE, btc)) >= 5, 20, "trades")
    await assert_books_match(engine, sim)  # the simulator's top 10 (it holds 10 to 40 a side)
    recs = engine.read()
    removals = [r for r in kinds(recs, Kind.BOOK_LEVEL, btc) if r.size == 0]
    assert removals, "levels left the book (deleted, or cut when out of range)"
    refs = [r.ref for r in kinds(recs, Kind.TRADE, btc)]
    assert refs == list(range(refs[0], refs[0] + len(refs)))
    log = {t[0] for t in await sim.control("trades", symbol="BTC/USD")}
    assert set(refs) <= log
    m = engine.manager.metrics("c1")
    assert (m.gaps, m.resyncs, m.parse_errors) == (0, 0, {})
