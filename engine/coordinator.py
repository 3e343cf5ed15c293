"""The coordinator: supervises one worker process per exchange, keeps the registry of
connections and subscriptions, validates what users ask for, and aggregates state and stats.

It runs inside the caller's asyncio loop (`WebSocketManager`, `wsm run`). Workers are
restarted when they die, and the current connections and streams are replayed to them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from uuid import UUID

import aiohttp
import msgspec
import multiprocess as mp

from engine import shm
from engine.backoff import ReconnectPolicy
from engine.config import EngineConfig, ExchangeConfig
from engine.errors import (
    AlreadyExists,
    ConfigError,
    NotFound,
    RetryableError,
    UnknownChannel,
    UnknownSymbol,
    WSMError,
)
from engine.persist import Persistence
from engine.protocol import (
    LATENCY_BUCKETS_US,
    Close,
    Command,
    ConnStats,
    Event,
    Failure,
    MessagePipe,
    Open,
    Ready,
    Reconnect,
    Rollover,
    SetStreams,
    StateChanged,
    Stats,
    Stop,
    StreamSpec,
    StreamStatus,
    decode_event,
)
from engine.records import ConnState, Kind, worst_state
from engine.registry import load_venue
from engine.ring import Ring
from engine.streams import kind_bit
from engine.symbols import SymbolRegistry
from engine.venue import Channel, Instrument, Venue
from engine.worker import WorkerConfig, worker_main

KINDS = {
    "trade": kind_bit(Kind.TRADE),
    "bbo": kind_bit(Kind.BBO),
    "book": kind_bit(Kind.BOOK_LEVEL)
    | kind_bit(Kind.SNAPSHOT_BEGIN)
    | kind_bit(Kind.SNAPSHOT_END)
    | kind_bit(Kind.GAP),
}
ALL = sum(KINDS.values())


def channel_bits(kind: Kind) -> int:
    """The kind bits a channel producing `kind` records can satisfy."""
    return KINDS["book"] if kind == Kind.BOOK_LEVEL else kind_bit(kind)


HISTORY = 600  # per-connection samples kept for charts (one per stats interval)


class ConnectionInfo(msgspec.Struct, kw_only=True):
    id: str
    name: str
    exchange: str
    url: str | None
    state: str
    number: int
    shards: int
    streams: int
    created_at: float
    live_since: float | None
    last_error: str
    reconnect: ReconnectPolicy
    owner: str | None = None
    row_id: str | None = None  # its row in Postgres, when persisted


class SubscriptionInfo(msgspec.Struct, kw_only=True):
    id: str
    connection_id: str
    exchange: str
    channel: str
    symbols: list[str]
    kinds: list[str] | None
    status: str
    reason: str
    streams: dict[str, str]
    created_at: float
    row_id: str | None = None  # its row in Postgres, when persisted


class StreamMetrics(msgspec.Struct):
    stream: str
    messages: int
    last_message_age_s: float | None


class ConnectionMetrics(msgspec.Struct, kw_only=True):
    connection_id: str
    exchange: str
    state: str
    uptime_s: float | None
    messages_in: int
    bytes_in: int
    messages_out: int
    bytes_out: int
    messages_per_s: float
    bytes_per_s: float
    parse_errors: dict[str, int]
    gaps: int
    resyncs: int
    reconnects: int
    rollovers: int
    audit_repairs: int
    last_message_age_s: float | None
    latency_p50_us: float | None
    latency_p99_us: float | None
    last_error: str
    streams: list[StreamMetrics]


class LatencyHistogram(msgspec.Struct, kw_only=True):
    """Exchange-to-receive latency of a connection's sampled messages since it was created:
    `counts[i]` samples at or below `bounds_us[i]` and above the previous bound (the last
    count is above every bound), their sum and their number."""

    bounds_us: list[float]
    counts: list[int]
    sum_us: float
    count: int


class ExchangeStats(msgspec.Struct, kw_only=True):
    exchange: str
    worker_pid: int | None
    worker_restarts: int
    generation: int
    ring_capacity: int
    ring_records: int  # records written into the ring (its tail)
    unrouted: int  # frames of streams nobody wants


class _Sample(msgspec.Struct):
    at: float
    messages_per_s: float
    bytes_per_s: float
    latency_p50_us: float | None
    latency_p99_us: float | None


class _Conn:
    def __init__(
        self,
        exchange: str,
        conn_id: str,
        name: str,
        number: int,
        url: str | None,
        policy: ReconnectPolicy,
        owner: str | None,
    ) -> None:
        self.exchange = exchange
        self.id = conn_id
        self.name = name
        self.number = number
        self.url = url
        self.policy = policy
        self.owner = owner
        self.paused = False  # disconnected on request: kept, not connected
        self.state = ConnState.CONNECTING
        self.shard_states: dict[int, ConnState] = {}
        self.created_at = time.time()
        self.live_since: float | None = None
        self.last_error = ""
        self.stats: ConnStats | None = None
        self.prev: tuple[float, int, int] | None = None
        self.rates = (0.0, 0.0)
        self.history: deque[_Sample] = deque(maxlen=HISTORY)
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_US) + 1)
        self.latency_sum_us = 0.0


class _Sub:
    def __init__(
        self,
        sub_id: str,
        conn: _Conn,
        channel: str,
        symbols: list[Instrument],
        kinds: list[str] | None,
        streams: list[str],
    ) -> None:
        self.id = sub_id
        self.conn = conn
        self.channel = channel
        self.instruments = symbols
        self.kinds = kinds
        self.streams = {s: "pending" for s in streams}
        self.reasons: dict[str, str] = {}
        self.created_at = time.time()


def worker_cpus(name: str, cfg: ExchangeConfig) -> set[int] | None:
    """An exchange's configured worker CPUs, checked against those this machine offers."""
    if cfg.cpus is None:
        return None
    # CPU ids of the machine, not this process's own mask: the coordinator may well be
    # pinned away from the CPUs its workers are given
    cpus, usable = set(cfg.cpus), set(range(os.cpu_count() or 1))
    if not cpus or not cpus <= usable:
        missing = sorted(cpus - usable)
        why = f"CPUs {missing} are not available" if missing else "an empty list pins to nothing"
        raise ConfigError(f"exchanges.{name}.cpus", f"{why} (this machine offers {sorted(usable)})")
    return cpus


