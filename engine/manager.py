"""`WebSocketManager`: WSM's programmatic API, for use inside your own asyncio program.

    async with WebSocketManager() as manager:
        await manager.connect_to_exchange("binance", connection_id="main-connection")
        await manager.subscribe("binance", "main-connection", channel="trades",
                                symbols=["BTC/USDT", "ETH/USDT"])

It starts one worker process per exchange (on first use) and the coordinator in the running
loop, and stops them cleanly. The CLI and the REST API drive the same object.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

import msgspec

from engine.backoff import ReconnectPolicy
from engine.config import EngineConfig
from engine.coordinator import (
    ConnectionInfo,
    ConnectionMetrics,
    Coordinator,
    SubscriptionInfo,
)
from engine.errors import NotFound, WSMError
from engine.registry import venues
from engine.ring import RingReader, Start


class ReaderStats(msgspec.Struct, kw_only=True):
    """A ring reader opened through `WebSocketManager.reader` in this process."""

    exchange: str
    lag: int  # records published but not yet read
    lost: int  # records it was lapped out of


class WebSocketManager:
    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.coordinator = Coordinator(self.config)
        self._readers: weakref.WeakSet[RingReader] = weakref.WeakSet()

    async def start(self) -> WebSocketManager:
        """Start the coordinator, restore what was stored, then open configured connections
        that are not there yet."""
        await self.coordinator.start()
        await self.coordinator.restore()
        for c in self.config.connections:
            if c.id in self.coordinator.conns:
                continue
            await self.connect_to_exchange(c.exchange, c.id, url=c.url, reconnect=c.reconnect)
            for s in c.subscriptions:
                await self.subscribe(
                    c.exchange, c.id, channel=s.channel, symbols=s.symbols, kinds=s.kinds
                )
        return self

    async def stop(self) -> None:
        await self.coordinator.stop()

    async def __aenter__(self) -> WebSocketManager:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _check(self, exchange: str, connection_id: str) -> None:
        conn = self.coordinator.conns.get(connection_id)
        if conn is None:
            raise NotFound("connection", connection_id)
        if conn.exchange != exchange:
            raise WSMError(f"connection {connection_id!r} is on {conn.exchange}, not {exchange}")

    async def connect_to_exchange(
        self,
        exchange: str,
        connection_id: str,
        *,
        url: str | None = None,
        reconnect: ReconnectPolicy | None = None,
        owner: str | None = None,
    ) -> ConnectionInfo:
        """Open a named connection; it connects (and reconnects by `reconnect`) by itself."""
        return await self.coordinator.connect(
            exchange, connection_id, url=url, policy=reconnect, owner=owner
        )

    async def subscribe(
        self,
        exchange: str,
        connection_id: str,
        *,
        channel: str,
        symbols: list[str],
        kinds: list[str] | None = None,
    ) -> SubscriptionInfo:
        """Subscribe to `channel` (`trades`, `ticker`, `orderbook`, or the venue's own) for
        `symbols` (`BTC/USDT`, `BTC-USDT` or the venue's spelling). `kinds` keeps only some
        record kinds (`trade`, `bbo`, `book`); the rest is dropped before it is parsed."""
        self._check(exchange, connection_id)
        return await self.coordinator.subscribe(connection_id, channel, symbols, kinds)

    async def unsubscribe(
        self,
        exchange: str,
        connection_id: str,
        *,
        subscription_id: str | None = None,
        channel: str | None = None,
        symbols: list[str] | None = None,
    ) -> list[SubscriptionInfo]:
        """Remove one subscription by id, or every one matching channel (and symbols)."""
        self._check(exchange, connection_id)
        subs = self.coordinator.subscriptions(connection_id)
        if subscription_id is not None:
            chosen = [s for s in subs if s.id == subscription_id]
        else:
            want = None
            if symbols is not None:
                ex = self.coordinator.exchanges[exchange]
                want = {ex.resolve(s).symbol for s in symbols}
            chosen = [
                s
                for s in subs
                if (channel is None or s.channel == channel)
                and (want is None or set(s.symbols) == want)
            ]
        if not chosen:
            raise NotFound("subscription", subscription_id or f"{channel} {symbols}")
        return [await self.coordinator.unsubscribe(s.id) for s in chosen]

    async def disconnect(self, exchange: str, connection_id: str) -> None:
        """Close the connection and forget it (and its subscriptions)."""
        self._check(exchange, connection_id)
        await self.coordinator.disconnect(connection_id)

    async def pause(self, exchange: str, connection_id: str) -> ConnectionInfo:
        """Disconnect but keep the connection and its subscriptions."""
        self._check(exchange, connection_id)
        return await self.coordinator.pause(connection_id)

    async def resume(self, exchange: str, connection_id: str) -> ConnectionInfo:
        """Reconnect a paused connection and restore its subscriptions."""
        self._check(exchange, connection_id)
        return await self.coordinator.resume(connection_id)

    async def reconnect(self, exchange: str, connection_id: str) -> None:
        self._check(exchange, connection_id)
        await self.coordinator.reconnect(connection_id)

    def connections(self) -> list[ConnectionInfo]:
        return self.coordinator.connections()

    def subscriptions(self, connection_id: str | None = None) -> list[SubscriptionInfo]:
        return self.coordinator.subscriptions(connection_id)

    def metrics(self, connection_id: str) -> ConnectionMetrics:
        return self.coordinator.metrics(connection_id)

    def reader(self, exchange: str, *, start: Start = "newest", **kw: Any) -> RingReader:
        """A ring reader for `exchange` in this process (subscribers elsewhere attach by name).
        Its lag and losses show in `readers()` while it is open."""
        reader = RingReader(exchange, instance=self.config.instance, start=start, **kw)
        self._readers.add(reader)
        return reader

    def readers(self) -> list[ReaderStats]:
        out = []
        for r in list(self._readers):
            if r.detached:
                self._readers.discard(r)
            else:
                out.append(ReaderStats(exchange=r.exchange, lag=r.lag, lost=r.lost))
        return out

    @staticmethod
    def exchanges_available() -> list[str]:
        """Exchanges with an installed adapter (they start on first use)."""
        return sorted(venues())

    @property
    def database_url(self) -> str | None:
        """The Postgres the engine persists to (None: persistence is off or not started)."""
        persist = self.coordinator.persist
        return None if persist is None else persist.url

    async def wait_for(
        self, connection_id: str, state: str = "live", *, timeout: float = 30.0
    ) -> ConnectionInfo:
        """Wait until the connection is in `state` (and, for `live`, all its subscriptions are
        active); raises TimeoutError with the last state otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            conn = self.coordinator.conns.get(connection_id)
            info = self.coordinator.connection_info(conn) if conn else None
            subs = self.coordinator.subscriptions(connection_id)
            if (
                info is not None
                and info.state == state
                and (state != "live" or all(s.status == "active" for s in subs))
            ):
                return info
            if time.monotonic() > deadline:
                last = info.state if info else "gone"
                raise TimeoutError(f"{connection_id} did not reach {state!r} (last: {last})")
            await asyncio.sleep(0.02)
