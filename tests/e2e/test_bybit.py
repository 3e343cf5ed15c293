"""Bybit end to end, what the venue-parametrized tests cannot show: a service restart (`u=1`
snapshots in the middle of the stream) overwrites the books with no gap and no resync; the
linear category (`bybit-linear`) end to end; spot's 10 args per subscribe request; blast mode
taken in full by the engine."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.config import EngineConfig, ExchangeConfig
from engine.db import DatabaseConfig
from engine.manager import WebSocketManager
from engine.records import Flag, Kind
from tests.e2e.conftest import FAST, Engine, engine_config
from tests.e2e.harness import CASES, SimProc, VenueCase, kinds, until
from tests.e2e.test_engine import assert_books_match, assert_contiguous, trade_refs

pytestmark = pytest.mark.slow
BYBIT = next(c for c in CASES if c.exchange == "bybit")
LINEAR = VenueCase(
    "bybit-linear",
    ("BTC/USDT", "ETH/USDT"),
    ("BTCUSDT", "ETHUSDT"),
    trade_ids_contiguous=False,  # UUIDs: records carry 0
    shutdown_notice=False,
    reject_reason="handler not found",
)


@pytest.fixture
async def sim() -> AsyncIterator[SimProc]:
    s = await SimProc(BYBIT).start()
    yield s
    await s.stop()


@pytest.fixture
async def engine(instance: str, sim: SimProc) -> AsyncIterator[Engine]:
    manager = WebSocketManager(engine_config(instance, BYBIT, sim))
    await manager.start()
    eng = Engine(manager, BYBIT)
    yield eng
    await eng.close()


async def test_a_u1_restart_snapshot_overwrites_the_books_without_a_gap(
    engine: Engine, sim: SimProc
) -> None:
    await engine.open(channels=("trades", "orderbook", "ticker"))
    sids = [engine.symbol_id(s) for s in BYBIT.venue_symbols]
    await until(
        lambda: all(kinds(engine.read(), Kind.SNAPSHOT_END, s) for s in sids), 10, "snapshots"
    )
    before = {s: max(r.ref for r in kinds(engine.read(), Kind.BOOK_LEVEL, s)) for s in sids}
    # the venue's book service restarts: changes nobody is told of, then u=1 snapshots
    assert await sim.control("restart", moves=20) == {"ok": True, "restarted": 5}
    assert (await sim.stats())["restarts"] == 1

    def restarted() -> bool:
        recs = engine.read()
        return all(any(r.ref > before[s] for r in kinds(recs, Kind.BOOK_LEVEL, s)) for s in sids)

    await until(restarted, 10, "the books to continue after the restart")
    await assert_books_match(engine, sim)
    recs = engine.read()
    assert kinds(recs, Kind.GAP) == [], "a restart is not a gap"
    for venue_symbol, sid in zip(BYBIT.venue_symbols, sids):
        assert len(kinds(recs, Kind.SNAPSHOT_END, sid)) == 1, "nor a resync"
        assert_contiguous(trade_refs(engine, sid), venue_symbol)
        refs = [r.ref for r in kinds(recs, Kind.BOOK_LEVEL, sid) if r.flags & Flag.LAST]
        assert refs == sorted(refs), "book update ids keep increasing across the restart"
        bbo = kinds(recs, Kind.BBO, sid)[-1]
        want = await sim.control("book", symbol=venue_symbol)
        assert (bbo.price, bbo.ask_price) == (
            float(want["bids"][-1][0]),
            float(want["asks"][0][0]),
        ), "orderbook.1 (the ticker) follows the restart too"
    m = engine.manager.metrics("c1")
    assert (m.gaps, m.resyncs, m.reconnects) == (0, 0, 0)


async def test_spot_subscribes_at_most_ten_topics_per_request(instance: str) -> None:
    sim = await SimProc(BYBIT, rate=50, args=["--symbols", "25"]).start()
    manager = await WebSocketManager(engine_config(instance, BYBIT, sim)).start()
    try:
        await manager.connect_to_exchange("bybit", "c1", reconnect=FAST)
        instruments = manager.coordinator.exchanges["bybit"].instruments
        symbols = [s for s in instruments if s.startswith("S0")][:25]
        assert len(symbols) == 25
        await manager.subscribe("bybit", "c1", channel="trades", symbols=symbols)
        await manager.wait_for("c1", timeout=30)
        stats = await sim.stats()
        assert (stats["subscribe_requests"], stats["max_args_per_request"]) == (3, 10)
        assert stats["violations"] == {} and stats["pings"] >= 0
        assert [len(s) for s in stats["subscriptions"]] == [25]
    finally:
        await manager.stop()
        await sim.stop()


async def test_linear_perpetuals_end_to_end(instance: str) -> None:
    sim = await SimProc(LINEAR).start()
    engine = Engine(await WebSocketManager(engine_config(instance, LINEAR, sim)).start(), LINEAR)
    try:
        await engine.open(channels=("trades", "orderbook", "ticker"))
        sids = [engine.symbol_id(s) for s in LINEAR.venue_symbols]
        await until(lambda: all(len(trade_refs(engine, s)) >= 3 for s in sids), 20, "trades")
        await assert_books_match(engine, sim)
        recs = engine.read()
        assert kinds(recs, Kind.GAP) == []
        for venue_symbol, sid in zip(LINEAR.venue_symbols, sids):
            assert set(trade_refs(engine, sid)) == {0}, "UUID trade ids: no numeric id"
            info = engine.table.get(sid)  # type: ignore[union-attr]
            assert (info.symbol, info.market) == (venue_symbol[:-4] + "-USDT", 1)
            assert kinds(recs, Kind.BBO, sid)
        assert engine.manager.coordinator.exchanges["bybit-linear"].venue.spec.exchange_id == 12
    finally:
        await engine.close()
        await sim.stop()


@pytest.mark.parametrize(
    ("exchange", "channel", "count"),
    [
        ("bybit", "trades", 20_000),
        ("bybit", "orderbook", 2_000),
        ("bybit-linear", "orderbook", 2_000),
    ],
)
async def test_the_engine_takes_a_blast_in_full(
    instance: str, exchange: str, channel: str, count: int
) -> None:
    sim = await SimProc(exchange, rate=0).start()
    config = EngineConfig(
        database=DatabaseConfig(enabled=False),
        instance=instance,
        stats_interval=0.2,
        exchanges={exchange: ExchangeConfig(ws_url=sim.ws_url, rest_url=sim.rest_url)},
    )
    try:
        async with WebSocketManager(config) as manager:
            await manager.connect_to_exchange(exchange, "c1")
            await manager.subscribe(exchange, "c1", channel=channel, symbols=["BTC/USDT"])
            await manager.wait_for("c1")
            with manager.reader(exchange, start="oldest") as reader:
                records: list[Any] = []

                def snapshot_in() -> bool:
                    records.extend(reader.read())
                    return channel == "trades" or any(r.kind == Kind.SNAPSHOT_END for r in records)

                await until(snapshot_in, 10, "the book snapshot")
                await sim.control("blast", rate="max", count=count)
                want, per = (Kind.TRADE, 1) if channel == "trades" else (Kind.BOOK_LEVEL, 10)

                def counted() -> list[Any]:
                    return [r for r in records if r.kind == want and not r.flags & Flag.SNAPSHOT]

                def complete() -> bool:
                    records.extend(reader.read())
                    return len(counted()) >= count * per

                await until(complete, 60, f"{count} messages in the ring")
                records.extend(reader.read())
                got = counted()
                assert len(got) == count * per
                assert not [r for r in records if r.kind == Kind.GAP]
                refs = [r.ref for r in got if r.flags & Flag.LAST]
                assert len(refs) == count
                assert all(b > a for a, b in itertools.pairwise(refs))
                assert reader.lost == 0
        assert (await sim.stats())["blast"]["sent"] == count
    finally:
        await sim.stop()
