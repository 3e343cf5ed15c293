"""`wsm bench soak --minutes N`: every available exchange at a steady high rate, with a fault
every few seconds and readers attaching and leaving.

Each exchange whose simulator can blast does so to every subscription as soon as it is made
(also after each reconnect); the other demo exchanges (Coinbase, KuCoin: a connection-wide or
per-symbol sequence that pre-encoded frames cannot follow yet) run their simulator's own
random-walk market at `PACED_RATE` events/s on their demo symbols. The faults cycle through a
sequence gap (`skip`), a dropped connection (`close`), malformed frames, a venue shutdown
notice (make-before-break rollover) and a stalled socket (heartbeat timeout). Every few
seconds the soak samples each worker's resident memory, open file descriptors and asyncio
tasks (from its stats), the coordinator's memory and the instance's `/dev/shm` usage, and
reports their slope after a warm-up; it also compares the sequence gaps it injected with the
`GAP` records a reader saw, and checks that no shared memory segment is left behind. The
figures are for leaks, not speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.harness import Simulator
from bench.suite import blast_venues
from engine import shm
from engine.records import GapReason, Kind

# A lost update shows as a sequence gap, a checksum mismatch (Kraken) or, when it leaves the
# book crossed before a checksum is checked, as a crossed book.
LOSS_REASONS = {
    int(GapReason.SEQUENCE_GAP),
    int(GapReason.CHECKSUM_MISMATCH),
    int(GapReason.CROSSED_BOOK),
}
# Every disruptive fault (reconnect, rollover, stall) is followed by a harmless one, so that
# books are live again when the next sequence gap is injected (else the gap is invisible: the
# fresh snapshot already includes it).
FAULTS = (
    "skip",
    "close",
    "malformed",
    "skip",
    "shutdown",
    "malformed",
    "skip",
    "stall",
    "malformed",
)
TRADE_SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
BOOK_SYMBOLS = ["BTC/USDT", "ETH/USDT"]
PACED_RATE = 2_000.0  # market events/s of a simulator that cannot blast


def soak_policy() -> Any:
    """Never give up, come back fast: a fault every few seconds keeps a connection from ever
    staying live for the default `reset_after`, so the default policy (10 attempts) would
    rightly declare a venue that drops it every 5 s failed, which is not what a soak is for."""
    from engine.backoff import ReconnectPolicy

    return ReconnectPolicy(max_attempts=0, delay=0.1, max_delay=1.0, reset_after=2.0)


def soak_venues() -> dict[str, tuple[list[str], list[str], bool]]:
    """venue -> (trade symbols, book symbols, blasted)."""
    from engine.demo import DEMO_SYMBOLS
    from engine.registry import venues as registered

    out = {v: (TRADE_SYMBOLS, BOOK_SYMBOLS, True) for v in blast_venues()}
    for v in sorted(registered()):
        if v not in out and v in DEMO_SYMBOLS:
            out[v] = (DEMO_SYMBOLS[v][:3], DEMO_SYMBOLS[v][:2], False)
    return out


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def shm_bytes(instance: str) -> int:
    total = 0
    for name in shm.instance_segments(instance):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(os.path.join(shm.SHM_DIR, name)).st_blocks * 512
    return total


def slope_per_minute(t: list[float], y: list[float]) -> float | None:
    if len(t) < 3:
        return None
    return float(np.polyfit(np.array(t) / 60.0, np.array(y, dtype=float), 1)[0])


def gap_reader(instance: str, exchange: str, stop: Any, ready: Any, out: Any) -> None:
    """Count GAP records by reason (and records overall) until told to stop."""
    from engine.ring import RingReader

    rd = RingReader(exchange, instance=instance, start="newest")
    ready.set()
    gaps: dict[int, int] = {}
    events: list[tuple[int, int, int]] = []  # (recv_ts, symbol, reason) of every GAP
    records = 0
    while True:
        finished = stop.is_set()
        batch = rd.read_batch()
        records += len(batch)
        g = batch[batch["kind"] == Kind.GAP]
        for ts, symbol, reason in zip(g["recv_ts"], g["symbol"], g["aux"], strict=True):
            gaps[int(reason)] = gaps.get(int(reason), 0) + 1
            events.append((int(ts), int(symbol), int(reason)))
        if not len(batch):
            if finished:
                break
            rd.wait(0.05)
    out.put(
        {"exchange": exchange, "gaps": gaps, "events": events, "records": records, "lost": rd.lost}
    )
    rd.close()


def visitor(instance: str, exchange: str, seconds: float) -> None:
    """A subscriber that attaches, reads for a while and leaves."""
    from engine.ring import RingReader

    deadline = time.monotonic() + seconds
    with RingReader(exchange, instance=instance, start="newest") as rd:
        while time.monotonic() < deadline:
            rd.read_batch()
            rd.wait(0.05)


def soak(*, minutes: float, tiny: bool = False, rate: float | None = None) -> dict[str, Any]:
    import uvloop

    return uvloop.run(_soak(minutes * 60.0, tiny=tiny, rate=rate))


async def _soak(seconds: float, *, tiny: bool, rate: float | None) -> dict[str, Any]:
    import multiprocess as mp

    from engine.config import EngineConfig, ExchangeConfig
    from engine.db import DatabaseConfig
    from engine.manager import WebSocketManager

    plan = soak_venues()
    venues = list(plan)
    per_stream = rate or (200.0 if tiny else 2_000.0)
    fault_every = 2.5 if tiny else 5.0
    sample_every = 1.0 if tiny else 5.0
    instance = f"soak{os.getpid()}"
    sims = {
        v: Simulator(v, blast=per_stream) if blasted else Simulator(v, rate=PACED_RATE)
        for v, (_, _, blasted) in plan.items()
    }
    ctx = mp.get_context("spawn")
    loop = asyncio.get_running_loop()
    config = EngineConfig(
        database=DatabaseConfig(enabled=False),  # benchmarks measure the engine, not Postgres
        instance=instance,
        rollover_overlap=0.5,
        ring_capacity=1 << 16,  # 4 MiB: the ring wraps early, so its pages stop growing
        exchanges={
            v: ExchangeConfig(
                ws_url=s.ws_url,
                rest_url=s.rest_url,
                heartbeat_idle=1.0,
                heartbeat_timeout=1.0,
                budget=1000,
                budget_per_second=100.0,
            )
            for v, s in sims.items()
        },
    )
    samples: list[dict[str, Any]] = []
    skips: dict[str, list[int]] = {v: [] for v in venues}  # wall-clock ns of each skip
    healed: dict[str, int] = {}
    faults: list[tuple[float, str, str]] = []
    readers_out = ctx.Queue()
    stop = ctx.Event()
    visitors_started = 0
    leftover: list[str] = []
    try:
        async with WebSocketManager(config) as manager:
            for v, (trade_symbols, book_symbols, _) in plan.items():
                await manager.connect_to_exchange(v, f"{v}-main", reconnect=soak_policy())
                await manager.subscribe(v, f"{v}-main", channel="trades", symbols=trade_symbols)
                await manager.subscribe(v, f"{v}-main", channel="orderbook", symbols=book_symbols)
                await manager.subscribe(v, f"{v}-main", channel="ticker", symbols=book_symbols)
            for v in venues:
                await manager.wait_for(f"{v}-main", timeout=30)
            readies, gap_procs = [], []
            for v in venues:
                ready = ctx.Event()
                p = ctx.Process(
                    target=gap_reader, args=(instance, v, stop, ready, readers_out), daemon=True
                )
                p.start()
                readies.append(ready)
                gap_procs.append(p)
            for ready in readies:
                await loop.run_in_executor(None, ready.wait, 30)
            exchanges = {v: manager.coordinator.exchanges[v] for v in venues}
            start = time.monotonic()
            next_fault = start + fault_every
            next_sample = start
            i = 0
            visitors: list[Any] = []
            while time.monotonic() - start < seconds:
                now = time.monotonic()
                if now >= next_sample:
                    samples.append(_sample(now - start, instance, exchanges))
                    next_sample += sample_every
                # a fault right before the end could not be seen through: stop 3 s early
                if now >= next_fault and now - start < seconds - 3.0:
                    name = FAULTS[i % len(FAULTS)]
                    i += 1
                    for v, s in sims.items():
                        if name == "skip":
                            skips[v].append(time.time_ns())
                        await loop.run_in_executor(None, _fault, s, name)
                        faults.append((round(now - start, 1), v, name))
                    # a reconnect leaves books resynchronising: give the next skip room
                    next_fault += fault_every
                    v = venues[visitors_started % len(venues)]
                    proc = ctx.Process(
                        target=visitor, args=(instance, v, fault_every * 0.6), daemon=True
                    )
                    proc.start()
                    visitors.append(proc)
                    visitors_started += 1
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)  # the last resyncs finish
            samples.append(_sample(time.monotonic() - start, instance, exchanges))
            stop.set()
            seen = [await loop.run_in_executor(None, readers_out.get) for _ in gap_procs]
            for p in [*gap_procs, *visitors]:
                await loop.run_in_executor(None, p.join, 10)
            metrics = {v: manager.metrics(f"{v}-main") for v in venues}
            # a loss the market undid before the client could see it (Kraken: no sequence,
            # only checksums) is not a gap anyone can detect
            healed = {
                v: int(
                    (await loop.run_in_executor(None, s.control, "stats")).get("losses_healed", 0)
                )
                for v, s in sims.items()
            }
    finally:
        for s in sims.values():
            s.stop()
        leftover = shm.instance_segments(instance)
        for name in leftover:
            shm.unlink(name)
    losses = Losses(skips, {v: len(plan[v][1]) for v in venues}, healed, fault_every)
    return _report(seconds, venues, samples, losses, seen, faults, metrics, leftover)


@dataclass(frozen=True)
class Losses:
    """What the soak injected: each skip's wall-clock time per venue (every book of the
    venue loses an update), the venue's book count, and the losses its simulator saw the market
    undo before the client could see them."""

    skips: dict[str, list[int]]
    books: dict[str, int]
    healed: dict[str, int]
    fault_every: float

    def injected(self, venue: str) -> int:
        return len(self.skips[venue]) * self.books[venue]


def _classify(losses: Losses, seen: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Each injected loss, per book: `detected` (a sequence, checksum or crossed-book GAP for
    that symbol before the next fault), `absorbed` (the book was resynchronising around it: a
    GAP of another reason within a fault period either side, so a fresh snapshot covered the
    loss), or `missed` (neither: readers were never told their book was wrong)."""
    window = int(losses.fault_every * 1e9)
    out = {}
    for r in seen:
        v = r["exchange"]
        # the books' symbols: every book has GAP records (each reconnect writes one per book)
        symbols = sorted({s for _, s, _ in r["events"] if s})[: losses.books[v]] or [0]
        counts = {"detected": 0, "absorbed": 0, "missed": 0}
        for sym in symbols:
            near = [(ts, why) for ts, s, why in r["events"] if s in (sym, 0)]
            for t in losses.skips[v]:
                if any(t <= ts < t + window and why in LOSS_REASONS for ts, why in near):
                    counts["detected"] += 1
                elif any(t - window <= ts < t + window for ts, _ in near):
                    counts["absorbed"] += 1
                else:
                    counts["missed"] += 1
        out[v] = counts
    return out


