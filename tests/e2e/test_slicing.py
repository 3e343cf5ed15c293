"""RELIABILITY row 6: frames sliced into 1-3-byte TCP segments at 10 KB/s reassemble
correctly: what an engine behind such a link writes equals what one connected directly writes.

A real TCP proxy sits between one engine and the simulator and re-cuts the byte stream, both
ways, into writes of 1 to 3 bytes (TCP_NODELAY, so each is its own segment) at 10 KB/s.
Another engine reads the same simulator directly. Both see the same market (the simulator
broadcasts one frame to every subscriber): their trades must be equal record for record over
the span both saw, their books must equal the simulator's, and the sliced one must have
counted no parse error, no gap and no reconnect.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from engine import shm
from engine.manager import WebSocketManager
from engine.records import Kind
from tests.e2e.conftest import Engine, engine_config
from tests.e2e.harness import CASES, SimProc, VenueCase, kinds, until
from tests.e2e.test_engine import assert_books_match

BANDWIDTH = 10_000  # bytes per second, each way
# KuCoin's WebSocket address comes from its token response, not from the configuration
SLICE_CASES = [c for c in CASES if c.exchange != "kucoin"]


class Slicer:
    """One direction of the proxy: forwards what it reads in writes of 1-3 bytes, paced."""

    def __init__(self, writer: asyncio.StreamWriter, rng: random.Random) -> None:
        self.writer = writer
        self.rng = rng
        self.pending: deque[bytes] = deque()
        self.ready = asyncio.Event()
        self.writes = 0
        self.largest = 0
        self.sent = 0

    async def pump(self, reader: asyncio.StreamReader) -> None:
        """Read freely (the upstream never sees back-pressure), queue for the drip."""
        while data := await reader.read(65536):
            self.pending.append(data)
            self.ready.set()
        self.pending.append(b"")  # end of stream
        self.ready.set()

    async def drip(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        buf = b""
        while True:
            if not buf:
                if not self.pending:
                    self.ready.clear()
                    await self.ready.wait()
                buf = self.pending.popleft()
                if not buf:
                    self.writer.close()
                    return
                due = max(due, loop.time())
            n = min(len(buf), self.rng.randint(1, 3))
            self.writer.write(buf[:n])
            buf = buf[n:]
            self.writes += 1
            self.sent += n
            self.largest = max(self.largest, n)
            due += n / BANDWIDTH
            await self.writer.drain()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())


class SlicingProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = upstream
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.rng = random.Random(6)
        self.down: list[Slicer] = []  # venue -> engine
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        parts = urlsplit(self.upstream)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))

    async def _client(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        u_reader, u_writer = await asyncio.open_connection(self.host, self.port)
        for w in (c_writer, u_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        down, up = Slicer(c_writer, self.rng), Slicer(u_writer, self.rng)
        self.down.append(down)
        for coro in (down.pump(u_reader), down.drip(), up.pump(c_reader), up.drip()):
            task = asyncio.ensure_future(coro)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def queued(self) -> int:
        return sum(len(b) for s in self.down for b in s.pending)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture(params=SLICE_CASES, ids=lambda c: c.exchange)
def slice_case(request: pytest.FixtureRequest) -> VenueCase:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def slow_sim(slice_case: VenueCase) -> AsyncIterator[SimProc]:
    s = await SimProc(slice_case, rate=40).start()  # a few KB/s: the sliced link keeps up
    yield s
    await s.stop()


async def _engine(instance: str, case: VenueCase, sim: SimProc, ws_url: str) -> Engine:
    # heartbeats with room for a 10 KB/s link (they are not under test here)
    config = engine_config(
        instance, case, sim, ws_url=ws_url, heartbeat_idle=5.0, heartbeat_timeout=5.0
    )
    manager = WebSocketManager(config)
    await manager.start()
    return Engine(manager, case)


def _trades(engine: Engine, venue_symbol: str) -> list[tuple[int, int, int, float, float, int]]:
    sid = engine.symbol_id(venue_symbol)
    return [
        (r.side, r.flags, r.exch_ts, r.price, r.size, r.ref)
        for r in kinds(engine.read(), Kind.TRADE, sid)
    ]


async def test_sliced_slow_frames_give_the_same_records_as_a_clean_link(
    instance: str, slice_case: VenueCase, slow_sim: SimProc
) -> None:
    case, sim = slice_case, slow_sim
    proxy = SlicingProxy(sim.ws_url)
    sliced_url = await proxy.start()
    other = instance + "d"
    clean = await _engine(other, case, sim, sim.ws_url)
    sliced = await _engine(instance, case, sim, sliced_url)
    try:
        await clean.open()
        await sliced.open()

        def enough() -> bool:
            return all(len(_trades(sliced, s)) >= 5 for s in case.venue_symbols)

        await until(enough, 60, "trades through the sliced link")
        await sim.quiesce()
        await until(lambda: proxy.queued() == 0, 30, "the proxy to deliver what it queued")
        for s in case.venue_symbols:

            async def same_span(s: str = s) -> bool:
                a, b = _trades(clean, s), _trades(sliced, s)
                first = max(a[0][-1], b[0][-1])  # trade ids: the span both engines saw
                return [t for t in a if t[-1] >= first] == [t for t in b if t[-1] >= first]

            await until(same_span, 10, f"{s}: the same trades on both links")
        await assert_books_match(sliced, sim)
        await assert_books_match(clean, sim)
        m = sliced.manager.metrics("c1")
        assert m.parse_errors == {} or not any(m.parse_errors.values()), m.parse_errors
        assert (m.gaps, m.reconnects) == (0, 0)
        assert any(k.kind == Kind.SNAPSHOT_END for k in sliced.read())
        down = proxy.down[-1]
        assert down.largest <= 3 and down.writes >= down.sent / 3, "the link really sliced"
        assert down.sent > 2000, "enough bytes went through the slicer to mean something"
    finally:
        await clean.close()
        await sliced.close()
        await proxy.stop()
        leftovers = shm.instance_segments(other)
        for seg in leftovers:
            shm.unlink(seg)
        assert not leftovers, f"segments left behind: {leftovers}"
