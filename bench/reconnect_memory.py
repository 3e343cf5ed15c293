"""Memory a worker keeps per reconnect: `python -m bench.reconnect_memory [--cycles 120]`.

A Binance simulator (2,000 events/s) and an engine with one connection (trades and books on
two symbols); the simulator closes the connection `--cycles` times, each time once the
connection is live again. Reported: the worker's private anonymous memory (`RssAnon`, which
leaves out the ring's shared pages a worker touches for the first time as it writes) between
a quarter of the way in and the end, per reconnect. Then, in this process, what one decoder
build over per-stream `msgspec.defstruct` types keeps (the reason sessions share theirs,
`RouteTable.cached`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from typing import Any


def rss_anon_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError(f"no RssAnon for {pid}")


async def reconnects(cycles: int) -> tuple[int, int, int]:
    from engine.backoff import ReconnectPolicy
    from engine.config import EngineConfig, ExchangeConfig
    from engine.db import DatabaseConfig
    from engine.manager import WebSocketManager
    from tests.e2e.harness import SimProc, until

    sim = await SimProc("binance", rate=2000).start()
    config = EngineConfig(
        instance=f"reconnect-memory-{os.getpid()}",
        database=DatabaseConfig(enabled=False),
        exchanges={
            "binance": ExchangeConfig(
                ws_url=sim.ws_url, rest_url=sim.rest_url, budget=100_000, budget_per_second=1e4
            )
        },
    )
    policy = ReconnectPolicy(max_attempts=0, delay=0.05, max_delay=0.2, reset_after=1.0)
    try:
        async with WebSocketManager(config) as manager:
            await manager.connect_to_exchange("binance", "c", reconnect=policy)
            for channel in ("trades", "orderbook"):
                await manager.subscribe(
                    "binance", "c", channel=channel, symbols=["BTC/USDT", "ETH/USDT"]
                )
            await manager.wait_for("c", timeout=30)
            pid = manager.coordinator.exchanges["binance"].process.pid
            assert pid is not None
            first = cycles // 4
            before = 0
            for i in range(cycles):
                done = manager.metrics("c").reconnects
                await sim.fault("close")
                await until(
                    lambda done=done: manager.metrics("c").reconnects > done, 20, "reconnect"
                )
                await manager.wait_for("c", timeout=30)
                if i == first:
                    await asyncio.sleep(1.5)
                    before = rss_anon_kb(pid)
            await asyncio.sleep(1.5)
            return before, rss_anon_kb(pid), cycles - 1 - first
    finally:
        await sim.stop()


def decoder_builds(n: int) -> float:
    """KB of private memory kept per decoder build (4 streams), in this process."""
    from adapters.binance.parse import build_decoder
    from adapters.binance.venue import VENUE
    from engine.streams import RouteTable, make_stream

    class Events:
        def __getattr__(self, name: str) -> Any:
            return lambda *a: None

    routes = RouteTable()
    for sym in ("BTCUSDT", "ETHUSDT"):
        for ch in ("trades", "orderbook"):
            routes.add(make_stream(VENUE, VENUE.spec.channel(ch), sym, 1, None, lambda s: None))  # type: ignore[arg-type]
    for _ in range(n // 10):
        build_decoder(routes, Events())  # type: ignore[arg-type]
    gc.collect()
    before = rss_anon_kb(os.getpid())
    for _ in range(n):
        build_decoder(routes, Events())  # type: ignore[arg-type]
    gc.collect()
    return (rss_anon_kb(os.getpid()) - before) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cycles", type=int, default=120)
    ap.add_argument("--builds", type=int, default=2000)
    args = ap.parse_args()
    import uvloop

    before, after, span = uvloop.run(reconnects(args.cycles))
    print(
        f"worker RssAnon {before} -> {after} KB over {span} reconnects: "
        f"{(after - before) / span:+.2f} KB per reconnect"
    )
    print(f"decoder build: {decoder_builds(args.builds):+.2f} KB kept per build (4 streams)")


if __name__ == "__main__":
    sys.exit(main())
