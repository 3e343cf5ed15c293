"""The worker's per-frame path in one process, without sockets: `python -m bench.hotpath`.

Drives `ShardListener.on_ws_frame` (with a stand-in for picows' frame) -> the Binance session
-> a real ring writer, over distinct blast frames, and reports CPU per message. It isolates
the Python work that `wsm bench wsm` measures together with picows and the kernel, so a change
to the hot path can be compared before/after (run it with PYTHONPATH pointing at another
checkout; interleave the runs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
from picows import WSMsgType

from adapters.binance.simulator import BinanceSim
from adapters.binance.venue import VENUE
from engine import shm
from engine.connection import ShardListener
from engine.ring import Ring, RingWriter
from engine.streams import RouteTable, make_stream
from engine.venue import Heartbeat


class Frame:
    """What on_ws_frame reads of a picows frame."""

    __slots__ = ("last_in_buffer", "msg_type", "payload", "payload_size")

    def __init__(self, payload: memoryview, last: bool) -> None:
        self.msg_type = WSMsgType.TEXT
        self.payload = payload
        self.payload_size = len(payload)
        self.last_in_buffer = last

    def get_payload_as_memoryview(self) -> memoryview:
        return self.payload


class Events:
    def on_parse_error(self, channel: str, detail: str) -> None:
        raise AssertionError(f"{channel}: {detail}")

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


def frames(kind: str, n: int, per_read: int) -> list[Frame]:
    sim = BinanceSim()
    stream = sim.blast_stream(f"btcusdt@{kind}")
    assert stream is not None
    tpl = stream.templates[True]
    rows = tpl.render(n, stream.fill(n, time.time_ns() // 1_000_000, np.random.default_rng(1)))
    head = tpl.frame_size - tpl.payload_size
    return [
        Frame(memoryview(bytes(r[head:])), i % per_read == per_read - 1) for i, r in enumerate(rows)
    ]


def measure(kind: str, n: int, per_read: int, rounds: int) -> list[float]:
    instance = f"hot{time.time_ns()}"
    ring = Ring.create(instance=instance, exchange="binance", exchange_id=1)
    writer = RingWriter(instance=instance, exchange="binance")
    channel = {"trade": "trades", "bookTicker": "ticker", "depth@100ms": "orderbook"}[kind]
    routes = RouteTable()
    stream = make_stream(VENUE, VENUE.spec.channel(channel), "BTCUSDT", 1, writer, lambda s: None)
    routes.add(stream)
    session = VENUE.session(routes, writer, Events())
    shard = SimpleNamespace(
        session=session,
        worker=SimpleNamespace(writer=writer, config=SimpleNamespace(max_message_bytes=1 << 20)),
        heartbeat=Heartbeat(idle=30.0, timeout=10.0),
    )
    listener = ShardListener(shard)  # type: ignore[arg-type]
    out = []
    try:
        for _ in range(rounds):
            batch = frames(kind, n, per_read)
            stream.last_id = 0
            if stream.book is not None:  # live book: the first delta bridges a snapshot
                from engine.venue import BookSnapshot

                first = int(bytes(batch[0].payload).split(b'"U":')[1].split(b",")[0])
                stream.book.on_snapshot(BookSnapshot(first - 1, [], []), 0)
            on_frame = listener.on_ws_frame
            t0 = time.process_time_ns()
            for f in batch:
                on_frame(None, f)  # type: ignore[arg-type]
            out.append((time.process_time_ns() - t0) / n / 1000)
    finally:
        writer.close()
        ring.close()
        for name in shm.instance_segments(instance):
            shm.unlink(name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--per-read", type=int, default=256, help="frames per read buffer")
    args = ap.parse_args()
    for kind, n in (
        ("trade", args.messages),
        ("bookTicker", args.messages),
        ("depth@100ms", args.messages // 10),
    ):
        xs = measure(kind, n, args.per_read, args.rounds)
        print(  # on a shared machine interference only adds: the minimum is the figure
            f"{kind:12s} min {min(xs):.3f} us/msg, median {statistics.median(xs):.3f} "
            f"({args.rounds} rounds of {n})"
        )


if __name__ == "__main__":
    main()
