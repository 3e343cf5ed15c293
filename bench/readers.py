"""Ring reader processes for the benchmarks: they sleep on the ring's wake-up channel (never
spin), count what the engine wrote and measure receive -> read latency."""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np

from engine.records import Flag, Kind
from engine.ring import RingReader


def count_records(
    instance: str,
    exchange: str,
    kind: str,
    expect: int,
    idle: float,
    primary: bool,
    *,
    ready: Any,
    out: Any,
    sleep: float = 0.0,
) -> None:
    """Count messages of `kind` until `expect` (or `idle` seconds without any after the
    first); the primary reader also keeps receive -> read latency of every record it counts.
    `sleep`: seconds to sleep after each batch (a slow subscriber)."""
    rd = RingReader(exchange, instance=instance, start="newest")
    ready.set()
    messages = levels = 0
    first = last = 0
    lat: list[np.ndarray[Any, Any]] = []
    want = {"trade": Kind.TRADE, "aggTrade": Kind.TRADE, "bbo": Kind.BBO}.get(kind, Kind.BOOK_LEVEL)
    idle_since = time.monotonic()
    while messages < expect:
        batch = rd.read_batch()
        if not len(batch):
            if rd.closed or (messages and time.monotonic() - idle_since > idle):
                break
            if not messages and time.monotonic() - idle_since > 120:
                break
            rd.wait(0.1)
            continue
        now = time.time_ns()
        idle_since = time.monotonic()
        recs = batch[batch["kind"] == want]
        if want == Kind.BOOK_LEVEL:
            recs = recs[(recs["flags"] & Flag.SNAPSHOT) == 0]
            levels += len(recs)
            ends = recs[(recs["flags"] & Flag.LAST) != 0]
        else:
            ends = recs
        if len(ends):
            if not first:
                first = int(ends["recv_ts"][0])
            last = int(ends["recv_ts"][-1])
            messages += len(ends)
            if primary:
                lat.append(now - ends["recv_ts"])
        if sleep:
            time.sleep(sleep)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    latency = None
    if lat:
        a = np.concatenate(lat) / 1000.0
        latency = {
            k: float(np.percentile(a, q)) for k, q in (("p50", 50), ("p99", 99), ("p99.9", 99.9))
        }
    out.put(
        {
            "primary": primary,
            "exchange": exchange,
            "messages": messages,
            "levels": levels,
            "first_ns": first,
            "last_ns": last,
            "lost": rd.lost,
            "latency_us": latency,
            "cpu_s": ru.ru_utime + ru.ru_stime,
        }
    )
    rd.close()
