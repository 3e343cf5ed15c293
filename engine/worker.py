"""The worker: one process per exchange. It owns the exchange's connections, the streams they
carry, the books, and the ring it writes into; the coordinator drives it with commands and
hears back state changes and 1 s stats.

`Worker` runs in any asyncio loop (tests drive it in-process); `worker_main` is the process
entry point that connects it to the coordinator's pipe.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from collections.abc import Callable
from typing import Annotated, Any

import aiohttp
import msgspec
from msgspec import Meta

from engine.backoff import ReconnectPolicy, SlidingWindow, TokenBucket
from engine.connection import Connection, Shard
from engine.errors import WSMError
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
    StreamStats,
    StreamStatus,
    decode_command,
)
from engine.records import ConnState, Flag, GapReason, Kind
from engine.ring import RingWriter
from engine.streams import RouteTable, Stream, make_stream
from engine.venue import Heartbeat, Limits, Venue


class WorkerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    exchange: str
    instance: str
    ws_url: str
    rest_url: str
    heartbeat: Heartbeat
    limits: Limits
    max_connections: Annotated[int, Meta(gt=0)] = 16
    max_message_bytes: Annotated[int, Meta(gt=0)] = 1 << 20
    max_frame_bytes: Annotated[int, Meta(gt=0)] = 64 << 20
    connect_timeout: Annotated[float, Meta(gt=0)] = 10.0
    http_timeout: Annotated[float, Meta(gt=0)] = 10.0
    stats_interval: Annotated[float, Meta(gt=0)] = 1.0
    rollover_overlap: Annotated[float, Meta(ge=0)] = 1.0
    # ask the venue for its list of our subscriptions this often (where it can tell)
    audit_interval: Annotated[float, Meta(gt=0)] = 300.0


class Worker:
    def __init__(
        self,
        venue: Venue,
        config: WorkerConfig,
        emit: Callable[[Event], None],
        writer: RingWriter | None = None,
    ) -> None:
        self.venue = venue
        self.config = config
        self.heartbeat = config.heartbeat
        self.limits = config.limits
        self.emit = emit
        self.writer = writer or RingWriter(instance=config.instance, exchange=config.exchange)
        self.routes = RouteTable()
        self.carriers: dict[str, Shard] = {}
        self.owners: dict[str, dict[str, int]] = {}  # stream -> conn -> kinds
        self.conns: dict[str, Connection] = {}
        self.budget = TokenBucket(self.limits.budget, self.limits.budget_per_second)
        # one window for every connection when the venue counts client messages per IP
        self.request_window = (
            SlidingWindow(int(self.limits.requests_per_second))
            if self.limits.requests_shared
            else None
        )
        self._request_id = 0
        self._fetching: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._stopped = asyncio.Event()
        self.snapshot_failures = 0

    # -- commands -------------------------------------------------------------------------

    async def handle(self, cmd: Command) -> None:
        if isinstance(cmd, Open):
            self.open(cmd.conn, cmd.number, cmd.url, cmd.policy)
        elif isinstance(cmd, SetStreams):
            self.set_streams(cmd.conn, cmd.streams)
        elif isinstance(cmd, Close):
            await self.close(cmd.conn)
        elif isinstance(cmd, Reconnect):
            conn = self.conns.get(cmd.conn)
            if conn is not None:
                conn.kick()
        elif isinstance(cmd, Rollover):
            conn = self.conns.get(cmd.conn)
            if conn is not None:
                for shard in list(conn.shards):
                    conn.rollover(shard)
        elif isinstance(cmd, Stop):
            self._stopped.set()

    def open(self, conn_id: str, number: int, url: str | None, policy: ReconnectPolicy) -> None:
        if conn_id in self.conns:
            return
        conn = Connection(self, conn_id, number, url, policy)
        self.conns[conn_id] = conn
        conn.start()

    async def close(self, conn_id: str) -> None:
        if conn_id not in self.conns:
            return
        # before it goes: streams that other connections still want move to one of them
        self.set_streams(conn_id, [])
        conn = self.conns.pop(conn_id)
        await conn.close()

    def set_streams(self, conn_id: str, specs: list[StreamSpec], *, moving: bool = True) -> None:
        conn = self.conns.get(conn_id)
        if conn is None:
            return
        wanted = {s.name: s for s in specs}
        for name in [
            n for n, owners in self.owners.items() if conn_id in owners and n not in wanted
        ]:
            self._drop_owner(name, conn_id, moving)
        for spec in specs:
            self._add_owner(conn, spec)
        self._routes_changed()

    def _add_owner(self, conn: Connection, spec: StreamSpec) -> None:
        owners = self.owners.setdefault(spec.name, {})
        owners[conn.id] = spec.kinds
        stream = self.routes.get(spec.name)
        if stream is None:
            channel = self.venue.spec.channel(spec.channel)
            if channel is None:
                self._status(conn.id, spec.name, "rejected", f"unknown channel {spec.channel}")
                return
            stream = make_stream(
                self.venue,
                channel,
                spec.venue_symbol,
                spec.symbol,
                self.writer,
                self.request_snapshot,
            )
            self.routes.add(stream)
        stream.kinds = 0
        for kinds in owners.values():
            stream.kinds |= kinds
        if spec.name in self.carriers:
            carrier = self.carriers[spec.name]
            active = spec.name in carrier.active
            self._status(
                conn.id,
                spec.name,
                "active" if active else "pending",
                # never the other connection's id: it may be another user's
                "" if carrier.conn is conn else "shared with another connection",
            )
            return
        shard = conn.shard_with_room(stream.channel.native)
        if shard is None:
            self._status(
                conn.id,
                spec.name,
                "rejected",
                f"connection limit reached ({self.config.max_connections})",
            )
            return
        self.carriers[spec.name] = shard
        shard.add_streams([spec.name])
        self._status(conn.id, spec.name, "pending", "")

    def _drop_owner(self, name: str, conn_id: str, moving: bool) -> None:
        owners = self.owners.get(name, {})
        owners.pop(conn_id, None)
        self._status(conn_id, name, "removed", "")
        carrier = self.carriers.get(name)
        if owners and moving and carrier is not None and carrier.conn.id == conn_id:
            # The carrier's connection no longer wants it but others do: move it.
            self._move(name, next(iter(owners)))
            return
        if owners:
            return
        self.owners.pop(name, None)
        if carrier is not None:
            carrier.remove_streams([name])
            self.carriers.pop(name, None)
        self.routes.remove(name)

    def _move(self, name: str, to_conn: str) -> None:
        old = self.carriers.pop(name)
        old.remove_streams([name])
        conn = self.conns.get(to_conn)
        stream = self.routes.get(name)
        if stream is not None and stream.book is not None:
            stream.book.invalidate(GapReason.RECONNECT, time.time_ns(), request=False)
            self.writer.commit()
        channel = stream.channel.native if stream is not None else None
        shard = conn.shard_with_room(channel) if conn is not None else None
        if shard is None:
            for c in self.owners.get(name, {}):
                self._status(c, name, "rejected", "no connection with room to carry it")
            return
        self.carriers[name] = shard
        shard.add_streams([name])

    def _routes_changed(self) -> None:
        for conn in self.conns.values():
            for shard in conn.shards + ([conn.waiting_successor] if conn.waiting_successor else []):
                shard.session.routes_changed()

    def total_shards(self) -> int:
        return sum(len(c.shards) for c in self.conns.values())

    def next_request_id(self, n: int = 1) -> int:
        first = self._request_id + 1
        self._request_id += n
        return first

    # -- from shards ------------------------------------------------------------------------

    def on_state(self, shard: Shard, previous: ConnState, reason: str, attempt: int) -> None:
        now = time.time_ns()
        ref = (shard.conn.number << 16) | shard.index
        self.writer.append(
            Kind.STATUS,
            0,
            Flag.EXCHANGE_WIDE | Flag.LAST,
            0,
            now,
            now,
            0.0,
            0.0,
            ref,
            shard.state,
            previous,
        )
        self.writer.commit()
        self.emit(
            StateChanged(shard.conn.id, shard.index, shard.state, previous, reason, now, attempt)
        )

    def on_streams_active(self, shard: Shard, names: list[str]) -> None:
        for name in names:
            stream = self.routes.get(name)
            if stream is None:
                continue
            if self.carriers.get(name) is not shard:
                continue  # a successor subscribing during a rollover: the old shard carries it
            if stream.book is not None and stream.book.awaiting:
                stream.last_id = 0
                stream.book.start()
            for conn_id in self.owners.get(name, {}):
                self._status(conn_id, name, "active", "")

    def on_streams_rejected(
        self, shard: Shard, names: list[str], code: int | str | None, message: str
    ) -> None:
        for name in names:
            for conn_id in self.owners.get(name, {}):
                self._status(
                    conn_id, name, "rejected", message, None if code is None else str(code)
                )

    def on_shard_down(self, shard: Shard) -> None:
        """A socket dropped: its books are invalid until it is back and resynchronised."""
        conn = shard.conn
        successor = conn.waiting_successor
        if successor is not None and shard.successor is successor:
            shard.retiring = True  # the successor takes over now, whatever state it is in
            conn.promote(successor)
        now = time.time_ns()
        for name in shard.wanted:
            carrier = self.carriers.get(name)
            if carrier is not shard and carrier is not None and name in carrier.active:
                continue
            stream = self.routes.get(name)
            if stream is not None and stream.book is not None:
                stream.book.invalidate(GapReason.RECONNECT, now, request=False)
            for conn_id in self.owners.get(name, {}):
                self._status(conn_id, name, "pending", "reconnecting")
        self.writer.commit()

    def on_rollover(self, old: Shard, successor: Shard) -> None:
        for name in successor.wanted:
            if self.carriers.get(name) is old:
                self.carriers[name] = successor
        self._routes_changed()
        if not old.retiring:
            asyncio.get_running_loop().call_later(self.config.rollover_overlap, old.retire)

    def report_failure(self, conn: Connection, code: str | None, message: str) -> None:
        self.emit(Failure(conn.id, code, message, time.time_ns()))

    def _status(
        self, conn_id: str, stream: str, status: str, reason: str, code: str | None = None
    ) -> None:
        self.emit(StreamStatus(conn_id, stream, status, reason, code))

    # -- REST snapshots -----------------------------------------------------------------------

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.http_timeout)
            )
        return self._http

    def resync(self, shard: Shard, names: list[str], reason: int) -> None:
        """Data was lost on `shard` for `names`: GAP records, then a fresh start for each."""
        now = time.time_ns()
        for name in names:
            stream = self.routes.get(name)
            if stream is not None and stream.book is not None:
                stream.book.invalidate(GapReason(reason), now, request=False)
        self.writer.commit()
        rules = self.venue.book_rules
        if rules is not None and rules.snapshot_from_rest:
            for name in names:
                stream = self.routes.get(name)
                if stream is not None and stream.book is not None and name in shard.active:
                    stream.book.start()
        else:
            shard.resubscribe(names)

    def request_snapshot(self, stream: Stream) -> None:
        if stream.book is None:
            return
        rules = self.venue.book_rules
        # WebSocket-snapshot venues resubscribe, unless the book asked for its REST fallback
        if rules is not None and not rules.snapshot_from_rest and not stream.book.rest_fallback:
            carrier = self.carriers.get(stream.name)
            if carrier is not None:
                carrier.resubscribe([stream.name])  # the venue sends a snapshot with it
            return
        if stream.name in self._fetching:
            return
        self._fetching.add(stream.name)
        self._spawn(self._fetch_snapshot(stream, stream.book.epoch))

    async def _fetch_snapshot(self, stream: Stream, epoch: int) -> None:
        url = self.venue.snapshot_url(self.config.rest_url, stream.venue_symbol)
        delay = 0.5
        try:
            while url is not None and stream.book is not None and stream.book.epoch == epoch:
                await self.budget.take()
                try:
                    body = await self._get(url)
                    snap = self.venue.parse_snapshot(body)
                except (
                    TimeoutError,
                    aiohttp.ClientError,
                    msgspec.DecodeError,
                    msgspec.ValidationError,
                    WSMError,
                ) as exc:
                    self.snapshot_failures += 1
                    carrier = self.carriers.get(stream.name)
                    if carrier is not None:
                        carrier.last_error = f"snapshot {stream.venue_symbol}: {exc}"
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                if stream.book.epoch == epoch and stream.book.awaiting:
                    stream.book.on_snapshot(snap, time.time_ns(), from_rest=True)
                    self.writer.commit()
                    if stream.book.awaiting and stream.book.epoch != epoch:
                        epoch = stream.book.epoch
                        continue  # the snapshot was too old for the buffered deltas
                return
        finally:
            self._fetching.discard(stream.name)

    async def _get(self, url: str) -> bytes:
        async with self.http.get(url) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise WSMError(f"HTTP {resp.status}: {body[:200]!r}")
            return body

    # -- stats --------------------------------------------------------------------------------

    def stats(self) -> Stats:
        conns = [self._conn_stats(c) for c in self.conns.values()]
        streams = [StreamStats(s.name, s.count, s.last_ns) for s in self.routes]
        return Stats(
            time.time_ns(),
            conns,
            streams,
            self.budget.spent,
            cpu_ns=time.process_time_ns(),
            tasks=len(asyncio.all_tasks()),
        )

    def _conn_stats(self, conn: Connection) -> ConnStats:
        st = ConnStats(
            conn.id,
            conn.state,
            len(conn.shards),
            sum(len(s.wanted) for s in conn.shards),
            rollovers=conn.rollovers,
        )
        latency: list[int] = []
        t = conn.retired_totals
        st.msgs_in, st.bytes_in = t.get("msgs", 0), t.get("bytes", 0)
        st.msgs_out, st.bytes_out = t.get("msgs_out", 0), t.get("bytes_out", 0)
        st.reconnects, st.audit_repairs = t.get("reconnects", 0), t.get("audit_repairs", 0)
        st.parse_errors.update(conn.retired_errors)
        for shard in conn.shards + conn.retired:
            msgs, size = shard.counts()
            st.msgs_in += msgs
            st.bytes_in += size
            st.msgs_out += shard.msgs_out
            st.bytes_out += shard.bytes_out
            st.reconnects += shard.reconnects
            st.audit_repairs += shard.audit_repairs
            for ch, n in shard.parse_errors.items():
                st.parse_errors[ch] = st.parse_errors.get(ch, 0) + n
            if shard.listener is not None:
                st.last_msg_ns = max(st.last_msg_ns, shard.listener.last_ns)
                latency.extend(shard.listener.latency)
                shard.listener.latency = []
            if shard.last_error:
                st.last_error = shard.last_error
        for name, carrier in self.carriers.items():
            stream = self.routes.get(name)
            if carrier.conn is conn and stream is not None and stream.book is not None:
                st.gaps += stream.book.counters.gaps
                st.resyncs += stream.book.counters.resyncs
        if latency:
            latency.sort()
            st.latency_p50_us = latency[len(latency) // 2] / 1000
            st.latency_p99_us = latency[min(len(latency) - 1, len(latency) * 99 // 100)] / 1000
            st.latency_buckets = _histogram(latency)
            st.latency_sum_us = sum(latency) / 1000
        return st

    # -- running --------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run_stats(self) -> None:
        while True:
            await asyncio.sleep(self.config.stats_interval)
            self.writer.heartbeat()
            self.emit(self.stats())

    async def shutdown(self) -> None:
        for conn_id in list(self.conns):
            conn = self.conns.pop(conn_id)
            await conn.close()
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.close()
        self.writer.commit()

    async def serve(self, conn: Any) -> None:
        """Run against the coordinator's pipe until told to stop or the pipe closes."""
        pipe = await MessagePipe.adopt(conn)
        self.emit = pipe.send
        self.emit(Ready(os.getpid(), self.writer.generation))
        stats = self._spawn(self.run_stats())
        try:
            while True:
                cmd = await pipe.recv(decode_command)
                if cmd is None or isinstance(cmd, Stop):
                    break
                await self.handle(cmd)
                await pipe.drain()
        finally:
            stats.cancel()
            await self.shutdown()
            self.writer.close()
            await pipe.drain()
            pipe.close()


def _histogram(sorted_ns: list[int]) -> list[int]:
    """Counts of sorted latency samples (ns) per LATENCY_BUCKETS_US bucket, overflow last."""
    counts, start = [], 0
    for bound in LATENCY_BUCKETS_US:
        end = bisect.bisect_right(sorted_ns, bound * 1000, lo=start)
        counts.append(end - start)
        start = end
    counts.append(len(sorted_ns) - start)
    return counts


def worker_main(venue_name: str, config_bytes: bytes, pipe: Any) -> None:
    """Process entry point: uvloop, the adapter from the registry, the worker."""
    import uvloop

    from engine.registry import load_venue

    config = msgspec.msgpack.decode(config_bytes, type=WorkerConfig)
    venue = load_venue(venue_name)
    worker = Worker(venue, config, emit=lambda ev: None)
    uvloop.run(worker.serve(pipe))
