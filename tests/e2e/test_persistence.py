"""The engine with a real Postgres: desired state survives a restart, state changes and errors
become events, metrics are written in batches, and a database outage loses nothing silently."""

from __future__ import annotations

from uuid import UUID

import pytest

from engine.db import DatabaseConfig, create_pool
from engine.db.metrics import read_metrics
from engine.db.store import StateStore
from engine.manager import WebSocketManager
from tests.db.helpers import via_proxy
from tests.db.proxy import FaultProxy, upstream_of
from tests.e2e.conftest import FAST, engine_config
from tests.e2e.harness import SimProc, VenueCase, until

pytestmark = pytest.mark.slow


async def test_restart_restores_connections_and_subscriptions(
    instance: str, case: VenueCase, sim: SimProc, fresh_database: str
) -> None:
    from engine.db import migrate

    await migrate(fresh_database)
    db = DatabaseConfig(url=fresh_database)
    cfg = engine_config(instance, case, sim, database=db)
    async with WebSocketManager(cfg) as first:
        await first.connect_to_exchange(case.exchange, "kept", reconnect=FAST)
        await first.subscribe(
            case.exchange, "kept", channel=case.trade_channel, symbols=list(case.symbols)
        )
        gone = await first.subscribe(
            case.exchange, "kept", channel=case.book_channel, symbols=[case.symbols[0]]
        )
        await first.wait_for("kept", timeout=30)
        await first.unsubscribe(case.exchange, "kept", subscription_id=gone.id)
        await first.connect_to_exchange(case.exchange, "deleted", reconnect=FAST)
        await first.disconnect(case.exchange, "deleted")
        row_id = first.connections()[0].row_id
        first_persist = first.coordinator.persist
    async with WebSocketManager(cfg) as second:
        assert [c.id for c in second.connections()] == ["kept"]
        (sub,) = second.subscriptions("kept")
        assert (sub.channel, sub.symbols) == (
            case.trade_channel,
            [s.replace("/", "-") for s in case.symbols],
        )
        await second.wait_for("kept", timeout=30)
        assert second.connections()[0].row_id == row_id
        assert second.connections()[0].reconnect == FAST
        pool = await create_pool(fresh_database)
        try:
            store = StateStore(pool)
            await until(lambda: second.coordinator.persist.failed_flushes == 0, 5, "flushes")

            async def states() -> list[str]:
                return [e.state for e in await store.events(UUID(row_id)) if e.kind == "state"]

            async def live_twice() -> bool:
                return (await states()).count("live") >= 2  # before and after the restart

            await until(live_twice, 10, "state events of both runs")
            seen = await states()
            assert "connecting" in seen
            assert "stopped" in seen, (seen, first_persist.stats())

            async def metrics() -> bool:
                return len(await read_metrics(pool, UUID(row_id))) >= 2

            await until(metrics, 15, "metrics rows")
        finally:
            await pool.close()


async def test_database_outage_keeps_metrics_and_writes_them_once(
    instance: str, case: VenueCase, sim: SimProc, fresh_database: str
) -> None:
    """RELIABILITY row 26: Postgres unreachable under load, then back."""
    from engine.db import migrate

    await migrate(fresh_database)
    proxy = FaultProxy(upstream_of(fresh_database))
    port = await proxy.start()
    url = via_proxy(fresh_database, port)
    cfg = engine_config(
        instance,
        case,
        sim,
        database=DatabaseConfig(url=url, command_timeout=2.0, connect_timeout=2.0),
    )
    try:
        async with WebSocketManager(cfg) as manager:
            await manager.connect_to_exchange(case.exchange, "c1", reconnect=FAST)
            await manager.subscribe(
                case.exchange, "c1", channel=case.trade_channel, symbols=list(case.symbols)
            )
            await manager.wait_for("c1", timeout=30)
            writer = manager.coordinator.persist.metrics
            await until(lambda: writer.stats().written > 0, 15, "first metrics")
            proxy.refuse()
            produced_before = writer.stats()
            await until(
                lambda: writer.stats().failed_flushes > produced_before.failed_flushes,
                20,
                "a failed flush",
            )
            await until(lambda: writer.stats().buffered >= 10, 20, "metrics waiting in the buffer")
            assert manager.connections()[0].state == "live", "an outage never stops the engine"
            proxy.allow()
            await until(lambda: writer.stats().buffered == 0, 40, "the buffer to drain")
            row_id = UUID(manager.connections()[0].row_id)
        final = writer.stats()
        pool = await create_pool(fresh_database)
        try:
            rows = await read_metrics(pool, row_id)
        finally:
            await pool.close()
        stamps = [r.ts for r in rows]
        assert len(stamps) == len(set(stamps)), "no duplicates"
        # A batch whose commit reached Postgres just as the client gave up on it (the outage
        # begins mid-flush) is retried and then found in place: counted as duplicates.
        assert len(rows) == final.written + final.duplicates
        assert final.dropped == 0 and final.rejected == 0
    finally:
        await proxy.close()


async def test_a_paused_connection_stays_paused_across_a_restart(
    instance: str, case: VenueCase, sim: SimProc, fresh_database: str
) -> None:
    from engine.db import migrate

    await migrate(fresh_database)
    cfg = engine_config(instance, case, sim, database=DatabaseConfig(url=fresh_database))
    async with WebSocketManager(cfg) as first:
        await first.connect_to_exchange(case.exchange, "p", reconnect=FAST)
        await first.subscribe(
            case.exchange, "p", channel=case.trade_channel, symbols=[case.symbols[0]]
        )
        await first.wait_for("p", timeout=30)
        info = await first.pause(case.exchange, "p")
        assert info.state == "stopped"

        async def no_subscriptions_left() -> bool:
            return sum(len(s) for s in (await sim.stats())["subscriptions"]) == 0

        await until(no_subscriptions_left, 10, "the venue connection to close")
    async with WebSocketManager(cfg) as second:
        (conn,) = second.connections()
        assert conn.state == "stopped", "restored paused"
        assert len(second.subscriptions("p")) == 1
        await second.resume(case.exchange, "p")
        await second.wait_for("p", timeout=30)
