"""Process bodies for the multi-process ring tests (importable by spawned children)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from engine.records import RECORD_DTYPE, Kind
from engine.ring import FUTEX, TAIL, WAITERS, RingReader, RingWriter

MIX = np.uint64(0x9E3779B97F4A7C15)


def checksum(seq: Any, payload: Any) -> Any:
    """What a record's `extra` must hold: a function of its seq and its payload."""
    s = np.asarray(seq, dtype=np.uint64)
    p = np.asarray(payload, dtype=np.uint64)
    return ((s * MIX) ^ p ^ (p >> np.uint64(29))) & np.uint64(0xFFFFFFFF)


def stress_writer(instance: str, seconds: float, seed: int, out: Any, started: Any) -> None:
    """Write checksummed records at full speed, in batches of random size."""
    rng = np.random.default_rng(seed)
    w = RingWriter(instance=instance, exchange="s")
    started.set()
    deadline = time.monotonic() + seconds
    batch = np.zeros(512, dtype=RECORD_DTYPE)
    batch["kind"] = Kind.TRADE
    while time.monotonic() < deadline:
        n = int(rng.integers(1, 512))
        b = batch[:n]
        seqs = np.arange(w.next_seq, w.next_seq + n, dtype=np.uint64)
        payload = rng.integers(0, 2**63, size=n, dtype=np.uint64)
        b["ref"] = payload
        b["exch_ts"] = (payload >> np.uint64(1)).astype(np.int64)
        b["price"] = (payload % np.uint64(10_000_000)).astype(np.float64) / 100.0
        b["size"] = (payload >> np.uint64(40)).astype(np.float64)
        b["aux"] = payload & np.uint64(0xFFFFFFFF)
        b["extra"] = checksum(seqs, payload)
        w.write_batch(b)
        if rng.random() < 0.3:  # and single records through the per-record path
            p = int(rng.integers(0, 2**63))
            s = w.next_seq
            w.write(
                Kind.TRADE,
                0,
                0,
                0,
                p >> 1,
                0,
                (p % 10_000_000) / 100.0,
                float(p >> 40),
                p,
                p & 0xFFFFFFFF,
                int(checksum(s, p)),
            )
    out.put(w.next_seq)
    w.close()


def verify(batch: np.ndarray[Any, Any]) -> int:
    """Number of records in the batch whose fields do not belong together (torn)."""
    p = batch["ref"]
    bad = batch["extra"] != checksum(batch["seq"], p)
    bad |= batch["exch_ts"] != (p >> np.uint64(1)).astype(np.int64)
    bad |= batch["price"] != (p % np.uint64(10_000_000)).astype(np.float64) / 100.0
    bad |= batch["aux"] != (p & np.uint64(0xFFFFFFFF))
    return int(bad.sum())


def stress_reader(instance: str, done: Any, out: Any, ready: Any) -> None:
    """Read everything until the writer is done; report counts and any violation."""
    rd = RingReader("s", instance=instance, start="oldest")
    start = rd.pos
    ready.set()
    received = torn = 0
    last = start - 1
    monotonic = True
    while True:
        finished = done.is_set()
        batch = rd.read_batch()
        if len(batch):
            seqs = batch["seq"]
            if int(seqs[0]) <= last or (len(seqs) > 1 and not (np.diff(seqs) == 1).all()):
                monotonic = False
            last = int(seqs[-1])
            received += len(batch)
            torn += verify(batch)
        elif finished:
            break
        else:
            rd.wait(0.05)
    out.put(
        {
            "start": start,
            "received": received,
            "lost": rd.lost,
            "torn": torn,
            "monotonic": monotonic,
            "end": rd.pos,
        }
    )
    rd.close()


def paced_writer(instance: str, total: int, per_batch: int, pause: float, out: Any) -> None:
    w = RingWriter(instance=instance, exchange="s")
    for i in range(0, total, per_batch):
        for j in range(i, min(i + per_batch, total)):
            w.append(Kind.TRADE, 1, 0, 1, j, j, 1.0, 1.0, j, 0)
        w.commit()
        time.sleep(pause)
    out.put(w.next_seq)
    w.close()


def fast_reader(instance: str, done: Any, out: Any, ready: Any) -> None:
    rd = RingReader("s", instance=instance, start="newest")
    ready.set()
    refs: list[int] = []
    while True:
        finished = done.is_set()
        batch = rd.read_batch()
        refs.extend(int(r) for r in batch["ref"])
        if not len(batch):
            if finished:
                break
            rd.wait(0.05)
    out.put(
        {
            "lost": rd.lost,
            "count": len(refs),
            "in_order": refs == sorted(refs),
            "first": refs[0] if refs else None,
        }
    )
    rd.close()


def sleeper(instance: str, out: Any, ready: Any) -> None:
    """Block in the futex wait with a long timeout; report whether a wake-up ended it."""
    rd = RingReader("s", instance=instance, start="newest")
    ready.set()
    woke = rd._header.shared.wait(FUTEX, WAITERS, TAIL, rd.pos, 60.0)
    out.put({"woke": bool(woke), "records": [r.ref for r in rd.read()]})
    rd.close()


def attached_writer(instance: str, ready: Any) -> None:
    """Attach as the writer, write a little, then hang until killed."""
    w = RingWriter(instance=instance, exchange="s")
    for i in range(10):
        w.write(Kind.TRADE, 1, 0, 1, i, i, 1.0, 1.0, i, 0)
    w.append(Kind.TRADE, 1, 0, 1, 0, 0, 1.0, 1.0, 999, 0)  # left uncommitted
    ready.set()
    time.sleep(600)


def engine_owner(instance: str, ready: Any) -> None:
    """Create a ring and a registry like an engine does, then hang until killed."""
    from engine.ring import Ring
    from engine.symbols import SymbolRegistry

    reg = SymbolRegistry.create(instance)
    reg.register_exchange(5, "s")
    reg.add(
        exchange_id=5,
        symbol="BTC-USDT",
        venue_symbol="BTCUSDT",
        price_decimals=2,
        size_decimals=5,
        base="BTC",
        quote="USDT",
    )
    Ring.create(instance=instance, exchange="s", exchange_id=5, capacity=1024)
    w = RingWriter(instance=instance, exchange="s")
    w.write(Kind.TRADE, 1, 0, 1, 0, 0, 1.0, 1.0, 1, 0)
    ready.set()
    time.sleep(600)
