from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.backoff import ReconnectPolicy
from engine.config import EngineConfig, ExchangeConfig
from engine.db import DatabaseConfig
from engine.manager import WebSocketManager
from engine.protocol import Event
from engine.records import Record
from engine.ring import RingReader
from engine.symbols import SymbolTable
from tests.e2e.harness import CASES, SimProc, VenueCase, until

FAST = ReconnectPolicy(delay=0.05, max_delay=0.3, max_attempts=0, reset_after=1.0)


def engine_config(
    instance: str,
    case: VenueCase,
    sim: SimProc,
    *,
    database: DatabaseConfig | None = None,
    **overrides: Any,
) -> EngineConfig:
    exchange = {
        "ws_url": sim.ws_url,
        "rest_url": sim.rest_url,
        "heartbeat_idle": 0.5,
        "heartbeat_timeout": 0.5,
        "budget": 1000,
        "budget_per_second": 100.0,
    } | overrides
    return EngineConfig(
        instance=instance,
        stats_interval=0.2,
        worker_restart_delay=0.1,
        rollover_overlap=0.3,
        exchanges={case.exchange: ExchangeConfig(**exchange)},
        # persistence only where a test is about it (tests/e2e/test_persistence.py)
        database=database or DatabaseConfig(enabled=False),
    )


class Engine:
    """A started WebSocketManager, the events it heard, and a reader of its ring."""

    def __init__(self, manager: WebSocketManager, case: VenueCase) -> None:
        self.manager = manager
        self.case = case
        self.events: list[Event] = []
        manager.coordinator.listeners.append(lambda _ex, ev: self.events.append(ev))
        self.reader: RingReader | None = None
        self.records: list[Record] = []
        self.table: SymbolTable | None = None

    async def open(
        self,
        conn: str = "c1",
        channels: tuple[str, ...] | None = None,
        *,
        policy: ReconnectPolicy = FAST,
    ) -> None:
        case = self.case
        if conn not in self.manager.coordinator.conns:
            await self.manager.connect_to_exchange(case.exchange, conn, reconnect=policy)
        for ch in (case.trade_channel, case.book_channel) if channels is None else channels:
            await self.manager.subscribe(
                case.exchange, conn, channel=ch, symbols=list(case.symbols)
            )
        if self.reader is None:
            self.reader = self.manager.reader(case.exchange, start="oldest")
            self.table = SymbolTable(self.manager.config.instance)
        await self.manager.wait_for(conn, timeout=30)

    def read(self) -> list[Record]:
        assert self.reader is not None
        self.records.extend(self.reader.read())
        return self.records

    def symbol_id(self, venue_symbol: str) -> int:
        assert self.table is not None
        info = self.table.lookup(
            self.manager.coordinator.exchanges[self.case.exchange].venue.spec.exchange_id,
            venue_symbol,
        )
        assert info is not None
        return info.id

    def states(self, conn: str = "c1") -> list[tuple[int, str]]:
        from engine.protocol import StateChanged

        return [
            (e.state, e.reason)
            for e in self.events
            if isinstance(e, StateChanged) and e.conn == conn
        ]

    async def wait_live(self, conn: str = "c1", timeout: float = 30.0) -> None:
        await self.manager.wait_for(conn, timeout=timeout)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        if self.table is not None:
            self.table.close()
        await self.manager.stop()


@pytest.fixture(params=CASES, ids=lambda c: c.exchange)
def case(request: pytest.FixtureRequest) -> VenueCase:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def sim(case: VenueCase) -> AsyncIterator[SimProc]:
    s = await SimProc(case).start()
    yield s
    await s.stop()


@pytest.fixture
async def engine(instance: str, case: VenueCase, sim: SimProc) -> AsyncIterator[Engine]:
    manager = WebSocketManager(engine_config(instance, case, sim))
    await manager.start()
    eng = Engine(manager, case)
    yield eng
    await eng.close()


__all__ = ["Engine", "engine_config", "until"]
