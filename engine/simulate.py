"""`wsm simulate`: run an exchange simulator standalone."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import orjson

from engine.registry import load_venue


async def serve(
    exchange: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    rate: float = 50.0,
    ping_interval: float | None = None,
    max_lifetime: float | None = None,
    seed: int = 1,
    extra_symbols: int = 0,
    options: dict[str, Any] | None = None,
    rest_port: int = 0,
    blast: str | None = None,
    blast_count: int | None = None,
) -> None:
    """`options` are the venue simulator's own keyword arguments (`wsm simulate --option`).
    `blast`: "max" or frames per second per stream: every client gets pre-encoded frames of
    its subscribed streams as soon as it subscribes (`blast_count` per stream, else endless)."""
    from adapters.simkit import SimServer
    from adapters.simkit.blast import BlastConfig

    blast_config = None
    if blast is not None:
        blast_config = BlastConfig(rate=None if blast == "max" else float(blast), count=blast_count)

    venue = load_venue(exchange)
    server = SimServer(
        venue.simulator(seed=seed, extra_symbols=extra_symbols, **(options or {})),
        host=host,
        port=port,
        rate=rate,
        ping_interval=ping_interval,
        max_lifetime=max_lifetime,
        rest_port=rest_port,
        blast=blast_config,
    )
    await server.start()
    info = {
        "exchange": exchange,
        "ws_url": server.ws_url,
        "rest_url": server.rest_url,
        "control": f"{server.rest_url}/_sim/",
    }
    sys.stdout.write(orjson.dumps(info).decode() + "\n")
    sys.stdout.flush()
    print(
        f"{exchange} simulator: WebSocket {server.ws_url}  REST {server.rest_url}  "
        f"faults: {server.rest_url}/_sim/fault/<close|stall|skip|malformed|shutdown|refuse>",
        file=sys.stderr,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
