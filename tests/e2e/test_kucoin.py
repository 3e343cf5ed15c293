"""KuCoin end to end, what the venue-parametrized tests cannot show: every connection attempt
gets a fresh token (so a reconnect after the token expired works), and the per-connection topic
limit, where each symbol of a topic counts, shards streams across connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest

from engine.manager import WebSocketManager
from engine.records import GapReason, Kind
from tests.e2e.conftest import FAST, Engine, engine_config
from tests.e2e.harness import CASES, SimProc, kinds, until
from tests.e2e.test_engine import assert_books_match
from tests.support import RawClient

pytestmark = pytest.mark.slow
KUCOIN = next(c for c in CASES if c.exchange == "kucoin")


@pytest.fixture
async def sim() -> AsyncIterator[SimProc]:
    s = await SimProc(KUCOIN).start()
    yield s
    await s.stop()


@pytest.fixture
async def engine(instance: str, sim: SimProc) -> AsyncIterator[Engine]:
    manager = WebSocketManager(engine_config(instance, KUCOIN, sim))
    await manager.start()
    eng = Engine(manager, KUCOIN)
    yield eng
    await eng.close()


async def test_a_reconnect_after_the_token_expired_gets_a_fresh_one(
    engine: Engine, sim: SimProc
) -> None:
    await engine.open()
    sids = [engine.symbol_id(s) for s in KUCOIN.venue_symbols]
    await until(
        lambda: all(kinds(engine.read(), Kind.SNAPSHOT_END, s) for s in sids), 10, "snapshots"
    )
    (first,) = (await sim.control("tokens"))["used"]
    assert (await sim.control("tokens/expire"))["expired"] >= 1
    await sim.fault("close")
    await until(
        lambda: all(len(kinds(engine.read(), Kind.SNAPSHOT_END, s)) >= 2 for s in sids),
        15,
        "the books resynchronised on the new connection",
    )
    await engine.wait_live()
    used = (await sim.control("tokens"))["used"]
    assert len(used) == 2 and used[0] == first and used[1] != first, "a fresh token"
    assert (await sim.stats())["tokens_refused"] == 0, "the expired token was never offered"
    # ... and it would have been refused
    _, old = await RawClient.connect(f"{sim.ws_url}/endpoint?token={quote(first, safe='')}")
    await until(lambda: old.closed, 5, "the refusal")
    assert old.json()[0]["data"] == "token is expired"
    recs = engine.read()
    for sid in sids:
        assert [g.aux for g in kinds(recs, Kind.GAP, sid)] == [GapReason.RECONNECT]
    await assert_books_match(engine, sim)


async def test_the_topic_limit_shards_across_connections(instance: str) -> None:
    """120 symbols on three channels are 360 topics: one connection of 300 (the venue's limit)
    and one of 60, each with its own token, subscribed 100 symbols per request at most."""
    sim = await SimProc(KUCOIN, rate=50, args=["--symbols", "130"]).start()
    manager = await WebSocketManager(engine_config(instance, KUCOIN, sim)).start()
    try:
        await manager.connect_to_exchange("kucoin", "c1", reconnect=FAST)
        instruments = manager.coordinator.exchanges["kucoin"].instruments
        symbols = [s for s in instruments if s.startswith("S0")][:120]
        assert len(symbols) == 120
        for channel in ("trades", "ticker", "orderbook"):
            await manager.subscribe("kucoin", "c1", channel=channel, symbols=symbols)
        await manager.wait_for("c1", timeout=60)
        stats = await sim.stats()
        assert sorted(len(v) for v in stats["subscriptions"]) == [60, 300]
        assert stats["violations"] == {}, "no limit was exceeded"
        assert stats["max_topics_per_request"] == 100
        assert stats["subscribe_requests"] == 6, "120 symbols per channel: 100 + 20, three times"
        used = (await sim.control("tokens"))["used"]
        assert len(used) == len(set(used)) == 2, "a token per connection"
        m = manager.metrics("c1")
        assert (m.reconnects, len(m.streams), m.parse_errors) == (0, 360, {})
    finally:
        await manager.stop()
        await sim.stop()
