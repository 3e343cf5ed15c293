"""`wsm run`: the engine (and, when enabled, its API) until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from engine.config import EngineConfig
from engine.manager import WebSocketManager


async def run_engine(config: EngineConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with WebSocketManager(config):
        print(f"wsm: engine running (instance {config.instance!r})", file=sys.stderr, flush=True)
        await stop.wait()
