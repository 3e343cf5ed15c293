"""`wsm demo`: simulators + engine + API and dashboard, with a default configuration, on this
machine only (the embedded Postgres unless WSM_DATABASE_URL is set)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from typing import TextIO

import msgspec
import orjson

from engine.config import (
    ApiConfig,
    ConnectionConfig,
    EngineConfig,
    ExchangeConfig,
    SubscriptionConfig,
)
from engine.manager import WebSocketManager
from engine.run import serve_api

DEMO_SYMBOLS = {
    "binance": ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
    "coinbase": ["BTC/USD", "ETH/USD", "SOL/USD"],
    "kraken": ["BTC/USD", "ETH/USD", "SOL/USD"],
    "kucoin": ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
    "bybit": ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
    "okx": ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
}


async def _start_simulator(
    exchange: str, rate: float
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.cli",
        "simulate",
        "--exchange",
        exchange,
        "--rate",
        str(rate),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line:
        raise RuntimeError(f"the {exchange} simulator did not start")
    return proc, orjson.loads(line)


def demo_config(
    instance: str, sims: dict[str, dict[str, str]], api: ApiConfig | None = None
) -> EngineConfig:
    api = api or ApiConfig()
    return EngineConfig(
        instance=instance,
        # users of the dashboard may add connections to the simulated exchanges only
        api=msgspec.structs.replace(api, exchanges=list(sims)),
        exchanges={
            ex: ExchangeConfig(ws_url=info["ws_url"], rest_url=info["rest_url"])
            for ex, info in sims.items()
        },
        connections=[
            ConnectionConfig(
                exchange=ex,
                id=f"{ex}-demo",
                subscriptions=[
                    SubscriptionConfig(channel=ch, symbols=DEMO_SYMBOLS[ex])
                    for ch in ("trades", "ticker", "orderbook")
                ],
            )
            for ex in sims
        ],
    )


def _dashboard_note(url: str, config: EngineConfig) -> str:
    from api.auth import issue_token
    from api.secret import resolve_secret

    secret, _ = resolve_secret(config.api)
    token = issue_token(secret, config.owner, audience=config.api.jwt_audience, ttl=12 * 3600)
    return (
        f"Dashboard: {url}/  (REST API under {url}/api/websocket/, spec at {url}/openapi.json)\n"
        f"Token (paste it into the dashboard; valid 12 h, user {config.owner}):\n{token}"
    )


def status_line(manager: WebSocketManager) -> str:
    parts = []
    for c in manager.connections():
        m = manager.metrics(c.id)
        lat = f"{m.latency_p50_us / 1000:.1f}ms" if m.latency_p50_us is not None else "-"
        parts.append(
            f"{c.id}: {c.state} {m.messages_per_s:6.0f} msg/s p50 {lat} "
            f"gaps {m.gaps} reconnects {m.reconnects}"
        )
    return time.strftime("%H:%M:%S ") + " | ".join(parts)


async def run_demo(
    *,
    instance: str = "demo",
    exchanges: list[str] | None = None,
    rate: float = 50.0,
    duration: float | None = None,
    api_port: int | None = None,
    out: TextIO = sys.stdout,
) -> None:
    exchanges = exchanges or list(DEMO_SYMBOLS)
    procs: list[asyncio.subprocess.Process] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        sims = {}
        for ex in exchanges:
            proc, info = await _start_simulator(ex, rate)
            procs.append(proc)
            sims[ex] = info
        from engine.config import load_config

        config = demo_config(instance, sims, load_config(None).api)
        async with WebSocketManager(config) as manager, serve_api(manager, port=api_port) as url:
            wanted = {c.id for c in config.connections}
            for c in manager.connections():  # restored from an earlier demo with other venues
                if c.id not in wanted:
                    await manager.disconnect(c.exchange, c.id)
            for ex in exchanges:
                await manager.wait_for(f"{ex}-demo", timeout=30)
            print(
                f"WSM demo is running (instance {instance!r}): "
                f"{', '.join(exchanges)} simulators -> engine -> shared-memory rings.\n"
                f"In another shell, watch the normalized stream and the connections:\n"
                f"  .venv/bin/wsm tail {exchanges[0]} --instance {instance} --json\n"
                f"  .venv/bin/wsm status --instance {instance}\n"
                "Ctrl-C stops everything.",
                file=out,
                flush=True,
            )
            if url is not None:
                print(_dashboard_note(url, config), file=out, flush=True)
            deadline = None if duration is None else time.monotonic() + duration
            while not stop.is_set():
                timeout = 2.0 if deadline is None else min(2.0, deadline - time.monotonic())
                if timeout <= 0:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout)
                print(status_line(manager), file=out, flush=True)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await proc.wait()
