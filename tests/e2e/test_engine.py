"""End to end with real processes and sockets: simulator -> worker -> ring -> readers, and
every fault of the engine issue, for every venue (parametrized by `case`)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from decimal import Decimal

import multiprocess as mp
import pytest

from engine.manager import WebSocketManager
from engine.protocol import StateChanged
from engine.records import ConnState, Flag, GapReason, Kind, Side, format_decimal
from tests.e2e import procs
from tests.e2e.conftest import FAST, Engine, engine_config
from tests.e2e.harness import (
    SimProc,
    VenueCase,
    as_text,
    book_of,
    free_port,
    kinds,
    normalize,
    sim_side,
    until,
)

pytestmark = pytest.mark.slow
ctx = mp.get_context("spawn")


async def assert_books_match(engine: Engine, sim: SimProc) -> None:
    """After the market quiesces, every book rebuilt from the ring equals the simulator's."""
    await sim.quiesce()
    for venue_symbol in engine.case.venue_symbols:
        sid = engine.symbol_id(venue_symbol)
        want = await sim.control("book", symbol=venue_symbol)

        def matches(sid: int = sid, want: dict = want) -> bool:  # type: ignore[type-arg]
            bids, asks = book_of(engine.read(), sid)
            return normalize(as_text(bids, engine.table, sid)) == sim_side(
                want["bids"]
            ) and normalize(as_text(asks, engine.table, sid)) == sim_side(want["asks"])

        await until(matches, 10, f"the {venue_symbol} book to equal the simulator's")


def trade_refs(engine: Engine, sid: int) -> list[int]:
    return [r.ref for r in kinds(engine.read(), Kind.TRADE, sid)]


def assert_contiguous(refs: list[int], what: str) -> None:
    assert refs, f"no trades for {what}"
    assert refs == list(range(refs[0], refs[0] + len(refs))), f"{what}: missing or duplicate ids"