def _fault(sim: Simulator, name: str) -> None:
    if name == "malformed":
        for kind in ("truncated", "wrong_types", "unknown_type"):
            sim.control("fault/malformed", kind=kind)
    elif name == "shutdown":
        sim.control("fault/shutdown", grace=0.5)
    else:
        sim.control(f"fault/{name}")


def _sample(t: float, instance: str, exchanges: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"t": t, "shm_bytes": shm_bytes(instance)}
    row["coordinator_rss_kb"] = rss_kb(os.getpid())
    for name, ex in exchanges.items():
        pid = ex.process.pid
        row[f"{name}.rss_kb"] = rss_kb(pid)
        row[f"{name}.fds"] = open_fds(pid)
        row[f"{name}.tasks"] = ex.stats.tasks if ex.stats else None
    return row


def _report(
    seconds: float,
    venues: list[str],
    samples: list[dict[str, Any]],
    losses: Losses,
    seen: list[dict[str, Any]],
    faults: list[tuple[float, str, str]],
    metrics: dict[str, Any],
    leftover: list[str],
) -> dict[str, Any]:
    # rings take their pages through their first wrap: a 4 MiB ring at the paced venues'
    # 2,000 events/s wraps after 30-60 s, so slopes start after two minutes in a long run
    warm = min(120.0, seconds / 4)
    after = [s for s in samples if s["t"] >= warm]
    keys = [k for k in samples[0] if k != "t"] if samples else []
    slopes = {
        k: slope_per_minute([s["t"] for s in after], [s[k] for s in after if s[k] is not None])
        if all(s[k] is not None for s in after)
        else None
        for k in keys
    }
    gaps = {}
    for r in seen:
        v = r["exchange"]
        # a venue without sequence numbers (Kraken) sees a lost update as a checksum mismatch
        detected = r["gaps"].get(int(GapReason.SEQUENCE_GAP), 0) + r["gaps"].get(
            int(GapReason.CHECKSUM_MISMATCH), 0
        )
        gaps[v] = {
            "injected": losses.injected(v),
            "healed": losses.healed.get(v, 0),
            "detected": detected,
            "by_reason": {GapReason(k).name.lower(): n for k, n in r["gaps"].items()},
            "records": r["records"],
            "reader_lost": r["lost"],
        }
    skips = _classify(losses, seen)
    # a loss the market itself undid (Kraken's simulator counts them) leaves nothing to see
    ok = not leftover and all(c["missed"] <= losses.healed.get(v, 0) for v, c in skips.items())
    return {
        "ok": ok,
        "seconds": seconds,
        "venues": venues,
        "warm_up_s": warm,
        "slopes_per_minute": slopes,
        "first": samples[0] if samples else None,
        "last": samples[-1] if samples else None,
        "gaps": gaps,
        "skips": skips,
        "faults": len(faults),
        "fault_kinds": sorted({f[2] for f in faults}),
        "reconnects": {v: m.reconnects for v, m in metrics.items()},
        "rollovers": {v: m.rollovers for v, m in metrics.items()},
        "parse_errors": {v: dict(m.parse_errors) for v, m in metrics.items()},
        "leftover_segments": leftover,
        "samples": samples,
    }
