"""Wake-up latency of a sleeping ring reader: `python -m bench.wakeup [--rounds 3]`.

A writer process publishes one record every `--interval` seconds, stamping `recv_ts` just
before it writes; a reader process measures `time.time_ns() - recv_ts` when it sees the record.
Variants, interleaved round by round: the sleeping reader (futex wake-up), the same reader
spinning (opt-in; the floor), and a baseline woken through a pipe (the writer writes a byte
after each record, the reader blocks reading a pipe).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import uuid
from typing import Any

import multiprocess as mp
import numpy as np

from engine.records import Kind
from engine.ring import Ring, RingReader, RingWriter

ctx = mp.get_context("spawn")


def new_instance() -> str:
    return f"wake{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _writer(instance: str, samples: int, interval: float, pipe_w: Any, ready: Any) -> None:
    w = RingWriter(instance=instance, exchange="w")
    ready.wait(30)
    time.sleep(0.05)
    for i in range(samples):
        now = time.time_ns()
        w.write(Kind.TRADE, 1, 1, 1, now, now, 1.0, 1.0, i, 0)
        if pipe_w is not None:
            pipe_w.send_bytes(b"x")
        time.sleep(interval)
    w.close()


def _reader(instance: str, samples: int, mode: str, pipe_r: Any, ready: Any, out: Any) -> None:
    rd = RingReader("w", instance=instance, spin=(mode == "spin"))
    lat: list[int] = []
    ready.set()
    while len(lat) < samples:
        if mode == "pipe":
            pipe_r.recv_bytes()
        else:
            rd.wait(5.0)
        now = time.time_ns()
        for rec_ts in rd.read_batch()["recv_ts"]:
            lat.append(now - int(rec_ts))
    out.put(lat[:samples])
    rd.close()


def run_variant(mode: str, samples: int, interval: float) -> list[int]:
    instance = new_instance()
    ring = Ring.create(instance=instance, exchange="w", exchange_id=1, capacity=1 << 16)
    r_fd, w_fd = ctx.Pipe(duplex=False) if mode == "pipe" else (None, None)
    ready, out = ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_reader, args=(instance, samples, mode, r_fd, ready, out))
    writer = ctx.Process(target=_writer, args=(instance, samples, interval, w_fd, ready))
    reader.start()
    writer.start()
    lat: list[int] = out.get(timeout=120)
    writer.join(60)
    reader.join(60)
    ring.close()
    return lat


def percentiles(lat: list[int]) -> dict[str, float]:
    a = np.array(lat) / 1000.0
    return {k: float(np.percentile(a, q)) for k, q in (("p50", 50), ("p99", 99), ("p99.9", 99.9))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--interval", type=float, default=0.0005)
    args = ap.parse_args()
    modes = ["sleep", "spin", "pipe"]
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for mode in modes:
            results[mode].append(percentiles(run_variant(mode, args.samples, args.interval)))
    print(
        f"# wake-up latency, {args.samples} samples x {args.rounds} rounds, "
        f"one record every {args.interval * 1e6:.0f} us"
    )
    print(
        f"# {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    print("| reader | p50 µs | p99 µs | p99.9 µs | p99 vs pipe |")
    print("|---|---|---|---|---|")
    pipe_p99 = statistics.median(r["p99"] for r in results["pipe"])
    for mode in modes:
        med = {k: statistics.median(r[k] for r in results[mode]) for k in ("p50", "p99", "p99.9")}
        rng = {
            k: (min(r[k] for r in results[mode]), max(r[k] for r in results[mode]))
            for k in ("p50", "p99", "p99.9")
        }
        cells = " | ".join(
            f"{med[k]:.1f} ({rng[k][0]:.1f}-{rng[k][1]:.1f})" for k in ("p50", "p99", "p99.9")
        )
        print(f"| {mode} | {cells} | {med['p99'] / pipe_p99:.2f} |")


if __name__ == "__main__":
    main()
