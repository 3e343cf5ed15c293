"""The ring across real processes: torn reads, lapping, wake-ups, killed writers and engines."""

from __future__ import annotations

import os
import signal
from typing import Any

import multiprocess as mp
import pytest

from engine import shm
from engine.records import Flag, GapReason, Kind
from engine.ring import Ring, RingReader, RingWriter
from engine.symbols import SymbolRegistry, SymbolTable
from tests.engine import procs

pytestmark = pytest.mark.slow
ctx = mp.get_context("spawn")
JOIN = 60.0  # generous bound on any child; the work itself is bounded by its own duration


def _start(target: Any, *args: Any) -> Any:
    p = ctx.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def _wait(event: Any) -> None:
    assert event.wait(JOIN), "child process did not get ready"


@pytest.mark.parametrize("backend", ["c", "python"])
def test_no_torn_reads_under_a_full_speed_writer(
    instance: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small ring so that readers are lapped and slots overwritten while they copy."""
    if backend == "c":
        pytest.importorskip("engine._ring")
    monkeypatch.setenv("WSM_RING_BACKEND", backend)  # inherited by the spawned children
    ring = Ring.create(
        instance=instance, exchange="s", exchange_id=1, capacity=1024, backend=backend
    )
    out, done = ctx.Queue(), ctx.Event()
    readers = []
    for _ in range(3):
        ready = ctx.Event()
        readers.append(_start(procs.stress_reader, instance, done, out, ready))
        _wait(ready)
    started = ctx.Event()
    writer = _start(procs.stress_writer, instance, 2.0, 7, out, started)
    writer.join(JOIN)
    assert writer.exitcode == 0
    final = out.get(timeout=JOIN)
    done.set()
    results = [out.get(timeout=JOIN) for _ in readers]
    for p in readers:
        p.join(JOIN)
    ring.close()
    assert final > 100_000, "the writer should have written at full speed"
    for r in results:
        assert r["torn"] == 0
        assert r["monotonic"]
        assert r["end"] == final
        assert r["received"] + r["lost"] == final - r["start"]


def test_slow_reader_is_lapped_and_told_while_a_fast_reader_loses_nothing(instance: str) -> None:
    ring = Ring.create(instance=instance, exchange="s", exchange_id=1, capacity=1 << 14)
    slow = RingReader("s", instance=instance, start="newest")
    out, done, ready = ctx.Queue(), ctx.Event(), ctx.Event()
    fast = _start(procs.fast_reader, instance, done, out, ready)
    _wait(ready)
    total = 60_000
    writer = _start(procs.paced_writer, instance, total, 500, 0.002, out)
    writer.join(JOIN)
    assert out.get(timeout=JOIN) == total
    done.set()
    fast_result = out.get(timeout=JOIN)
    fast.join(JOIN)
    # The slow reader reads only now: everything but the last `capacity` records is gone.
    refs = [int(r) for r in slow.read_batch()["ref"]]
    assert slow.lost == total - (1 << 14)
    assert refs == list(range(total - (1 << 14), total))
    assert fast_result == {"lost": 0, "count": total, "in_order": True, "first": 0}
    slow.close()
    ring.close()


def test_a_sleeping_reader_is_woken_by_the_writer(instance: str) -> None:
    pytest.importorskip("engine._ring")
    ring = Ring.create(instance=instance, exchange="s", exchange_id=1, capacity=1024)
    w = RingWriter(instance=instance, exchange="s")
    out, ready = ctx.Queue(), ctx.Event()
    child = _start(procs.sleeper, instance, out, ready)
    _wait(ready)
    header = shm.Segment.open(ring.name)
    waiters = header.buf[:4096].cast("I")
    try:
        # The sleeper announces itself before it sleeps; write only once it has.
        deadline_spins = 0
        while waiters[324 // 4] == 0:
            deadline_spins += 1
            assert child.is_alive()
            os.sched_yield()
    finally:
        waiters.release()
        header.close()
    w.write(Kind.TRADE, 1, 0, 1, 0, 0, 1.0, 1.0, 42, 0)
    result = out.get(timeout=JOIN)  # the sleeper's own timeout is 60 s
    child.join(JOIN)
    assert result == {"woke": True, "records": [42]}
    w.close()
    ring.close()


def test_killed_writer_is_replaced_and_readers_see_the_new_generation(instance: str) -> None:
    ring = Ring.create(instance=instance, exchange="s", exchange_id=1, capacity=1024)
    rd = RingReader("s", instance=instance, start="oldest")
    ready = ctx.Event()
    child = _start(procs.attached_writer, instance, ready)
    _wait(ready)
    os.kill(child.pid, signal.SIGKILL)
    child.join(JOIN)
    gen = ring.generation
    w = RingWriter(instance=instance, exchange="s")
    assert ring.generation == gen + 1
    w.write(Kind.TRADE, 1, 0, 1, 0, 0, 1.0, 1.0, 500, 0)
    recs = rd.read()
    assert [r.ref for r in recs[:10]] == list(range(10))
    gaps = [r for r in recs[10:-1]]
    assert gaps
    assert all(r.kind == Kind.GAP and r.aux == GapReason.WRITER_RESTART for r in gaps)
    assert recs[-1].ref == 500
    assert 999 not in [r.ref for r in recs], "an uncommitted record never becomes visible"
    assert rd.restarts == 1
    rd.close()
    w.close()
    ring.close()


def test_segments_of_a_killed_engine_are_detected_and_replaced(instance: str) -> None:
    ready = ctx.Event()
    child = _start(procs.engine_owner, instance, ready)
    _wait(ready)
    rd = RingReader("s", instance=instance, start="oldest")
    table = SymbolTable(instance)
    assert table.get(1) is not None
    assert table.get(1).symbol == "BTC-USDT"
    assert len(rd.read()) == 1
    os.kill(child.pid, signal.SIGKILL)
    child.join(JOIN)
    assert sorted(shm.instance_segments(instance)) == sorted(
        [shm.ring_name(instance, "s"), shm.symbols_name(instance)]
    ), "a killed engine leaves its segments behind"
    reg = SymbolRegistry.create(instance)
    reg.register_exchange(5, "s")
    reg.add(
        exchange_id=5,
        symbol="ETH-USDT",
        venue_symbol="ETHUSDT",
        price_decimals=2,
        size_decimals=4,
        base="ETH",
        quote="USDT",
    )
    ring = Ring.create(instance=instance, exchange="s", exchange_id=5, capacity=1024)
    w = RingWriter(instance=instance, exchange="s")
    w.write(Kind.TRADE, 1, Flag.LAST, 1, 0, 0, 2.0, 1.0, 77, 0)
    recs = rd.read()
    assert [r.ref for r in recs] == [77]
    assert rd.restarts == 1
    table.refresh()
    assert table.get(1) is not None
    assert table.get(1).symbol == "ETH-USDT"
    table.close()
    rd.close()
    w.close()
    ring.close()
    reg.close()
    assert shm.instance_segments(instance) == []
