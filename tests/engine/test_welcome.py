"""The engine's welcome hook (`VenueSpec.welcome`): on a venue that greets its connections a
shard sends nothing before the greeting, and drops a socket that is never greeted. A worker in
this process against the KuCoin simulator over real loopback sockets."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from adapters.kucoin import VENUE
from adapters.kucoin.simulator import KucoinSim
from adapters.simkit import SimServer
from engine.backoff import ReconnectPolicy
from engine.protocol import Event, StateChanged, StreamSpec
from engine.records import ConnState, Kind
from engine.streams import kind_bit
from engine.worker import Worker, WorkerConfig
from tests.e2e.harness import until
from tests.support import ListSink

POLICY = ReconnectPolicy(delay=0.05, max_delay=0.2, max_attempts=0, reset_after=1.0)


class Writer(ListSink):
    """The worker's ring writer, minus the ring."""

    def commit(self) -> None:
        pass

    def heartbeat(self) -> None:
        pass


async def worker_for(sim: SimServer, connect_timeout: float) -> tuple[Worker, list[Event]]:
    events: list[Event] = []
    config = WorkerConfig(
        exchange="kucoin",
        instance="welcome-test",
        ws_url=sim.ws_url,
        rest_url=sim.rest_url,
        heartbeat=VENUE.spec.heartbeat,
        limits=VENUE.spec.limits,
        connect_timeout=connect_timeout,
    )
    worker = Worker(VENUE, config, emit=events.append, writer=Writer())  # type: ignore[arg-type]
    worker.open("c1", 1, None, POLICY)
    trades = VENUE.spec.channel("trades")
    assert trades is not None
    name = VENUE.stream_name(trades, "BTC-USDT")
    worker.set_streams("c1", [StreamSpec(name, "trades", "BTC-USDT", 1, kind_bit(Kind.TRADE))])
    return worker, events


def states(events: list[Event]) -> list[tuple[int, str]]:
    return [(e.state, e.reason) for e in events if isinstance(e, StateChanged)]


@pytest.fixture
async def slow_greeter() -> AsyncIterator[tuple[SimServer, KucoinSim]]:
    sim = KucoinSim(welcome_delay=0.4)
    async with SimServer(sim, rate=100) as srv:
        yield srv, sim


async def test_requests_wait_for_the_welcome(slow_greeter: tuple[SimServer, KucoinSim]) -> None:
    srv, sim = slow_greeter
    worker, events = await worker_for(srv, connect_timeout=5.0)
    try:
        await until(lambda: any(s == ConnState.LIVE for s, _ in states(events)), 10, "live")
        (client,) = srv.clients
        assert client.recv_times[0] - client.connected_at >= 0.4, "the subscription waited"
        assert sim.violations == {} and sim.requests == 1
        await until(lambda: worker.routes.get("/market/match:BTC-USDT").count, 10, "trades")
    finally:
        await worker.shutdown()


async def test_a_connection_never_greeted_is_dropped_and_retried() -> None:
    sim = KucoinSim(welcome_delay=60.0)
    async with SimServer(sim, rate=0) as srv:
        started = time.monotonic()
        worker, events = await worker_for(srv, connect_timeout=0.3)
        try:
            await until(lambda: srv.connections_total >= 2, 10, "a second attempt")
            closed = [r for s, r in states(events) if s == ConnState.CLOSED]
            assert closed and closed[0] == "no welcome from the venue within 0.3s"
            assert time.monotonic() - started >= 0.3
            assert ConnState.LIVE not in [s for s, _ in states(events)]
            assert sim.requests == 0 and sim.violations == {}, "nothing was sent ungreeted"
        finally:
            await worker.shutdown()
