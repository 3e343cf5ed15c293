"""The measured clients, each run as `python -m bench.clients JOB_JSON` in a fresh process.

A client connects to a simulator, subscribes, prints `{"event": "ready"}`, then counts the
messages it handles until it has `expect` of them (or none came for `idle` seconds) and prints
one `{"event": "result", ...}` line: messages, CPU seconds of the process that did the work,
the span from first to last message, and what else the variant knows (latency, gaps, lost).

Variants: `ceiling` (picows, frames discarded), `wsm` (the engine: worker process -> ring ->
reader processes), `websockets` (websockets + json, the hand-written baseline), `cryptofeed`
and `ccxt` (the peers, optional: `pip install .[peers]`).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from typing import Any

KINDS = ("trade", "aggTrade", "bbo", "book")


def cpu_self() -> float:
    """User + system CPU seconds of this process (getrusage: microsecond precision)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def stream_names(job: dict[str, Any]) -> list[str]:
    native = {"trade": "trade", "aggTrade": "aggTrade", "bbo": "bookTicker", "book": "depth@100ms"}
    return [f"{s.lower()}@{native[job['kind']]}" for s in job["symbols"]]


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


class Counter:
    """Messages seen, first/last time, and the end condition."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.n = 0
        self.n_first = 1
        self.first = 0.0
        self.last = 0.0
        self.cpu0 = 0.0
        self.cpu1 = 0.0
        self.done = asyncio.Event()

    def hit(self, k: int = 1) -> None:
        now = time.perf_counter()
        if not self.n:
            self.first = now
            self.n_first = k  # messages already in when the clock started
        self.n += k
        self.last = now
        if self.n >= self.expect and not self.done.is_set():
            self.cpu1 = cpu_self()
            self.done.set()

    async def wait(self, idle: float) -> None:
        """Until `expect` messages, or `idle` seconds without progress after the first."""
        seen = -1
        while not self.done.is_set():
            try:
                await asyncio.wait_for(self.done.wait(), idle)
            except TimeoutError:
                if self.n == seen and self.n > 0:
                    self.cpu1 = cpu_self()
                    return
                seen = self.n

    async def warm_up(self, job: dict[str, Any]) -> None:
        """Books: blast `warmup` frames first so that the client has fetched its snapshot
        before the measured blast (a snapshot taken after a burst would make it skip the whole
        burst as stale). Then start counting from zero."""
        count = job.get("warmup", 0)
        if count:
            import urllib.request

            url = f"{job['rest_url']}/_sim/blast?rate=max&count={count}"
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: urllib.request.urlopen(url, timeout=30).read())
            deadline = time.monotonic() + 30
            while self.n < count * len(job["symbols"]) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
        self.n = 0
        self.first = self.last = 0.0
        self.cpu0 = cpu_self()

    def result(self, **extra: Any) -> dict[str, Any]:
        span = self.last - self.first
        return {
            "messages": self.n,
            "cpu_s": (self.cpu1 or cpu_self()) - self.cpu0,
            "seconds": span,
            "rate": (self.n - self.n_first) / span if span > 0 else 0.0,
            **extra,
        }


# -- ceiling: picows, frames discarded ---------------------------------------------------------


async def run_ceiling(job: dict[str, Any]) -> dict[str, Any]:
    """picows, each frame counted and dropped: the least any picows client does per frame."""
    import picows

    counter = Counter(job["expect"])
    expect = job["expect"]
    text = picows.WSMsgType.TEXT

    class Discard(picows.WSListener):
        n = 0
        reads = 0

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is text:
                Discard.n += 1
                if frame.last_in_buffer:
                    Discard.reads += 1
                    if Discard.n >= expect or not counter.n:  # first and last: the times
                        counter.hit(Discard.n - counter.n)

    transports = []
    for group in split(stream_names(job), job.get("connections", 1)):
        url = f"{job['ws_url']}/stream?streams={'/'.join(group)}"
        transport, _ = await picows.ws_connect(Discard, url)
        transports.append(transport)
    await asyncio.sleep(0.2)
    counter.cpu0 = cpu_self()
    emit("ready")
    while not counter.done.is_set():  # the hot callback only looks at read boundaries
        await asyncio.sleep(0.05)
        if (
            Discard.n
            and Discard.n == counter.n
            and time.perf_counter() - counter.last > job["idle"]
        ):
            break
        if Discard.n > counter.n and time.perf_counter() - counter.last > 0.5:
            counter.hit(Discard.n - counter.n)
    for t in transports:
        t.disconnect()
    return counter.result(frames_per_read=Discard.n / max(Discard.reads, 1))


# -- raw: the simulator alone ------------------------------------------------------------------


async def run_raw(job: dict[str, Any]) -> dict[str, Any]:
    """A plain socket that counts bytes and never parses: how fast the simulator can send."""
    import base64

    from adapters.binance.simulator import BinanceSim

    names = stream_names(job)
    sim = BinanceSim()
    streams = [sim.blast_stream(n) for n in names]
    sizes = [int(b.templates[True].frame_size) for b in streams if b is not None]
    size = sum(sizes) / len(sizes)
    host, port = job["ws_url"][len("ws://") :].split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 22)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /stream?streams={'/'.join(names)} HTTP/1.1\r\nHost: {host}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    counter = Counter(job["expect"])
    await asyncio.sleep(0.2)
    counter.cpu0 = cpu_self()
    emit("ready")
    total, want = 0, job["expect"] * size
    while total < want:
        try:
            chunk = await asyncio.wait_for(reader.read(1 << 22), job["idle"])
        except TimeoutError:
            break
        if not chunk:
            break
        before = int(total / size)
        total += len(chunk)
        counter.hit(int(total / size) - before)
    writer.close()
    return counter.result()


# -- websockets + json: the hand-written baseline ------------------------------------------------


async def run_websockets(job: dict[str, Any]) -> dict[str, Any]:
    import websockets

    counter = Counter(job["expect"])
    book = job["kind"] == "book"

    async def one(group: list[str], ready: asyncio.Event) -> None:
        url = f"{job['ws_url']}/stream?streams={'/'.join(group)}"
        async with websockets.connect(url, max_size=None, compression=None) as ws:
            ready.set()
            async for raw in ws:
                msg = json.loads(raw)["data"]
                if book:
                    for side in ("b", "a"):
                        for p, q in msg[side]:
                            float(p), float(q)  # what a hand-written client does with a level
                else:
                    float(msg.get("p") or msg.get("b")), float(msg.get("q") or msg.get("B"))
                counter.hit()

    tasks, readies = [], []
    for group in split(stream_names(job), job.get("connections", 1)):
        ev = asyncio.Event()
        readies.append(ev)
        tasks.append(asyncio.create_task(one(group, ev)))
    for ev in readies:
        await ev.wait()
    await asyncio.sleep(0.2)
    await counter.warm_up(job)
    emit("ready")
    await counter.wait(job["idle"])
    for t in tasks:
        t.cancel()
    return counter.result()


# -- cryptofeed ----------------------------------------------------------------------------------


# cryptofeed's feeds pointed at the simulators, per venue: the feed class, the WebSocket path
# under the simulator's address, the REST routes it reads (instruments only for the simulator's
# own market: a Bybit or OKX simulator serves one category where cryptofeed asks for all of
# them), the l2book route (feeds that take their first book from REST), and the suffix of the
# venue's instruments in cryptofeed's symbols ("BTC-USDT" + suffix).
CRYPTOFEED_VENUES: dict[str, tuple[str, str, tuple[str, ...], str | None, str]] = {
    "binance": ("Binance", "", ("/api/v3/exchangeInfo",), "/api/v3/depth?symbol={}&limit={}", ""),
    "binance-usdm": (
        "BinanceFutures",
        "",
        ("/fapi/v1/exchangeInfo",),
        "/fapi/v1/depth?symbol={}&limit={}",
        "-PERP",
    ),
    "bybit": (
        "Bybit",
        "/v5/public/spot",
        ("/v5/market/instruments-info?category=spot&status=Trading&limit=1000",),
        None,
        "",
    ),
    "bybit-linear": (
        "Bybit",
        "/v5/public/linear",
        ("/v5/market/instruments-info?category=linear&status=Trading&limit=1000",),
        None,
        "-PERP",
    ),
    "okx": ("OKX", "/ws/v5/public", ("/api/v5/public/instruments?instType=SPOT",), None, ""),
}


def cryptofeed_feed_class(ws_url: str, rest_url: str, exchange: str = "binance") -> Any:
    """cryptofeed's feed for `exchange` (see CRYPTOFEED_VENUES) pointed at the simulator,
    through its public extension points: the class's endpoints, `connect()` (a `WSAsyncConn`
    subclass that accepts a ws:// address: cryptofeed refuses anything but wss://),
    `_parse_symbol_data` (one instruments answer where cryptofeed expects one per market) and
    `message_handler` (counts every message)."""
    import cryptofeed.exchanges
    from cryptofeed.connection import (
        AsyncConnection,
        RestEndpoint,
        Routes,
        WebsocketEndpoint,
        WSAsyncConn,
    )

    if exchange not in CRYPTOFEED_VENUES:
        raise ValueError(f"no cryptofeed feed for {exchange!r} (known: {list(CRYPTOFEED_VENUES)})")
    base_name, ws_path, instruments, l2book, _ = CRYPTOFEED_VENUES[exchange]
    base = getattr(cryptofeed.exchanges, base_name)
    routes = list(instruments) if len(instruments) > 1 else instruments[0]
    many = isinstance(routes, list)

    class LoopbackWSConn(WSAsyncConn):  # type: ignore[misc]
        def __init__(self, address: str, conn_id: str, **kwargs: Any) -> None:
            auth, sub = kwargs.pop("authentication", None), kwargs.pop("subscription", None)
            AsyncConnection.__init__(
                self, f"{conn_id}.ws.{self.conn_count}", authentication=auth, subscription=sub
            )
            self.address = address
            self.ws_kwargs = kwargs

    class SimFeed(base):  # type: ignore[misc,valid-type]
        websocket_endpoints = [WebsocketEndpoint(ws_url + ws_path, options={"compression": None})]
        rest_endpoints = [
            RestEndpoint(
                rest_url,
                routes=Routes(routes, l2book=l2book) if l2book else Routes(routes),
            )
        ]
        counter: Counter | None = None

        @classmethod
        def _parse_symbol_data(cls, data: Any) -> Any:
            if base_name in ("Bybit", "OKX") and not many:
                data = [data]  # these parsers iterate over one answer per market type
            if base_name == "BinanceFutures":  # cryptofeed needs it for perpetuals; the
                for sym in data["symbols"]:  # simulator sends it since 2026-11-27 (kept for
                    sym.setdefault("contractType", "PERPETUAL")  # before/after runs)
            return super()._parse_symbol_data(data)

        def connect(self) -> list[Any]:
            ret: list[Any] = []
            addr = self._address() or self.websocket_endpoints[0].address
            options = self.websocket_endpoints[0].options
            for a in [addr] if isinstance(addr, str) else addr:
                conn = LoopbackWSConn(a, self.id, subscription=self.subscription, **options)
                ret.append((conn, self.subscribe, self.message_handler, self.authenticate))
            return ret

        async def message_handler(self, msg: str, conn: Any, timestamp: float) -> None:
            await super().message_handler(msg, conn, timestamp)
            if self.counter is not None:
                self.counter.hit()

    SimFeed.__name__ = f"Sim{base_name}"
    return SimFeed


async def run_cryptofeed(job: dict[str, Any]) -> dict[str, Any]:
    from cryptofeed.defines import L2_BOOK, TICKER, TRADES

    channel = {"aggTrade": TRADES, "trade": TRADES, "bbo": TICKER, "book": L2_BOOK}[job["kind"]]
    exchange = job.get("exchange", "binance")
    feed_class = cryptofeed_feed_class(job["ws_url"], job["rest_url"], exchange)
    counter = Counter(job["expect"])
    callbacks_seen = [0]

    async def callback(*args: Any) -> None:
        callbacks_seen[0] += 1

    feeds = []
    loop = asyncio.get_running_loop()
    suffix = CRYPTOFEED_VENUES[exchange][4]
    for group in split(job["symbols"], job.get("connections", 1)):
        symbols = [f"{s[:-4]}-USDT{suffix}" if s.endswith("USDT") else s for s in group]
        feed = feed_class(channels=[channel], symbols=symbols, callbacks={channel: callback})
        feed.counter = counter
        feed.start(loop)
        feeds.append(feed)
    await asyncio.sleep(job.get("settle", 1.0))
    await counter.warm_up(job)
    callbacks_seen[0] = 0
    emit("ready")
    await counter.wait(job["idle"])
    for feed in feeds:
        feed.stop()
        await feed.shutdown()
    return counter.result(callbacks=callbacks_seen[0])


# -- ccxt pro ------------------------------------------------------------------------------------


async def run_ccxt(job: dict[str, Any]) -> dict[str, Any]:
    import ccxt.pro

    counter = Counter(job["expect"])
    book = job["kind"] == "book"

    class SimBinance(ccxt.pro.binance):  # type: ignore[misc]
        """Counts every message ccxt handles (its own handlers, through subclassing)."""

        def handle_trade(self, client: Any, message: Any) -> Any:
            counter.hit()
            return super().handle_trade(client, message)

        def handle_order_book(self, client: Any, message: Any) -> Any:
            counter.hit()
            return super().handle_order_book(client, message)

    exchange = SimBinance(
        {
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "tradesLimit": 100_000,
            }
        }
    )
    exchange.urls["api"]["ws"]["spot"] = job["ws_url"] + "/ws"
    exchange.urls["api"]["public"] = job["rest_url"] + "/api/v3"
    await exchange.load_markets()
    symbols = [exchange.markets_by_id[s][0]["symbol"] for s in job["symbols"]]
    name = "aggTrade" if job["kind"] == "aggTrade" else "trade"

    async def consume(symbol: str) -> None:
        while True:
            if book:
                await exchange.watch_order_book(symbol)
            else:
                await exchange.watch_trades(symbol, params={"name": name})

    tasks = [asyncio.create_task(consume(s)) for s in symbols]
    await asyncio.sleep(job.get("settle", 1.0))
    await counter.warm_up(job)
    emit("ready")
    await counter.wait(job["idle"])
    for t in tasks:
        t.cancel()
    await exchange.close()
    return counter.result()


# -- wsm -----------------------------------------------------------------------------------------


async def run_wsm(job: dict[str, Any]) -> dict[str, Any]:
    """The engine: one worker process per exchange (`job["venues"]`, else the job's own
    simulator), `readers` sleeping reader processes on the first exchange's ring and one on
    every other. CPU is each worker's own process time, from its stats reports."""
    import multiprocess as mp

    from bench import readers
    from engine.config import EngineConfig, ExchangeConfig
    from engine.db import DatabaseConfig
    from engine.manager import WebSocketManager

    venues = job.get("venues") or [
        {
            "exchange": job.get("exchange", "binance"),
            "ws_url": job["ws_url"],
            "rest_url": job["rest_url"],
        }
    ]
    instance = f"bench{os.getpid()}"
    config = EngineConfig(
        database=DatabaseConfig(enabled=False),  # benchmarks measure the engine, not Postgres
        instance=instance,
        stats_interval=job.get("stats_interval", 1.0),  # the engine's default: its cost counts
        exchanges={
            v["exchange"]: ExchangeConfig(
                ws_url=v["ws_url"],
                rest_url=v["rest_url"],
                budget=1000,
                budget_per_second=100.0,
                ring_capacity=job.get("ring_capacity"),
            )
            for v in venues
        },
    )
    channel = {"trade": "trades", "aggTrade": "aggTrade", "bbo": "ticker", "book": "orderbook"}
    ctx = mp.get_context("spawn")
    loop = asyncio.get_running_loop()
    async with WebSocketManager(config) as manager:
        names = [v["exchange"] for v in venues]
        conns: list[str] = []
        for name in names:
            for i, group in enumerate(split(job["symbols"], job.get("connections", 1))):
                conn = f"{name}-c{i}"
                await manager.connect_to_exchange(name, conn)
                await manager.subscribe(name, conn, channel=channel[job["kind"]], symbols=group)
                conns.append(conn)
        for conn in conns:
            await manager.wait_for(conn, timeout=30)
        exchanges = [manager.coordinator.exchanges[n] for n in names]
        out = ctx.Queue()
        plan = [(n, i == 0) for i in range(job.get("readers", 1)) for n in names[:1]]
        plan += [(n, True) for n in names[1:]]
        readies = [ctx.Event() for _ in plan]
        procs = [
            ctx.Process(
                target=readers.count_records,
                args=(instance, name, job["kind"], job["expect"], job["idle"], primary),
                kwargs={"ready": ev, "out": out},
                daemon=True,
            )
            for (name, primary), ev in zip(plan, readies)
        ]
        for p in procs:
            p.start()
        for ev in readies:
            await loop.run_in_executor(None, ev.wait, 30)
        await asyncio.sleep(0.5)  # book snapshots in, a stats tick after the setup
        before = [await _fresh_stats(ex) for ex in exchanges]
        emit("ready", worker_pids=[ex.process.pid for ex in exchanges])
        results = [await loop.run_in_executor(None, out.get) for _ in procs]
        if not procs:  # no reader: the worker's own counters tell when it is done
            results.append(await _worker_count(exchanges[0], before[0], job["expect"], job["idle"]))
        await asyncio.sleep(0.3)
        after = [await _fresh_stats(ex) for ex in exchanges]
        for p in procs:
            p.join(10)
    per = []
    for name, b, a in zip(names, before, after):
        mine = [r for r in results if r.get("exchange", names[0]) == name and r["primary"]]
        r = mine[0] if mine else results[0]
        span = (r["last_ns"] - r["first_ns"]) / 1e9
        per.append(
            {
                "exchange": name,
                "messages": r["messages"],
                "levels": r["levels"],
                "msgs_in": _msgs_in(a) - _msgs_in(b),
                "cpu_s": (a.cpu_ns - b.cpu_ns) / 1e9,
                "seconds": span,
                "first_ns": r["first_ns"],
                "last_ns": r["last_ns"],
                "latency_us": r["latency_us"],
                "gaps": sum(c.gaps for c in a.conns) - sum(c.gaps for c in b.conns),
                "parse_errors": sum(sum(c.parse_errors.values()) for c in a.conns),
                "worker_tasks": a.tasks,
            }
        )
    first = per[0]
    span = (max(p["last_ns"] for p in per) - min(p["first_ns"] for p in per)) / 1e9
    total = sum(p["messages"] for p in per)
    return {
        "messages": total,
        "levels": sum(p["levels"] for p in per),
        "msgs_in": sum(p["msgs_in"] for p in per),
        "cpu_s": sum(p["cpu_s"] for p in per),
        "seconds": span,
        "rate": (total - len(per)) / span if span > 0 else 0.0,
        "latency_us": first["latency_us"],
        "lost": sum(r["lost"] for r in results),
        "reader_cpu_s": [r["cpu_s"] for r in results],
        "reader_messages": [r["messages"] for r in results],
        "gaps": sum(p["gaps"] for p in per),
        "parse_errors": sum(p["parse_errors"] for p in per),
        "worker_tasks": first["worker_tasks"],
        "per_exchange": per,
    }


