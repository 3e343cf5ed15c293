"""Connections of one exchange share upstream streams: one venue subscription however many
connections want a stream, and a stream outlives the connection that carried it."""

from __future__ import annotations

from typing import Any

import pytest

from engine.records import Kind
from tests.e2e.conftest import Engine
from tests.e2e.harness import SimProc, until

pytestmark = pytest.mark.slow


async def upstream(sim: SimProc) -> list[str]:
    """Every stream subscribed at the venue, once per venue connection that carries it."""
    subs: list[list[str]] = (await sim.stats())["subscriptions"]
    return sorted(s for per_conn in subs for s in per_conn)


async def test_a_stream_wanted_twice_is_subscribed_once_and_survives_its_carrier(
    engine: Engine, sim: SimProc
) -> None:
    case, manager = engine.case, engine.manager
    for conn in ("c1", "c2"):
        await engine.open(conn, (case.trade_channel,))
    wanted = await upstream(sim)
    assert len(wanted) == len(case.symbols), f"one venue subscription per stream: {wanted}"
    (sub2,) = manager.subscriptions("c2")
    assert sub2.status == "active"
    assert "c1" not in sub2.reason, "never another connection's id"

    await manager.pause(case.exchange, "c1")  # c1 carried the streams; c2 still wants them

    async def moved() -> bool:
        return await upstream(sim) == wanted and len((await sim.stats())["subscriptions"]) == 1

    await until(moved, 10, "the streams to move to c2's venue connection")
    await until(lambda: manager.subscriptions("c2")[0].status == "active", 10, "c2 active")
    sym = engine.symbol_id(case.venue_symbols[0])
    engine.read()
    seen = len([r for r in engine.records if r.kind == Kind.TRADE and r.symbol == sym])

    def more_trades() -> Any:
        engine.read()
        return len([r for r in engine.records if r.kind == Kind.TRADE and r.symbol == sym]) > seen

    await until(more_trades, 10, "trades after the carrier left")

    await manager.resume(case.exchange, "c1")
    await manager.wait_for("c1", timeout=30)
    assert manager.subscriptions("c1")[0].status == "active"
    assert await upstream(sim) == wanted, "still one venue subscription per stream"
