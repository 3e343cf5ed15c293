"""Real simulator processes and a real engine for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from engine.records import Kind, Record, format_decimal
from engine.symbols import SymbolTable


@dataclass(frozen=True)
class VenueCase:
    """What the venue-parametrized tests need to know about one exchange."""

    exchange: str
    symbols: tuple[str, ...]  # as a user would write them
    venue_symbols: tuple[str, ...]  # as the simulator names them
    book_channel: str = "orderbook"
    trade_channel: str = "trades"
    trade_ids_contiguous: bool = True  # simulator trade ids step by one per symbol
    shutdown_notice: bool = True  # the venue announces a cut (else it just closes)
    reject_reason: str = "Invalid request"  # in the venue's refusal of a subscription
    sim_args: tuple[str, ...] = ()  # for `wsm simulate`, e.g. the venue's timings for tests
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    VenueCase("binance", ("BTC/USDT", "ETH/USDT"), ("BTCUSDT", "ETHUSDT")),
    VenueCase(
        "coinbase",
        ("BTC/USD", "ETH/USD"),
        ("BTC-USD", "ETH-USD"),
        shutdown_notice=False,
        reject_reason="Failed to subscribe",
    ),
    VenueCase(
        "kucoin",
        ("BTC/USDT", "ETH/USDT"),
        ("BTC-USDT", "ETH-USDT"),
        trade_ids_contiguous=False,  # refs are the symbol's sequence, shared with the book
        shutdown_notice=False,
        # the token's ping interval/timeout are the heartbeat (config overrides do not apply)
        sim_args=("--option", "ping_interval_ms=1000", "--option", "ping_timeout_ms=1000"),
        reject_reason="is not found",
    ),
    VenueCase(
        "bybit",
        ("BTC/USDT", "ETH/USDT"),
        ("BTCUSDT", "ETHUSDT"),
        shutdown_notice=False,
        reject_reason="handler not found",
    ),
    VenueCase("okx", ("BTC/USDT", "ETH/USDT"), ("BTC-USDT", "ETH-USDT")),
    VenueCase(
        "kraken",
        ("BTC/USD", "ETH/USD"),
        ("BTC/USD", "ETH/USD"),
        shutdown_notice=False,
        reject_reason="Currency pair not supported",
        # no sequence: a lost book update shows as the next message's checksum mismatch
        extra={"skip_gap": "CHECKSUM_MISMATCH"},
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimProc:
    """`wsm simulate` in its own process, driven through its HTTP control endpoint. Given a
    `VenueCase`, it runs with the case's `sim_args`."""

    def __init__(
        self,
        exchange: str | VenueCase,
        *,
        port: int = 0,
        rate: float = 200.0,
        args: list[str] | None = None,
    ) -> None:
        if isinstance(exchange, VenueCase):  # the case's own simulator arguments first
            args = [*exchange.sim_args, *(args or [])]
            exchange = exchange.exchange
        self.exchange = exchange
        self.port = port
        # a fixed port comes with a fixed REST port, so a restart keeps both URLs
        self.rest_port = free_port() if port else 0
        self.rate = rate
        self.args = args or []
        self.proc: asyncio.subprocess.Process | None = None
        self.ws_url = self.rest_url = ""
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> SimProc:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine.cli",
            "simulate",
            "--exchange",
            self.exchange,
            "--port",
            str(self.port),
            "--rest-port",
            str(self.rest_port),
            "--rate",
            str(self.rate),
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        assert line, f"{self.exchange} simulator did not start"
        info = orjson.loads(line)
        self.ws_url, self.rest_url = info["ws_url"], info["rest_url"]
        self.port = int(self.ws_url.rsplit(":", 1)[1])
        self.rest_port = int(self.rest_url.rsplit(":", 1)[1])
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self

    async def control(self, path: str, **query: Any) -> Any:
        assert self._http is not None
        async with self._http.get(
            f"{self.rest_url}/_sim/{path}", params={k: str(v) for k, v in query.items()}
        ) as resp:
            body = await resp.read()
            assert resp.status == 200, body
            return orjson.loads(body)

    async def fault(self, name: str, **query: Any) -> Any:
        return (await self.control(f"fault/{name}", **query))["result"]

    async def stats(self) -> dict[str, Any]:
        return dict(await self.control("stats"))

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def quiesce(self, settle: float = 0.3) -> None:
        """Stop new market events; batched book updates still go out."""
        await self.control("pause", value=1)
        await asyncio.sleep(settle)  # longest batching interval of any simulator, plus margin


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Wait (bounded) until `predicate()` is truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def book_of(records: list[Record], symbol: int) -> tuple[dict[float, float], dict[float, float]]:
    from tests.support import book_from_records

    return book_from_records(records, symbol)


def as_text(side: dict[float, float], table: SymbolTable, symbol: int) -> dict[str, str]:
    info = table.get(symbol)
    assert info is not None
    return {
        format_decimal(p, info.price_decimals): format_decimal(q, info.size_decimals)
        for p, q in side.items()
    }


def sim_side(levels: list[list[str]]) -> dict[str, str]:
    return {str(Decimal(p)): str(Decimal(q)) for p, q in levels}


def normalize(side: dict[str, str]) -> dict[str, str]:
    return {str(Decimal(p)): str(Decimal(q)) for p, q in side.items()}


def kinds(records: list[Record], kind: Kind, symbol: int | None = None) -> list[Record]:
    return [r for r in records if r.kind == kind and (symbol is None or r.symbol == symbol)]


async def stop_quietly(*things: Any) -> None:
    for t in things:
        with contextlib.suppress(Exception):
            await t.stop()