class Exchange:
    """One exchange's runtime: its venue, ring, worker process and instruments."""

    def __init__(self, coord: Coordinator, name: str, venue: Venue, cfg: ExchangeConfig) -> None:
        self.coord = coord
        self.name = name
        self.venue = venue
        self.cfg = cfg
        self.instruments: dict[str, Instrument] = {}
        self._by_spelling: dict[str, Instrument] = {}
        self.ring: Ring | None = None
        self.process: Any = None
        self.pipe: MessagePipe | None = None
        self._conn: Any = None
        self.ready = asyncio.Event()
        self.stats: Stats | None = None
        self.restarts = 0
        self.generation = 0
        self.stopping = False
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def ws_url(self) -> str:
        return self.cfg.ws_url or self.venue.spec.ws_url

    @property
    def rest_url(self) -> str:
        return self.cfg.rest_url or self.venue.spec.rest_url

    def worker_config(self) -> WorkerConfig:
        spec, cfg = self.venue.spec, self.cfg
        heartbeat = msgspec.structs.replace(
            spec.heartbeat,
            idle=cfg.heartbeat_idle or spec.heartbeat.idle,
            timeout=cfg.heartbeat_timeout or spec.heartbeat.timeout,
        )
        overrides = {
            k: v
            for k, v in (
                ("max_lifetime", cfg.max_lifetime),
                ("rollover_margin", cfg.rollover_margin),
                ("streams_per_connection", cfg.streams_per_connection),
                ("budget", cfg.budget),
                ("budget_per_second", cfg.budget_per_second),
            )
            if v is not None
        }
        limits = msgspec.structs.replace(spec.limits, **overrides)
        extra: dict[str, Any] = {}
        max_message = cfg.max_message_bytes or spec.limits.max_message_bytes
        if max_message is not None:
            extra["max_message_bytes"] = max_message
        if cfg.audit_interval is not None:
            extra["audit_interval"] = cfg.audit_interval
        return WorkerConfig(
            exchange=self.name,
            instance=self.coord.config.instance,
            ws_url=self.ws_url,
            rest_url=self.rest_url,
            heartbeat=heartbeat,
            limits=limits,
            max_connections=cfg.max_connections,
            stats_interval=self.coord.config.stats_interval,
            rollover_overlap=self.coord.config.rollover_overlap,
            **extra,
        )

    async def start(self) -> None:
        capacity = self.cfg.ring_capacity or self.coord.config.ring_capacity
        self.ring = Ring.create(
            instance=self.coord.config.instance,
            exchange=self.name,
            exchange_id=self.venue.spec.exchange_id,
            capacity=capacity,
        )
        self.coord.registry.register_exchange(self.venue.spec.exchange_id, self.name)
        self._spawn_worker()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        await asyncio.wait_for(self.ready.wait(), 60)

    def _spawn_worker(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        config = msgspec.msgpack.encode(self.worker_config())
        self.process = ctx.Process(
            target=worker_main,
            args=(self.name, config, child),
            daemon=True,
            name=f"wsm-worker-{self.name}",
        )
        self.process.start()
        cpus = worker_cpus(self.name, self.cfg)
        if cpus is not None and self.process.pid is not None:
            try:
                os.sched_setaffinity(self.process.pid, cpus)
            except OSError as exc:  # offline, or outside this container's CPU set
                print(
                    f"wsm: exchanges.{self.name}.cpus {sorted(cpus)} refused ({exc.strerror});"
                    " the worker runs unpinned",
                    file=sys.stderr,
                )
        child.close()
        self._conn = parent
        self.ready.clear()

    async def _supervise(self) -> None:
        """Read the worker's events; restart it when it dies."""
        while not self.stopping:
            self.pipe = await MessagePipe.adopt(self._conn)
            while (event := await self.pipe.recv(decode_event)) is not None:
                self._on_event(event)
            self.pipe.close()
            self.pipe = None
            if self.stopping:
                return
            await self._restart()

    async def _restart(self) -> None:
        self.restarts += 1
        self.ready.clear()
        await asyncio.get_running_loop().run_in_executor(None, self.process.join, 5.0)
        for conn in self.coord.conns_of(self.name):
            conn.state = ConnState.CONNECTING
            conn.last_error = f"worker process died (exit code {self.process.exitcode}); restarting"
        await asyncio.sleep(self.coord.config.worker_restart_delay)
        self._spawn_worker()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Ready):
            self.generation = event.generation
            self.ready.set()
            if self.restarts:
                self.coord.replay(self)
        else:
            if isinstance(event, Stats):
                self.stats = event
            self.coord.on_event(self, event)

    def send(self, cmd: Command) -> None:
        if self.pipe is not None and self.ready.is_set():
            self.pipe.send(cmd)

    async def stop(self) -> None:
        self.stopping = True
        if self.pipe is not None:
            self.pipe.send(Stop())
            await self.pipe.drain()
        if self.process is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.process.join, 15.0)
            if self.process.is_alive():
                print(
                    f"wsm: the {self.name} worker did not stop within 15 s; killed", file=sys.stderr
                )
                self.process.kill()
                self.process.join(5.0)
        if self._supervisor is not None:
            # the worker's last events (its connections stopping) are still in the pipe
            try:
                await asyncio.wait_for(self._supervisor, 15.0)
            except TimeoutError:
                print(
                    f"wsm: the {self.name} worker's last events were not read in time",
                    file=sys.stderr,
                )
        if self.pipe is not None:
            self.pipe.close()
        if self.ring is not None:
            self.ring.close()

    async def load_instruments(self, session: aiohttp.ClientSession) -> None:
        url = self.venue.instruments_url(self.rest_url)
        try:
            async with session.get(url) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RetryableError(f"{self.name} instruments: HTTP {resp.status} from {url}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise RetryableError(f"{self.name} instruments from {url}: {exc}") from exc
        for inst in self.venue.parse_instruments(body):
            self.instruments[inst.venue_symbol] = inst
            self._by_spelling[inst.venue_symbol.upper()] = inst
            self._by_spelling.setdefault(inst.symbol, inst)

    def resolve(self, symbol: str) -> Instrument:
        for key in (symbol.strip().upper(), self.venue.normalize_symbol(symbol)):
            inst = self._by_spelling.get(key)
            if inst is not None:
                return inst
        raise UnknownSymbol(self.name, symbol)


class Coordinator:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.exchanges: dict[str, Exchange] = {}
        self.conns: dict[str, _Conn] = {}
        self.subs: dict[str, _Sub] = {}
        self.listeners: list[Callable[[str, Event], None]] = []
        self._registry: SymbolRegistry | None = None
        self._numbers = itertools.count(1)
        self._sub_ids = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self.persist: Persistence | None = None
        self.started = False

    async def start(self) -> None:
        for name, cfg in self.config.exchanges.items():  # before any segment or process
            worker_cpus(name, cfg)
        self._registry = SymbolRegistry.create(self.config.instance)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        if self.config.database.enabled:
            try:
                self.persist = await Persistence.open(self.config.database, owner=self.config.owner)
            except BaseException:
                await self._http.close()
                self._registry.close()
                self._registry = None
                raise
        self.started = True

    async def restore(self) -> int:
        """Bring back the connections and subscriptions stored before the last stop."""
        if self.persist is None:
            return 0
        restored = 0
        for desired in await self.persist.restore():
            c = desired.connection
            conn_id = c.name if c.owner == self.config.owner else str(c.id)
            if conn_id in self.conns:
                continue
            await self.connect(
                c.exchange,
                conn_id,
                url=c.url,
                policy=c.reconnect,
                owner=str(c.owner),
                name=c.name,
                row_id=c.id,
                paused=c.desired_state == "disconnected",
            )
            for s in desired.subscriptions:
                await self.subscribe(
                    conn_id,
                    s.channel,
                    list(s.symbols),
                    list(s.kinds) if s.kinds else None,
                    row_id=s.id,
                )
            restored += 1
        return restored

    async def stop(self) -> None:
        for ex in list(self.exchanges.values()):
            await ex.stop()
        self.exchanges.clear()
        if self._http is not None:
            await self._http.close()
        if self.persist is not None:
            await self.persist.close()
            self.persist = None
        if self._registry is not None:
            self._registry.close()
            self._registry = None
        shm.unlink(status_name(self.config.instance))
        self.started = False

    @property
    def registry(self) -> SymbolRegistry:
        if self._registry is None:
            raise WSMError("the coordinator is not started")
        return self._registry

    async def exchange(self, name: str) -> Exchange:
        async with self._lock:
            ex = self.exchanges.get(name)
            if ex is not None:
                return ex
            venue = load_venue(name)
            ex = Exchange(self, name, venue, self.config.exchanges.get(name, ExchangeConfig()))
            assert self._http is not None
            await ex.load_instruments(self._http)
            await ex.start()
            self.exchanges[name] = ex
            return ex

    # -- the control interface ------------------------------------------------------------------

    async def connect(
        self,
        exchange: str,
        conn_id: str,
        *,
        url: str | None = None,
        policy: ReconnectPolicy | None = None,
        owner: str | None = None,
        name: str | None = None,
        row_id: UUID | None = None,
        paused: bool = False,
    ) -> ConnectionInfo:
        """Open a connection (`paused`: define it without connecting). `row_id`: it was
        restored from that database row."""
        if conn_id in self.conns:
            raise AlreadyExists("connection", conn_id)
        if not conn_id or len(conn_id) > 128:
            raise ConfigError("connection_id", "must be 1 to 128 characters")
        ex = await self.exchange(exchange)
        policy = policy or ReconnectPolicy()
        name = name or conn_id
        if self.persist is not None:
            if row_id is None:
                row_id = await self.persist.connection_created(
                    conn_id,
                    exchange=exchange,
                    name=name,
                    url=url,
                    policy=policy,
                    owner=UUID(owner) if owner else None,
                )
            else:
                self.persist.adopt(conn_id, row_id, UUID(owner) if owner else None)
        conn = _Conn(exchange, conn_id, name, next(self._numbers), url, policy, owner)
        self.conns[conn_id] = conn
        if paused:
            conn.paused, conn.state = True, ConnState.STOPPED
        else:
            ex.send(Open(conn_id, conn.number, url, conn.policy))
        return self.connection_info(conn)

    async def pause(self, conn_id: str) -> ConnectionInfo:
        """Disconnect but keep the connection and its subscriptions (`resume` reconnects)."""
        conn = self._conn(conn_id)
        if not conn.paused:
            conn.paused = True
            self.exchanges[conn.exchange].send(Close(conn_id))
            conn.state, conn.live_since, conn.shard_states = ConnState.STOPPED, None, {}
            if self.persist is not None:
                await self.persist.set_desired(conn_id, "disconnected")
        return self.connection_info(conn)

    async def resume(self, conn_id: str) -> ConnectionInfo:
        conn = self._conn(conn_id)
        if conn.paused:
            conn.paused, conn.state = False, ConnState.CONNECTING
            ex = self.exchanges[conn.exchange]
            ex.send(Open(conn_id, conn.number, conn.url, conn.policy))
            ex.send(SetStreams(conn.id, self._specs(conn, ex)))
            if self.persist is not None:
                await self.persist.set_desired(conn_id, "connected")
        return self.connection_info(conn)

    def _conn(self, conn_id: str) -> _Conn:
        conn = self.conns.get(conn_id)
        if conn is None:
            raise NotFound("connection", conn_id)
        return conn

    async def disconnect(self, conn_id: str) -> None:
        conn = self._conn(conn_id)
        for sub in [s for s in self.subs.values() if s.conn is conn]:
            del self.subs[sub.id]
        del self.conns[conn_id]
        self.exchanges[conn.exchange].send(Close(conn_id))
        if self.persist is not None:
            await self.persist.connection_deleted(conn_id)

    async def reconnect(self, conn_id: str) -> None:
        conn = self._conn(conn_id)
        self.exchanges[conn.exchange].send(Reconnect(conn_id))

    async def rollover(self, conn_id: str) -> None:
        conn = self._conn(conn_id)
        self.exchanges[conn.exchange].send(Rollover(conn_id))

    def validate(
        self, exchange: str, channel: str, symbols: list[str], kinds: list[str] | None
    ) -> tuple[Channel, list[Instrument]]:
        """Check a subscription request (the exchange must be running); raises an error naming
        the bad channel, symbol or kind."""
        ex = self.exchanges.get(exchange)
        if ex is None:
            raise NotFound("running exchange", exchange)
        ch = ex.venue.spec.channel(channel)
        if ch is None:
            known = tuple(c.name for c in ex.venue.spec.channels)
            raise UnknownChannel(exchange, channel, known)
        if not symbols:
            raise ConfigError("symbols", "at least one symbol is required")
        for kind in kinds or ():
            if kind not in KINDS:
                raise ConfigError("kinds", f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
        mask = ALL if kinds is None else sum(KINDS[k] for k in kinds)
        if not mask & channel_bits(ch.kind):
            raise ConfigError(
                "kinds",
                f"channel {ch.name} carries {ch.kind.name.lower()} records, which "
                f"kinds {kinds} leave out: nothing would be subscribed",
            )
        return ch, [ex.resolve(s) for s in symbols]

    async def subscribe(
        self,
        conn_id: str,
        channel: str,
        symbols: list[str],
        kinds: list[str] | None = None,
        *,
        row_id: UUID | None = None,
    ) -> SubscriptionInfo:
        conn = self._conn(conn_id)
        ex = self.exchanges[conn.exchange]
        ch, instruments = self.validate(conn.exchange, channel, symbols, kinds)
        for inst in instruments:
            self.registry.add(
                exchange_id=ex.venue.spec.exchange_id,
                symbol=inst.symbol,
                venue_symbol=inst.venue_symbol,
                price_decimals=inst.price_decimals,
                size_decimals=inst.size_decimals,
                base=inst.base,
                quote=inst.quote,
                market=inst.market,
            )
        streams = [ex.venue.stream_name(ch, i.venue_symbol) for i in instruments]
        sub = _Sub(f"sub-{next(self._sub_ids)}", conn, ch.name, instruments, kinds, streams)
        if self.persist is not None:
            if row_id is None:
                await self.persist.subscription_created(
                    conn_id,
                    sub.id,
                    channel=ch.name,
                    symbols=[i.symbol for i in instruments],
                    kinds=kinds,
                )
            else:
                self.persist.adopt_subscription(sub.id, row_id)
        self.subs[sub.id] = sub
        self._push_streams(conn)
        return self.subscription_info(sub)

    async def unsubscribe(self, sub_id: str) -> SubscriptionInfo:
        sub = self.subs.pop(sub_id, None)
        if sub is None:
            raise NotFound("subscription", sub_id)
        self._push_streams(sub.conn)
        if self.persist is not None:
            await self.persist.subscription_removed(sub_id)
        info = self.subscription_info(sub)
        info.status = "removed"
        return info

    def _push_streams(self, conn: _Conn) -> None:
        if conn.paused:
            return  # sent on resume
        ex = self.exchanges[conn.exchange]
        ex.send(SetStreams(conn.id, self._specs(conn, ex)))

    def _specs(self, conn: _Conn, ex: Exchange) -> list[StreamSpec]:
        specs: dict[str, StreamSpec] = {}
        for sub in self.subs.values():
            if sub.conn is not conn:
                continue
            mask = ALL if sub.kinds is None else sum(KINDS[k] for k in sub.kinds)
            ch = ex.venue.spec.channel(sub.channel)
            assert ch is not None
            for inst in sub.instruments:
                name = ex.venue.stream_name(ch, inst.venue_symbol)
                info = self.registry.get(ex.venue.spec.exchange_id, inst.venue_symbol)
                assert info is not None
                old = specs.get(name)
                specs[name] = StreamSpec(
                    name, ch.name, inst.venue_symbol, info.id, mask | (old.kinds if old else 0)
                )
        return list(specs.values())

    def replay(self, ex: Exchange) -> None:
        """A restarted worker: tell it every connection and stream again."""
        for conn in self.conns_of(ex.name):
            if not conn.paused:
                ex.send(Open(conn.id, conn.number, conn.url, conn.policy))
                ex.send(SetStreams(conn.id, self._specs(conn, ex)))

    def conns_of(self, exchange: str) -> list[_Conn]:
        return [c for c in self.conns.values() if c.exchange == exchange]

    # -- events from workers ----------------------------------------------------------------------

    def on_event(self, ex: Exchange, event: Event) -> None:
        if isinstance(event, StateChanged):
            self._on_state(event)
        elif isinstance(event, StreamStatus):
            for sub in self.subs.values():
                if sub.conn.id == event.conn and event.stream in sub.streams:
                    sub.streams[event.stream] = event.status
                    sub.reasons[event.stream] = event.reason
                    if self.persist is not None:
                        info = self.subscription_info(sub)
                        self.persist.subscription_state(sub.id, info.status, info.reason)
        elif isinstance(event, Stats):
            self._on_stats(event)
        elif isinstance(event, Failure):
            conn = self.conns.get(event.conn)
            if conn is not None:
                conn.last_error = event.message
        if self.persist is not None:
            self.persist.on_event(event)
        for listener in self.listeners:
            listener(ex.name, event)

    def _on_state(self, event: StateChanged) -> None:
        conn = self.conns.get(event.conn)
        if conn is None or conn.paused:
            return
        if event.state == ConnState.STOPPED and event.reason == "rolled over":
            return
        conn.shard_states[event.shard] = ConnState(event.state)
        state = worst_state(conn.shard_states.values())
        if state == ConnState.LIVE and conn.state != ConnState.LIVE:
            conn.live_since = time.time()
        elif state != ConnState.LIVE:
            conn.live_since = None
        conn.state = state
        if event.state in (ConnState.BACKOFF, ConnState.STALE, ConnState.FAILED, ConnState.CLOSED):
            conn.last_error = event.reason

    def _on_stats(self, stats: Stats) -> None:
        now = time.time()
        for st in stats.conns:
            conn = self.conns.get(st.conn)
            if conn is None:
                continue
            if conn.prev is not None:
                dt = max(now - conn.prev[0], 1e-6)
                conn.rates = ((st.msgs_in - conn.prev[1]) / dt, (st.bytes_in - conn.prev[2]) / dt)
            conn.prev = (now, st.msgs_in, st.bytes_in)
            conn.stats = st
            if len(st.latency_buckets) == len(conn.latency_counts):
                for i, n in enumerate(st.latency_buckets):
                    conn.latency_counts[i] += n
                conn.latency_sum_us += st.latency_sum_us
            conn.history.append(
                _Sample(now, conn.rates[0], conn.rates[1], st.latency_p50_us, st.latency_p99_us)
            )
        self._write_status()

    # -- views ------------------------------------------------------------------------------------

    def connection_info(self, conn: _Conn) -> ConnectionInfo:
        st = conn.stats
        row = self.persist.db_ids.get(conn.id) if self.persist is not None else None
        return ConnectionInfo(
            id=conn.id,
            name=conn.name,
            row_id=None if row is None else str(row),
            exchange=conn.exchange,
            url=conn.url,
            state=conn.state.name.lower(),
            number=conn.number,
            shards=st.shards if st else 0,
            streams=st.streams if st else 0,
            created_at=conn.created_at,
            live_since=conn.live_since,
            last_error=conn.last_error,
            reconnect=conn.policy,
            owner=conn.owner,
        )

    def connections(self) -> list[ConnectionInfo]:
        return [self.connection_info(c) for c in self.conns.values()]

    def subscription_info(self, sub: _Sub) -> SubscriptionInfo:
        states = set(sub.streams.values())
        if "rejected" in states:
            status = "rejected"
        elif states == {"active"}:
            status = "active"
        else:
            status = "pending"
        reason = "; ".join(sorted({r for r in sub.reasons.values() if r}))
        return SubscriptionInfo(
            id=sub.id,
            connection_id=sub.conn.id,
            exchange=sub.conn.exchange,
            channel=sub.channel,
            symbols=[i.symbol for i in sub.instruments],
            kinds=sub.kinds,
            status=status,
            reason=reason,
            streams=dict(sub.streams),
            created_at=sub.created_at,
            row_id=self._sub_row(sub.id),
        )

    def _sub_row(self, sub_id: str) -> str | None:
        row = self.persist.sub_ids.get(sub_id) if self.persist is not None else None
        return None if row is None else str(row)

    def subscriptions(self, conn_id: str | None = None) -> list[SubscriptionInfo]:
        return [
            self.subscription_info(s)
            for s in self.subs.values()
            if conn_id is None or s.conn.id == conn_id
        ]

    def metrics(self, conn_id: str) -> ConnectionMetrics:
        conn = self._conn(conn_id)
        st = conn.stats or ConnStats(conn.id, conn.state, 0, 0)
        now_ns = time.time_ns()
        ex = self.exchanges.get(conn.exchange)
        names = {s for sub in self.subs.values() if sub.conn is conn for s in sub.streams}
        streams = [
            StreamMetrics(s.stream, s.messages, (now_ns - s.last_ns) / 1e9 if s.last_ns else None)
            for s in (ex.stats.streams if ex and ex.stats else [])
            if s.stream in names
        ]
        return ConnectionMetrics(
            connection_id=conn.id,
            exchange=conn.exchange,
            state=conn.state.name.lower(),
            uptime_s=time.time() - conn.live_since if conn.live_since else None,
            messages_in=st.msgs_in,
            bytes_in=st.bytes_in,
            messages_out=st.msgs_out,
            bytes_out=st.bytes_out,
            messages_per_s=conn.rates[0],
            bytes_per_s=conn.rates[1],
            parse_errors=dict(st.parse_errors),
            gaps=st.gaps,
            resyncs=st.resyncs,
            reconnects=st.reconnects,
            rollovers=st.rollovers,
            audit_repairs=st.audit_repairs,
            last_message_age_s=(now_ns - st.last_msg_ns) / 1e9 if st.last_msg_ns else None,
            latency_p50_us=st.latency_p50_us,
            latency_p99_us=st.latency_p99_us,
            last_error=conn.last_error or st.last_error,
            streams=streams,
        )

    def history(self, conn_id: str) -> list[_Sample]:
        return list(self._conn(conn_id).history)

    def latency(self, conn_id: str) -> LatencyHistogram:
        conn = self._conn(conn_id)
        return LatencyHistogram(
            bounds_us=list(LATENCY_BUCKETS_US),
            counts=list(conn.latency_counts),
            sum_us=conn.latency_sum_us,
            count=sum(conn.latency_counts),
        )

    def exchange_stats(self) -> list[ExchangeStats]:
        """Each running exchange's worker and ring."""
        return [
            ExchangeStats(
                exchange=name,
                worker_pid=ex.process.pid if ex.process is not None else None,
                worker_restarts=ex.restarts,
                generation=ex.generation,
                ring_capacity=ex.ring.capacity if ex.ring is not None else 0,
                ring_records=ex.ring.tail if ex.ring is not None else 0,
                unrouted=ex.stats.unrouted if ex.stats is not None else 0,
            )
            for name, ex in self.exchanges.items()
            if not ex.stopping  # its ring may be unmapped already
        ]

    def _write_status(self) -> None:
        """A status board in /dev/shm that `wsm status` reads without any server."""
        board = {
            "instance": self.config.instance,
            "at": time.time(),
            "connections": [
                {
                    **msgspec.to_builtins(self.connection_info(c)),
                    "metrics": msgspec.to_builtins(self.metrics(c.id)),
                }
                for c in self.conns.values()
            ],
            "exchanges": {
                n: {
                    "worker_pid": e.process.pid if e.process else None,
                    "restarts": e.restarts,
                    "generation": e.generation,
                }
                for n, e in self.exchanges.items()
            },
        }
        write_status(self.config.instance, msgspec.json.encode(board))


def status_name(instance: str) -> str:
    return f"{shm.PREFIX}{instance}.status.json"


def write_status(instance: str, data: bytes) -> None:
    import os

    path = os.path.join(shm.SHM_DIR, status_name(instance))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
