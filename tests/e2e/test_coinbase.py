"""Coinbase only, end to end: a break in a connection's heartbeats or `sequence_num` resyncs
every book of that connection exactly once, with GAP records, and no book of another one;
books beyond the venue's level2 cap go to another connection."""

from __future__ import annotations

from typing import Any

import pytest

from engine.manager import WebSocketManager
from engine.records import GapReason, Kind
from tests.e2e.conftest import FAST, Engine, engine_config
from tests.e2e.harness import CASES, SimProc, kinds, until
from tests.e2e.test_engine import assert_books_match

pytestmark = pytest.mark.slow
CASE = next(c for c in CASES if c.exchange == "coinbase")


@pytest.fixture
async def coinbase(instance: str) -> Any:
    sim = await SimProc("coinbase").start()
    engine = Engine(await WebSocketManager(engine_config(instance, CASE, sim)).start(), CASE)
    yield engine, sim
    await engine.close()
    await sim.stop()


async def open_two_connections(engine: Engine) -> tuple[int, int]:
    """c1 carries BTC-USD's book and trades, c2 ETH-USD's book: two sockets."""
    manager = engine.manager
    btc, eth = CASE.symbols
    for conn, symbol, channels in (
        ("c1", btc, ("orderbook", "trades")),
        ("c2", eth, ("orderbook",)),
    ):
        await manager.connect_to_exchange("coinbase", conn, reconnect=FAST)
        for channel in channels:
            await manager.subscribe("coinbase", conn, channel=channel, symbols=[symbol])
        await engine.open(conn, channels=())  # waits until live; makes the reader
    ids = engine.symbol_id("BTC-USD"), engine.symbol_id("ETH-USD")
    await until(
        lambda: all(kinds(engine.read(), Kind.SNAPSHOT_END, s) for s in ids), 10, "snapshots"
    )
    return ids


async def one_more_heartbeat(sim: SimProc) -> None:
    """Wait for two more heartbeats (e.g. after a loss, which must not be reported twice)."""
    start = (await sim.stats())["heartbeat_counter"]

    async def later() -> bool:
        return bool((await sim.stats())["heartbeat_counter"] >= start + 2)

    await until(later, 5, "two more heartbeats")


@pytest.mark.parametrize(
    ("fault", "resynced"),
    [
        ({"skip": 2}, ("c1", "c2")),  # the venue's counter jumps: every connection sees it
        ({"lose": 1, "oldest": 1}, ("c1",)),  # one heartbeat lost on c1: sequence and counter
    ],
    ids=["counter_jump", "lost_heartbeat"],
)
async def test_a_heartbeat_break_resyncs_every_book_of_that_connection_once(
    coinbase: tuple[Engine, SimProc], fault: dict[str, int], resynced: tuple[str, ...]
) -> None:
    engine, sim = coinbase
    btc, eth = await open_two_connections(engine)
    await one_more_heartbeat(sim)  # both connections know the counter
    await sim.control("heartbeat", **fault)
    books = {"c1": btc, "c2": eth}
    for conn in resynced:
        sid = books[conn]
        await until(lambda s=sid: len(kinds(engine.read(), Kind.SNAPSHOT_END, s)) >= 2, 10, conn)
    await one_more_heartbeat(sim)
    await assert_books_match(engine, sim)
    recs = engine.read()
    for conn, sid in books.items():
        gaps = kinds(recs, Kind.GAP, sid)
        snapshots = kinds(recs, Kind.SNAPSHOT_BEGIN, sid)
        m = engine.manager.metrics(conn)
        if conn in resynced:
            assert [g.aux for g in gaps] == [GapReason.SEQUENCE_GAP], f"one gap on {conn}"
            assert len(snapshots) == 2, f"exactly one resync on {conn}"
            assert gaps[0].seq < snapshots[1].seq, "the gap record comes before the snapshot"
            assert (m.gaps, m.resyncs) == (1, 1)
        else:
            assert gaps == [] and len(snapshots) == 1, f"{conn} was not touched"
            assert (m.gaps, m.resyncs) == (0, 0)
        assert m.reconnects == 0 and m.parse_errors == {}


async def test_a_sequence_gap_resyncs_every_book_and_backfills_missed_trades(
    coinbase: tuple[Engine, SimProc],
) -> None:
    engine, sim = coinbase
    btc, eth = await open_two_connections(engine)
    await until(lambda: len(kinds(engine.read(), Kind.TRADE, btc)) >= 3, 10, "trades")
    await sim.fault("skip", n=5)
    for sid in (btc, eth):
        await until(
            lambda s=sid: len(kinds(engine.read(), Kind.SNAPSHOT_END, s)) >= 2, 10, "resync"
        )
    await one_more_heartbeat(sim)
    await assert_books_match(engine, sim)
    recs = engine.read()
    for sid in (btc, eth):
        assert [g.aux for g in kinds(recs, Kind.GAP, sid)] == [GapReason.SEQUENCE_GAP]
        assert len(kinds(recs, Kind.SNAPSHOT_END, sid)) == 2
    refs = [r.ref for r in kinds(recs, Kind.TRADE, btc)]
    assert refs == list(range(refs[0], refs[0] + len(refs))), "no trade lost or repeated"
    log = {t[0] for t in await sim.control("trades", symbol="BTC-USD")}
    assert set(refs) <= log


async def test_books_beyond_the_level2_cap_go_to_another_connection(instance: str) -> None:
    sim = await SimProc("coinbase", args=["--symbols", "40"]).start()
    manager = await WebSocketManager(engine_config(instance, CASE, sim)).start()
    try:
        await manager.connect_to_exchange("coinbase", "c1", reconnect=FAST)
        symbols = [f"S{i:04d}/USD" for i in range(40)]
        await manager.subscribe("coinbase", "c1", channel="orderbook", symbols=symbols)
        await manager.subscribe("coinbase", "c1", channel="trades", symbols=symbols)
        await manager.wait_for("c1", timeout=60)
        stats = await sim.stats()
        per_connection = sorted(
            (sum(s.startswith("level2:") for s in subs), len(subs))
            for subs in stats["subscriptions"]
        )
        assert per_connection == [(10, 10), (30, 70)], "30 books, then a second connection"
        assert stats["violations"] == {} and manager.metrics("c1").reconnects == 0
        cfg = manager.coordinator.exchanges["coinbase"].worker_config()
        assert cfg.max_message_bytes == 16 << 20, "the venue's full-depth snapshots fit"
        assert all(s.status == "active" for s in manager.subscriptions("c1"))
    finally:
        await manager.stop()
        await sim.stop()