async def test_values_and_order_reach_a_reader_process(
    engine: Engine, sim: SimProc, instance: str, case: VenueCase
) -> None:
    loop = asyncio.get_running_loop()
    await engine.manager.connect_to_exchange(case.exchange, "c1", reconnect=FAST)  # makes the ring
    ready, done, out = ctx.Event(), ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=procs.collect, args=(instance, case.exchange, ready, done, out))
    reader.start()
    assert await loop.run_in_executor(None, ready.wait, 60)
    await engine.open()
    sids = [engine.symbol_id(s) for s in case.venue_symbols]
    await until(lambda: all(len(trade_refs(engine, s)) >= 5 for s in sids), 20, "trades")
    await sim.quiesce()
    await asyncio.sleep(0.3)
    done.set()
    result = await loop.run_in_executor(None, out.get, True, 60)
    await loop.run_in_executor(None, reader.join, 30)
    rows = result["rows"]
    assert result["lost"] == 0
    seqs = [r[7] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for venue_symbol, sid in zip(case.venue_symbols, sids):
        info = engine.table.get(sid)
        trades = [r for r in rows if r[0] == Kind.TRADE and r[1] == sid]
        if case.trade_ids_contiguous:
            assert_contiguous([t[6] for t in trades], venue_symbol)
        log = {t[0]: t for t in await sim.control("trades", symbol=venue_symbol)}
        for _, _, side, flags, price, size, ref, _ in trades:
            _, p, q, maker_buys = log[ref]
            assert Decimal(format_decimal(price, info.price_decimals)) == Decimal(p)
            assert Decimal(format_decimal(size, info.size_decimals)) == Decimal(q)
            assert side == (Side.SELL if maker_buys else Side.BUY)
            assert flags & Flag.LAST
        want = await sim.control("book", symbol=venue_symbol)
        from engine.records import Record
        from tests.support import book_from_records

        recs = [
            Record(r[7], r[0], 0, r[2], r[3], r[1], 0, 0, r[4], r[5], r[6], 0, 0, 0.0, 0.0)
            for r in rows
        ]
        bids, asks = book_from_records(recs, sid)
        assert normalize(as_text(bids, engine.table, sid)) == sim_side(want["bids"])
        assert normalize(as_text(asks, engine.table, sid)) == sim_side(want["asks"])


async def test_simulator_killed_and_restarted(instance: str, case: VenueCase) -> None:
    sim = await SimProc(case, port=free_port()).start()
    engine = Engine(await WebSocketManager(engine_config(instance, case, sim)).start(), case)
    try:
        await engine.open()
        sid = engine.symbol_id(case.venue_symbols[0])
        await until(lambda: kinds(engine.read(), Kind.SNAPSHOT_END, sid), 10, "first snapshot")
        await sim.kill()
        await until(lambda: any(s == ConnState.BACKOFF for s, _ in engine.states()), 10, "backoff")
        await sim.start()  # same port, a fresh market
        await engine.wait_live()
        await until(
            lambda: len(kinds(engine.read(), Kind.SNAPSHOT_END, sid)) >= 2, 15, "resnapshot"
        )
        recs = engine.read()
        gap = kinds(recs, Kind.GAP, sid)
        assert [g.aux for g in gap] == [GapReason.RECONNECT]
        second_snapshot = kinds(recs, Kind.SNAPSHOT_BEGIN, sid)[1]
        assert gap[0].seq < second_snapshot.seq, "the gap record comes before the new snapshot"
        assert engine.manager.metrics("c1").reconnects >= 1
        await assert_books_match(engine, sim)
    finally:
        await engine.close()
        await sim.stop()


async def test_stalled_connection_is_detected_by_heartbeat_and_recycled(
    engine: Engine, sim: SimProc
) -> None:
    await engine.open()
    sid = engine.symbol_id(engine.case.venue_symbols[0])
    stalled_at = time.monotonic()
    assert await sim.fault("stall") == 1
    # detection bound from RELIABILITY row 1: idle (0.5) + pong timeout (0.5) + 1 s, plus slack
    await until(lambda: any(s == ConnState.STALE for s, _ in engine.states()), 2.0 + 3.0, "stale")
    reason = next(r for s, r in engine.states() if s == ConnState.STALE)
    assert "heartbeat" in reason
    assert time.monotonic() - stalled_at < 10
    await until(lambda: engine.states()[-1][0] == ConnState.LIVE, 10, "live again")
    await until(lambda: len(kinds(engine.read(), Kind.SNAPSHOT_END, sid)) >= 2, 10, "resnapshot")
    await assert_books_match(engine, sim)


async def test_skipped_update_id_causes_exactly_one_resync(engine: Engine, sim: SimProc) -> None:
    await engine.open()
    sids = [engine.symbol_id(s) for s in engine.case.venue_symbols]
    await until(
        lambda: all(kinds(engine.read(), Kind.SNAPSHOT_END, s) for s in sids), 10, "snapshots"
    )
    await sim.fault("skip", n=3)
    await until(
        lambda: all(len(kinds(engine.read(), Kind.SNAPSHOT_END, s)) >= 2 for s in sids),
        10,
        "resync",
    )
    await assert_books_match(engine, sim)
    recs = engine.read()
    # venues without a sequence see the loss in the next checksum (`VenueCase.extra`)
    reason = GapReason[engine.case.extra.get("skip_gap", "SEQUENCE_GAP")]
    for s in sids:
        gaps = kinds(recs, Kind.GAP, s)
        assert [g.aux for g in gaps] == [reason], "exactly one gap per book"
        assert len(kinds(recs, Kind.SNAPSHOT_END, s)) == 2, "exactly one resync per book"
    m = engine.manager.metrics("c1")
    assert m.gaps == len(sids) and m.resyncs == len(sids) and m.reconnects == 0


MALFORMED = ("truncated", "invalid_utf8", "oversize", "unknown_type", "wrong_types")


async def test_malformed_frames_are_counted_and_the_connection_untouched(
    engine: Engine, sim: SimProc
) -> None:
    await engine.open()
    for kind in MALFORMED:
        assert await sim.fault("malformed", kind=kind, count=2) == 2
    await until(lambda: sum(engine.manager.metrics("c1").parse_errors.values()) >= 10, 10, "counts")
    await asyncio.sleep(0.5)  # stats are reported every 0.2 s: let any extra count show up
    m = engine.manager.metrics("c1")
    assert sum(m.parse_errors.values()) == 2 * len(MALFORMED), m.parse_errors
    assert m.reconnects == 0
    assert [s for s, _ in engine.states()].count(ConnState.LIVE) == 1, "never reconnected"
    before = m.messages_in
    await until(
        lambda: engine.manager.metrics("c1").messages_in > before + 10, 10, "data still flows"
    )


@pytest.mark.parametrize("how", ["shutdown_notice", "scheduled_cut"])
async def test_rollover_loses_and_duplicates_nothing(
    instance: str, case: VenueCase, how: str
) -> None:
    # the venue cuts at 5 s; we roll over 3 s before, which leaves a loaded machine time to
    # connect, subscribe and synchronise the successor
    args = ["--max-lifetime", "5"] if how == "scheduled_cut" else []
    sim = await SimProc(case, args=args).start()
    overrides = {"max_lifetime": 5.0, "rollover_margin": 3.0} if how == "scheduled_cut" else {}
    manager = await WebSocketManager(engine_config(instance, case, sim, **overrides)).start()
    engine = Engine(manager, case)
    try:
        await engine.open()
        sids = [engine.symbol_id(s) for s in case.venue_symbols]
        await until(
            lambda: all(kinds(engine.read(), Kind.SNAPSHOT_END, s) for s in sids), 10, "snapshots"
        )
        if how == "shutdown_notice":
            await sim.fault("shutdown", grace=1.5)
            if not case.shutdown_notice:
                await assert_cut_without_notice_resyncs_once(engine, sim, sids)
                return
        await until(lambda: engine.manager.metrics("c1").rollovers >= 1, 10, "a rollover")
        before = engine.manager.metrics("c1").messages_in
        await asyncio.sleep(1.5)  # the old connection is cut, the new one carries on
        await until(lambda: engine.manager.metrics("c1").messages_in > before, 10, "more data")
        # the closed socket's counts stay in the connection's totals (they never go back)
        await assert_books_match(engine, sim)
        recs = engine.read()
        assert kinds(recs, Kind.GAP) == [], "no gap across the switch"
        for venue_symbol, sid in zip(case.venue_symbols, sids):
            assert len(kinds(recs, Kind.SNAPSHOT_END, sid)) == 1, "no resync across the switch"
            if case.trade_ids_contiguous:
                assert_contiguous(trade_refs(engine, sid), venue_symbol)
        assert engine.manager.metrics("c1").reconnects == 0
    finally:
        await engine.close()
        await sim.stop()


async def assert_cut_without_notice_resyncs_once(
    engine: Engine, sim: SimProc, sids: list[int]
) -> None:
    """A venue that announces nothing just closes: one reconnect, one RECONNECT gap and one
    resync per book, and no trade twice (the venue's ids drop what was delivered)."""
    await until(lambda: engine.manager.metrics("c1").reconnects >= 1, 10, "the reconnect")
    await until(
        lambda: all(len(kinds(engine.read(), Kind.SNAPSHOT_END, s)) >= 2 for s in sids),
        15,
        "resync",
    )
    await assert_books_match(engine, sim)
    recs = engine.read()
    for sid in sids:
        assert [g.aux for g in kinds(recs, Kind.GAP, sid)] == [GapReason.RECONNECT]
        assert len(kinds(recs, Kind.SNAPSHOT_END, sid)) == 2
        refs = trade_refs(engine, sid)
        assert refs == sorted(set(refs)), "no trade twice, none out of order"
    m = engine.manager.metrics("c1")
    assert (m.reconnects, m.rollovers) == (1, 0)


async def test_killed_worker_is_restarted_and_readers_see_the_new_generation(
    engine: Engine, sim: SimProc
) -> None:
    await engine.open()
    sid = engine.symbol_id(engine.case.venue_symbols[0])
    await until(lambda: kinds(engine.read(), Kind.SNAPSHOT_END, sid), 10, "first snapshot")
    ex = engine.manager.coordinator.exchanges[engine.case.exchange]
    generation = engine.reader.generation
    os.kill(ex.process.pid, signal.SIGKILL)
    await until(lambda: ex.restarts == 1 and ex.ready.is_set(), 30, "worker restart")
    await engine.wait_live()
    await until(lambda: len(kinds(engine.read(), Kind.SNAPSHOT_END, sid)) >= 2, 15, "resnapshot")
    recs = engine.read()
    restart = [r for r in recs if r.kind == Kind.GAP and r.aux == GapReason.WRITER_RESTART]
    assert restart and restart[0].flags & Flag.EXCHANGE_WIDE
    assert engine.reader.generation == generation + 1
    assert engine.reader.restarts == 1
    assert restart[0].seq < kinds(recs, Kind.SNAPSHOT_BEGIN, sid)[1].seq
    await assert_books_match(engine, sim)


async def test_refused_connections_back_off_with_jitter_under_the_cap(
    engine: Engine, sim: SimProc
) -> None:
    await engine.open()
    await sim.fault("refuse", seconds=2.0)
    await until(
        lambda: [s for s, _ in engine.states()].count(ConnState.BACKOFF) >= 4, 10, "retries"
    )
    await engine.wait_live(timeout=15)
    events = [e for e in engine.events if isinstance(e, StateChanged) and e.conn == "c1"]
    delays = [
        float(e.reason.split("retry in ")[1].split("s")[0])
        for e in events
        if e.state == ConnState.BACKOFF
    ]
    assert all(0 <= d <= FAST.max_delay for d in delays), delays
    assert len(set(delays)) > 1, "full jitter: the delays vary"
    attempts = [e for e in events if e.state == ConnState.CONNECTING]
    span = (attempts[-1].at_ns - attempts[0].at_ns) / 1e9
    cfg = engine.manager.coordinator.exchanges[engine.case.exchange].worker_config()
    assert len(attempts) <= cfg.limits.budget + span * cfg.limits.budget_per_second + 1


async def test_connections_deleted_while_connecting_leave_nothing_behind(
    engine: Engine, sim: SimProc
) -> None:
    # Each delete lands somewhere in the connect: before, during or just after the handshake.
    # A shard that missed its cancellation would keep a socket open and, worse, block the
    # worker's command loop (the next command, and Stop, would never run).
    for i in range(12):
        await engine.manager.connect_to_exchange(engine.case.exchange, f"gone{i}", reconnect=FAST)
        if i % 3:
            await asyncio.sleep(0.001 * i)  # vary where in the connect the delete lands
        await engine.manager.disconnect(engine.case.exchange, f"gone{i}")
    await engine.open()  # the worker still takes commands
    await until(lambda: [c.id for c in engine.manager.connections()] == ["c1"], 10, "only c1 left")

    async def one_socket() -> bool:
        return (await sim.stats())["clients"] == 1

    await until(one_socket, 10, "the deleted connections' sockets closed")


async def test_runtime_subscribe_and_unsubscribe_without_reconnecting(
    engine: Engine, sim: SimProc
) -> None:
    case = engine.case
    await engine.manager.connect_to_exchange(case.exchange, "c1", reconnect=FAST)
    sub = await engine.manager.subscribe(
        case.exchange, "c1", channel=case.trade_channel, symbols=[case.symbols[0]]
    )
    await engine.wait_live()
    more = await engine.manager.subscribe(
        case.exchange, "c1", channel=case.book_channel, symbols=[case.symbols[1]]
    )
    await engine.wait_live()
    subs = (await sim.stats())["subscriptions"]
    assert sum(len(v) for v in subs) == 2
    await engine.manager.unsubscribe(case.exchange, "c1", subscription_id=sub.id)
    await until(lambda: sim.stats(), 5, "stats")

    async def one_left() -> bool:
        return sum(len(v) for v in (await sim.stats())["subscriptions"]) == 1

    await until(one_left, 10, "the venue to drop the stream")
    assert [s.id for s in engine.manager.subscriptions("c1")] == [more.id]
    assert engine.manager.metrics("c1").reconnects == 0


async def test_venue_rejection_reaches_the_subscription_with_its_reason(
    engine: Engine, sim: SimProc
) -> None:
    case = engine.case
    await engine.manager.connect_to_exchange(case.exchange, "c1", reconnect=FAST)
    await engine.wait_live()
    await sim.fault("reject")
    sub = await engine.manager.subscribe(
        case.exchange, "c1", channel=case.trade_channel, symbols=[case.symbols[0]]
    )
    info = await until(
        lambda: next(
            (
                s
                for s in engine.manager.subscriptions("c1")
                if s.id == sub.id and s.status == "rejected"
            ),
            None,
        ),
        10,
        "rejection",
    )
    assert case.reject_reason in info.reason


async def test_unknown_channel_or_symbol_is_refused_naming_it(engine: Engine, sim: SimProc) -> None:
    from engine.errors import UnknownChannel, UnknownSymbol

    case = engine.case
    await engine.manager.connect_to_exchange(case.exchange, "c1", reconnect=FAST)
    with pytest.raises(UnknownSymbol, match="NOPE/COIN"):
        await engine.manager.subscribe(
            case.exchange, "c1", channel=case.trade_channel, symbols=["NOPE/COIN"]
        )
    with pytest.raises(UnknownChannel, match="klines"):
        await engine.manager.subscribe(
            case.exchange, "c1", channel="klines", symbols=[case.symbols[0]]
        )
    assert engine.manager.subscriptions("c1") == []


async def test_many_symbols_are_sharded_and_paced_within_the_venue_limits(
    instance: str, case: VenueCase
) -> None:
    """RELIABILITY row 8: subscribe 1500 symbols; the venue never sees more streams per
    connection or more client messages per second than it allows."""
    sim = await SimProc(case, rate=50, args=["--symbols", "1500"]).start()
    # Heartbeats are not under test here: the harness's 0.5 s ones can time out while a
    # loaded machine's simulator answers a thousand subscriptions, and count as reconnects.
    config = engine_config(instance, case, sim, heartbeat_idle=5.0, heartbeat_timeout=5.0)
    manager = await WebSocketManager(config).start()
    try:
        await manager.connect_to_exchange(case.exchange, "c1", reconnect=FAST)
        instruments = manager.coordinator.exchanges[case.exchange].instruments
        symbols = [s for s in instruments if s.startswith("S")][:1500]
        await manager.subscribe(case.exchange, "c1", channel=case.trade_channel, symbols=symbols)
        await manager.wait_for("c1", timeout=60)
        stats = await sim.stats()
        per_connection = sorted(len(v) for v in stats["subscriptions"])
        cap = manager.coordinator.exchanges[case.exchange].venue.spec.limits.streams_per_connection
        full, rest = divmod(len(symbols), cap)
        assert per_connection == sorted([cap] * full + [rest] * bool(rest)), "sharded"
        assert stats["violations"] == {}, "no limit was exceeded"
        assert manager.metrics("c1").reconnects == 0
    finally:
        await manager.stop()
        await sim.stop()


async def test_connection_limit_rejects_what_does_not_fit(
    instance: str, case: VenueCase, sim: SimProc
) -> None:
    cfg = engine_config(instance, case, sim, streams_per_connection=1, max_connections=2)
    manager = await WebSocketManager(cfg).start()
    try:
        await manager.connect_to_exchange(case.exchange, "c1", reconnect=FAST)
        sub = await manager.subscribe(
            case.exchange, "c1", channel=case.trade_channel, symbols=list(case.symbols[:2])
        )
        more = await manager.subscribe(
            case.exchange, "c1", channel=case.book_channel, symbols=[case.symbols[0]]
        )
        await until(
            lambda: (
                {s.id: s.status for s in manager.subscriptions("c1")}
                == {sub.id: "active", more.id: "rejected"}
            ),
            15,
            "one rejected",
        )
        (rejected,) = [s for s in manager.subscriptions("c1") if s.id == more.id]
        assert "connection limit" in rejected.reason
        assert len((await sim.stats())["subscriptions"]) == 2
    finally:
        await manager.stop()


async def test_kinds_filter_keeps_unwanted_kinds_out_of_the_ring(
    engine: Engine, sim: SimProc
) -> None:
    from engine.errors import ConfigError

    case = engine.case
    await engine.manager.connect_to_exchange(case.exchange, "c1", reconnect=FAST)
    with pytest.raises(ConfigError, match="nothing would be subscribed"):
        await engine.manager.subscribe(
            case.exchange,
            "c1",
            channel=case.book_channel,
            symbols=[case.symbols[0]],
            kinds=["trade"],
        )
    await engine.manager.subscribe(
        case.exchange, "c1", channel=case.trade_channel, symbols=[case.symbols[0]], kinds=["trade"]
    )
    await engine.open(channels=())
    await until(lambda: kinds(engine.read(), Kind.TRADE), 10, "trades")
    assert {Kind(r.kind) for r in engine.read()} <= {Kind.TRADE, Kind.STATUS}


async def test_connection_metrics_cover_the_issue_list(engine: Engine, sim: SimProc) -> None:
    await engine.open()

    def complete() -> bool:
        m = engine.manager.metrics("c1")
        return m.latency_p99_us is not None and all(
            s.last_message_age_s is not None for s in m.streams
        )

    await until(complete, 10, "latency and a message on every stream")
    m = engine.manager.metrics("c1")
    assert m.state == "live" and m.uptime_s is not None
    assert m.messages_in > 0 and m.bytes_in > 0 and m.messages_out >= 1 and m.bytes_out > 0
    assert m.latency_p50_us is not None and m.latency_p50_us <= m.latency_p99_us
    assert m.last_message_age_s is not None
    assert {s.stream for s in m.streams} and all(
        s.last_message_age_s is not None for s in m.streams
    )
    assert (m.gaps, m.resyncs, m.reconnects, m.parse_errors) == (0, 0, 0, {})


async def test_a_subscription_the_venue_dropped_silently_is_restored(
    instance: str, case: VenueCase, sim: SimProc
) -> None:
    from engine.registry import load_venue

    if load_venue(case.exchange).list_request(1) is None:
        pytest.skip(f"{case.exchange} cannot list a connection's subscriptions")
    manager = await WebSocketManager(engine_config(instance, case, sim, audit_interval=0.3)).start()
    try:
        await manager.connect_to_exchange(case.exchange, "c1", reconnect=FAST)
        await manager.subscribe(
            case.exchange, "c1", channel=case.trade_channel, symbols=list(case.symbols)
        )
        await manager.wait_for("c1", timeout=30)
        assert await sim.fault("forget", count=1) == 1

        async def restored() -> bool:
            subs = (await sim.stats())["subscriptions"]
            return manager.metrics("c1").audit_repairs >= 1 and sum(len(s) for s in subs) == 2

        await until(restored, 10, "the audit to resubscribe what the venue dropped")
        assert manager.metrics("c1").reconnects == 0
    finally:
        await manager.stop()