async def _fresh_stats(ex: Any) -> Any:
    """The next stats report of the worker (CPU time and counters from the same instant)."""
    old = ex.stats
    while ex.stats is old or ex.stats is None:
        await asyncio.sleep(0.02)
    return ex.stats


def _msgs_in(stats: Any) -> int:
    return sum(c.msgs_in for c in stats.conns)


async def _worker_count(ex: Any, before: Any, expect: int, idle: float) -> dict[str, Any]:
    """Without readers: wait on the worker's stats until it handled `expect` messages."""
    base, seen, since = _msgs_in(before), -1, time.monotonic()
    first = last = 0
    while True:
        st = await _fresh_stats(ex)
        n = _msgs_in(st) - base
        if n and not first:
            first = st.at_ns
        if n != seen:
            seen, since, last = n, time.monotonic(), st.at_ns
        if n >= expect or (n and time.monotonic() - since > idle):
            break
    return {
        "primary": True,
        "messages": n,
        "levels": 0,
        "first_ns": first,
        "last_ns": last,
        "lost": 0,
        "latency_us": None,
        "cpu_s": 0.0,
    }


RUNNERS = {
    "raw": run_raw,
    "ceiling": run_ceiling,
    "websockets": run_websockets,
    "cryptofeed": run_cryptofeed,
    "ccxt": run_ccxt,
    "wsm": run_wsm,
}


def main() -> None:
    import logging

    import uvloop

    logging.basicConfig(level=logging.CRITICAL)
    job = json.loads(sys.argv[1])
    if job["variant"] not in RUNNERS:
        emit("error", error=f"unknown variant {job['variant']!r} (known: {', '.join(RUNNERS)})")
        raise SystemExit(2)
    try:
        result = uvloop.run(RUNNERS[job["variant"]](job))
    except Exception as exc:  # reported, never silently skipped
        hint = " (the peers: pip install -e '.[peers]')" if isinstance(exc, ImportError) else ""
        emit("error", error=f"{type(exc).__name__}: {exc}{hint}")
        raise SystemExit(1) from None
    emit("result", **result)


if __name__ == "__main__":
    main()
