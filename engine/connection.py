"""Connections to a venue. A logical `Connection` (what users create and name) runs one or
more physical `Shard`s, each a WebSocket carrying up to the venue's streams-per-connection.

A shard's life: connecting -> subscribing -> live -> (stale | closed) -> backoff -> ... ->
failed. Liveness is judged by heartbeats (picows pings after the venue's idle period and drops
the socket when no pong comes back), never by one quiet stream. Before the venue's scheduled
cut, or when it announces a shutdown, a shard rolls over make-before-break: a successor
connects and subscribes, both run side by side (sessions drop what the other already
delivered), then the old one closes.

The listener is the hot path: frame -> session (decode, parse, append to the ring) -> commit
at the end of each read buffer. No logging, no awaits, one `time_ns()` per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
import picows
from picows import WSMsgType

from engine.backoff import Backoff, ReconnectPolicy, SlidingWindow
from engine.errors import WSMError
from engine.records import ConnState, worst_state
from engine.venue import Request

if TYPE_CHECKING:
    from engine.worker import Worker

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CLOSE = WSMsgType.CLOSE
_PONG = WSMsgType.PONG
COMMIT_EVERY = 64  # frames; also committed at the end of every read buffer
_time_ns = time.time_ns
LATENCY_SAMPLES = 2048  # per stats interval


class Attempt:
    """One connect attempt. `abandoned` once its caller gave up on it (stopped or timed out):
    a socket it still yields is closed on arrival and nothing it carries is parsed."""

    __slots__ = ("abandoned",)

    def __init__(self) -> None:
        self.abandoned = False


def _ignore(payload: memoryview | bytes, recv_ns: int) -> int:
    return 0


def _close_late(task: asyncio.Future[tuple[picows.WSTransport, picows.WSListener]]) -> None:
    if task.cancelled() or task.exception() is not None:
        return  # (retrieved, so not logged: the caller gave up and said why)
    task.result()[0].disconnect()


async def ws_connect_owned(
    attempt: Attempt,
    connect: Coroutine[Any, Any, tuple[picows.WSTransport, picows.WSListener]],
    timeout: float,
) -> tuple[picows.WSTransport, picows.WSListener]:
    """`picows.ws_connect` under a deadline, never leaking its socket. Cancelled while the
    upgrade is in flight (TCP up, handshake unanswered), picows leaves the socket open and
    the handshake then completes on it unowned. So the connect runs in its own task: a caller
    that is cancelled or times out abandons the attempt, and whatever socket it still yields
    is closed (the listener refuses it on arrival, `_close_late` once the task ends)."""
    task = asyncio.ensure_future(connect)
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout)
    except BaseException:
        attempt.abandoned = True
        if not task.done():  # (a connect that failed by itself has nothing to close)
            task.add_done_callback(_close_late)
            # Bounded anyway by picows's handshake timeout; past our deadline the attempt is
            # still in the TCP connect, where cancelling closes the socket.
            asyncio.get_running_loop().call_later(timeout, task.cancel)
        raise


class ShardListener(picows.WSListener):
    def __init__(self, shard: Shard, attempt: Attempt | None = None) -> None:
        self.shard = shard
        self.attempt = attempt or Attempt()
        self.on_message = shard.session.on_message
        self.commit = shard.worker.writer.commit
        self.max_bytes = shard.worker.config.max_message_bytes
        hb = shard.heartbeat
        self.ping_text = hb.ping
        self.pong_text = hb.pong
        self.msgs = 0
        self.bytes = 0
        self.last_ns = 0
        self.read_ns = 0  # receive time of the read buffer being parsed (0: none yet)
        self.latency: list[int] = []
        self.uncommitted = 0
        self.ping_outstanding = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.transport: picows.WSTransport | None = None

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        if self.attempt.abandoned:  # the shard gave up on this connect while it was in flight
            self.on_message = _ignore
            transport.disconnect()

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        mt = frame.msg_type
        if mt is _TEXT or mt is _BINARY:
            # One clock read per read buffer, whose frames arrived together (`bench.hotpath`:
            # about 5 % of the per-frame cost at 256 frames per read)
            recv = self.read_ns
            if not recv:
                recv = self.read_ns = _time_ns()
            size = frame.payload_size
            self.bytes += size
            if size > self.max_bytes:
                self.shard.on_parse_error("oversize", f"{size} bytes > {self.max_bytes}")
                exch = 0
            else:
                try:
                    exch = self.on_message(frame.get_payload_as_memoryview(), recv)
                except Exception as exc:  # a bug must not take the connection down
                    self.shard.on_parse_error("internal", f"{type(exc).__name__}: {exc}")
                    exch = 0
            n = self.uncommitted + 1
            if frame.last_in_buffer or n >= COMMIT_EVERY:
                # Once per batch rather than per frame: the message count, the time of the
                # last message and one latency sample (every frame at paced rates).
                self.uncommitted = 0
                self.read_ns = 0
                self.msgs += n
                self.last_ns = recv
                if exch and len(self.latency) < LATENCY_SAMPLES:
                    self.latency.append(recv - exch)
                self.commit()
            else:
                self.uncommitted = n
        elif mt is _CLOSE:
            self.close_code = frame.get_close_code().value
            self.close_reason = (frame.get_close_message() or b"").decode(errors="replace")
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def send_user_specific_ping(self, transport: picows.WSTransport) -> None:
        self.ping_outstanding = True
        if self.ping_text is None:
            transport.send_ping()
        else:
            transport.send(_TEXT, self.ping_text)
        self.shard.msgs_out += 1
        self.shard.rate.record()  # pings count against the venue's message limit too

    def is_user_specific_pong(self, frame: picows.WSFrame) -> bool:
        mt = frame.msg_type
        ok = mt is _PONG or (
            self.pong_text is not None
            and mt is _TEXT
            and frame.payload_size == len(self.pong_text)
            and frame.get_payload_as_bytes() == self.pong_text
        )
        if ok:
            self.ping_outstanding = False
        return ok

    def pong_received(self) -> None:
        self.ping_outstanding = False
        if self.transport is not None:
            self.transport.notify_user_specific_pong_received()

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.msgs += self.uncommitted
        self.uncommitted = 0
        self.commit()


class Shard:
    """One physical WebSocket of a connection, with its own reconnect loop."""

    def __init__(self, conn: Connection, index: int) -> None:
        self.conn = conn
        self.worker = conn.worker
        self.index = index
        self.session = self.worker.venue.session(self.worker.routes, self.worker.writer, self)
        self.wanted: set[str] = set()
        self.active: set[str] = set()
        self.pending: dict[int, Request] = {}
        self._to_add: list[str] = []
        self._to_remove: list[str] = []
        self._flush_scheduled = False
        self.state = ConnState.STOPPED
        self.heartbeat = self.worker.heartbeat
        self.backoff = Backoff(conn.policy)
        self.listener: ShardListener | None = None
        self.transport: picows.WSTransport | None = None
        self.connected_at = 0.0
        self.live_since = 0.0
        self.stopped = False
        self.retiring = False
        self.successor: Shard | None = None
        self.msgs_out = 0
        self.bytes_out = 0
        self.reconnects = 0
        self.rollovers = 0
        self.audit_repairs = 0
        self.parse_errors: dict[str, int] = {}
        self.last_error = ""
        self._queue: asyncio.Queue[Request] = asyncio.Queue()
        self.rate = self.worker.request_window or SlidingWindow(
            int(self.worker.limits.requests_per_second)
        )
        self._wake = asyncio.Event()
        self._welcomed = asyncio.Event()  # per socket, on venues that greet (`spec.welcome`)
        self._abort_reason = ""  # why we dropped the socket ourselves, if we did
        self._tasks: set[asyncio.Task[Any]] = set()
        self.task: asyncio.Task[None] | None = None
        self._retired_counts = (0, 0)  # msgs/bytes of earlier sockets of this shard

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        self.stopped = True
        self._wake.set()
        if self.transport is not None:
            self.transport.disconnect()
        # Cancel until the task ends: on Python 3.11 `asyncio.wait_for` can swallow a
        # cancellation that races with its inner future completing (a connect finishing just
        # as the shard is stopped), and the task would then carry on with a live socket.
        while self.task is not None and not self.task.done():
            self.task.cancel()
            if self.transport is not None:
                self.transport.disconnect()
            await asyncio.wait({self.task}, timeout=1.0)
        if self.task is not None and not self.task.cancelled():
            self.task.exception()  # retrieved: an error here was reported when it happened
        for task in list(self._tasks):
            task.cancel()
        self._set_state(ConnState.STOPPED, "stopped")

    def kick(self) -> None:
        """Reconnect now: drop the socket, or cut a backoff wait short."""
        self.backoff.reset()
        self._wake.set()
        if self.transport is not None:
            self.transport.disconnect()

    async def run(self) -> None:
        while not self.stopped:
            self._set_state(ConnState.CONNECTING, "connecting")
            await self.worker.budget.take()
            try:
                await self._connect()
            except (TimeoutError, OSError, picows.WSError, aiohttp.ClientError, WSMError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.worker.report_failure(self.conn, None, self.last_error)
                if not await self._back_off(f"connect failed: {self.last_error}"):
                    return
                continue
            if self.stopped:  # stopped while the handshake completed
                if self.transport is not None:
                    self.transport.disconnect()
                return
            reason = await self._live()
            if self.stopped or self.retiring:
                return
            self.reconnects += 1
            if (
                self.live_since
                and time.monotonic() - self.live_since >= self.conn.policy.reset_after
            ):
                self.backoff.reset()
            if not await self._back_off(reason):
                return

    async def _connect(self) -> None:
        worker = self.worker
        prepared = await asyncio.wait_for(
            worker.venue.prepare(
                worker.http, self.conn.url or worker.config.ws_url, worker.config.rest_url
            ),
            worker.config.connect_timeout,
        )
        hb = self.heartbeat = prepared.heartbeat or worker.heartbeat
        url = prepared.url
        # A session per physical connection: per-connection venue state (a connection-wide
        # sequence, a heartbeat counter) starts afresh with every socket.
        self.session = worker.venue.session(worker.routes, worker.writer, self)
        self._welcomed = asyncio.Event()  # the greeting may arrive with the handshake's answer
        self._abort_reason = ""
        attempt = Attempt()
        transport, listener = await ws_connect_owned(
            attempt,
            picows.ws_connect(
                lambda: ShardListener(self, attempt),
                url,
                enable_auto_ping=True,
                auto_ping_idle_timeout=hb.idle,
                auto_ping_reply_timeout=hb.timeout,
                auto_ping_strategy=(
                    picows.WSAutoPingStrategy.PING_PERIODICALLY
                    if hb.periodic
                    else picows.WSAutoPingStrategy.PING_WHEN_IDLE
                ),
                max_frame_size=self.worker.config.max_frame_bytes,
                websocket_handshake_timeout=self.worker.config.connect_timeout,
            ),
            self.worker.config.connect_timeout + 1.0,
        )
        assert isinstance(listener, ShardListener)
        self.transport, self.listener = transport, listener
        self.connected_at = time.monotonic()

    async def _live(self) -> str:
        """Subscribe, run until the socket drops; return why it dropped."""
        assert self.transport is not None and self.listener is not None
        transport, listener = self.transport, self.listener
        self.live_since = 0.0
        self._set_state(ConnState.SUBSCRIBING, "subscribing")
        sender = self._spawn(self._send_requests(transport))
        for req in self.worker.venue.setup_requests(self.worker.next_request_id(8)):
            self.pending[req.id] = req
            self._queue.put_nowait(req)
        self._queue_subscribe(sorted(self.wanted))
        if not self.worker.venue.spec.welcome and not self.pending and self._queue.empty():
            self._went_live()
        lifetime = self._spawn(self._watch_lifetime())
        audit = self._spawn(self._audit())
        await transport.wait_disconnected()
        sender.cancel()
        lifetime.cancel()
        audit.cancel()
        msgs, size = self._retired_counts
        self._retired_counts = (msgs + listener.msgs, size + listener.bytes)
        self.transport = None
        self.active.clear()
        self.pending.clear()
        self._queue = asyncio.Queue()
        if self._abort_reason:
            reason, state = self._abort_reason, ConnState.CLOSED
        elif listener.ping_outstanding:
            reason, state = "heartbeat timeout (no pong)", ConnState.STALE
        elif listener.close_code is not None:
            reason = f"closed by the venue ({listener.close_code} {listener.close_reason})".strip()
            state = ConnState.CLOSED
        else:
            reason, state = "connection lost", ConnState.CLOSED
        self.listener = None
        if not self.stopped:
            self._set_state(state, reason)
            if not self.retiring:
                self.worker.on_shard_down(self)
        return reason

    async def _back_off(self, reason: str) -> bool:
        delay = self.backoff.next_delay()
        if delay is None:
            self._set_state(
                ConnState.FAILED, f"gave up after {self.backoff.attempts} attempts: {reason}"
            )
            self.worker.report_failure(self.conn, None, f"gave up: {reason}")
            return False
        self._set_state(
            ConnState.BACKOFF, f"retry in {delay:.2f}s: {reason}", self.backoff.attempts
        )
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        return not self.stopped

    def _went_live(self) -> None:
        self.live_since = time.monotonic()
        self._set_state(ConnState.LIVE, "live")
        if self.conn.waiting_successor is self:
            self.conn.promote(self)

    def _set_state(self, state: ConnState, reason: str, attempt: int = 0) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        self.worker.on_state(self, previous, reason, attempt)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- subscriptions ------------------------------------------------------------------------

    def count_channel(self, native: str) -> int:
        routes = self.worker.routes
        return sum(
            1
            for name in self.wanted
            if (stream := routes.get(name)) is not None and stream.channel.native == native
        )

    def _queue_subscribe(self, streams: list[str], *, subscribe: bool = True) -> None:
        if not streams or self.transport is None:
            return
        for req in self.worker.venue.requests(
            streams, self.worker.next_request_id(len(streams)), subscribe=subscribe
        ):
            self.pending[req.id] = req
            self._queue.put_nowait(req)

    async def _send_requests(self, transport: picows.WSTransport) -> None:
        """Paced within the venue's client-message limit; on greeting venues, after the welcome."""
        if self.worker.venue.spec.welcome and not await self._await_welcome(transport):
            return
        while True:
            req = await self._queue.get()
            await self.rate.acquire()
            transport.send(_TEXT, req.text)
            self.msgs_out += 1
            self.bytes_out += len(req.text)

    async def _await_welcome(self, transport: picows.WSTransport) -> bool:
        timeout = self.worker.config.connect_timeout
        try:
            await asyncio.wait_for(self._welcomed.wait(), timeout)
        except TimeoutError:
            self._abort_reason = self.last_error = f"no welcome from the venue within {timeout:g}s"
            transport.disconnect()
            return False
        if not self.pending and self._queue.empty():
            self._went_live()
        return True

    def add_streams(self, names: list[str]) -> None:
        """Want these streams; requests go out batched at the end of this loop iteration."""
        for n in names:
            if n not in self.wanted:
                self.wanted.add(n)
                self._to_add.append(n)
        self._schedule_flush()

    def remove_streams(self, names: list[str]) -> None:
        for n in names:
            if n in self.wanted:
                self.wanted.discard(n)
                self.active.discard(n)
                self._to_remove.append(n)
        self._schedule_flush()

    def resubscribe(self, names: list[str]) -> None:
        """Unsubscribe and subscribe again: WebSocket-snapshot venues send a fresh snapshot."""
        names = [n for n in names if n in self.wanted]
        self.active.difference_update(names)
        if self.state in (ConnState.SUBSCRIBING, ConnState.LIVE):
            self._queue_subscribe(names, subscribe=False)
            self._queue_subscribe(names)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        add = [n for n in self._to_add if n in self.wanted]
        remove = [n for n in self._to_remove if n not in self.wanted]
        self._to_add, self._to_remove = [], []
        if self.state in (ConnState.SUBSCRIBING, ConnState.LIVE):
            self._queue_subscribe(add)
            self._queue_subscribe(remove, subscribe=False)

    # -- SessionEvents ------------------------------------------------------------------------

    def on_ack(
        self, request_id: int | None, ok: bool, code: int | str | None, message: str
    ) -> None:
        if request_id is None:  # answers without ids come in the order of the requests
            request_id = next(iter(self.pending), -1)
        req = self.pending.pop(request_id, None)
        if req is None:
            if not ok:
                self.last_error = f"venue error {code}: {message}"
                self.worker.report_failure(self.conn, str(code), message)
            return
        if req.subscribe:
            if ok:
                live = [s for s in req.streams if s in self.wanted]
                self.active.update(live)
                self.worker.on_streams_active(self, live)
            else:
                self.last_error = f"venue rejected {len(req.streams)} streams ({code}): {message}"
                self.worker.on_streams_rejected(self, list(req.streams), code, message)
        if self.state == ConnState.SUBSCRIBING and not any(
            r.subscribe for r in self.pending.values()
        ):
            self._went_live()

    def on_parse_error(self, channel: str, detail: str) -> None:
        self.parse_errors[channel] = self.parse_errors.get(channel, 0) + 1
        self.last_error = f"bad frame on {channel}: {detail}"

    def on_notice(self, kind: str, message: str) -> None:
        if kind == "shutdown" and not self.retiring:
            self.conn.rollover(self)

    def on_pong(self) -> None:
        if self.listener is not None:
            self.listener.pong_received()

    def on_welcome(self) -> None:
        self._welcomed.set()

    def on_gap(self, stream: str | None, reason: int) -> None:
        self.worker.resync(self, list(self.wanted) if stream is None else [stream], reason)

    async def _audit(self) -> None:
        """Compare the venue's list of our subscriptions with ours, now and then."""
        while True:
            await asyncio.sleep(self.worker.config.audit_interval)
            req = self.worker.venue.list_request(self.worker.next_request_id())
            if req is not None and self.state == ConnState.LIVE:
                self.pending[req.id] = msgspec.structs.replace(req, subscribe=False)
                self._queue.put_nowait(req)

    def on_listing(self, request_id: int, streams: list[str]) -> None:
        self.pending.pop(request_id, None)
        if any(r.subscribe for r in self.pending.values()):
            return  # subscriptions in flight: the lists cannot agree yet
        listed = set(streams)
        missing = sorted(self.active - listed)
        if missing:  # the venue dropped them silently: subscribe again
            self.audit_repairs += len(missing)
            self.last_error = f"venue had dropped {len(missing)} subscriptions; resubscribed"
            self.active.difference_update(missing)
            self._queue_subscribe(missing)
        extra = sorted(listed - self.wanted)
        if extra:
            self._queue_subscribe(extra, subscribe=False)

    # -- rollover -------------------------------------------------------------------------------

    async def _watch_lifetime(self) -> None:
        limits = self.worker.limits
        if limits.max_lifetime is None:
            return
        await asyncio.sleep(max(0.0, limits.max_lifetime - limits.rollover_margin))
        if not self.retiring:
            self.conn.rollover(self)

    def retire(self) -> None:
        """Hand over done: close this socket without reconnecting or invalidating books."""
        self.retiring = True
        self.stopped = True
        self._wake.set()
        if self.transport is not None:
            self.transport.send_close(picows.WSCloseCode.OK)
            self.transport.disconnect()
        self._set_state(ConnState.STOPPED, "rolled over")

    # -- stats ------------------------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        msgs, size = self._retired_counts
        if self.listener is not None:
            msgs += self.listener.msgs + self.listener.uncommitted
            size += self.listener.bytes
        return msgs, size


class Connection:
    """A named logical connection: its shards, policy and the streams it wants."""

    def __init__(
        self, worker: Worker, conn_id: str, number: int, url: str | None, policy: ReconnectPolicy
    ) -> None:
        self.worker = worker
        self.id = conn_id
        self.number = number
        self.url = url
        self.policy = policy
        self.shards: list[Shard] = []
        self.retired: list[Shard] = []  # rolled over, until their socket is closed
        # what closed rolled-over sockets counted: msgs, bytes, msgs out, bytes out, ...
        self.retired_totals: dict[str, int] = {}
        self.retired_errors: dict[str, int] = {}
        self.waiting_successor: Shard | None = None
        self._pending_retire: Shard | None = None
        self.rollovers = 0

    def start(self) -> None:
        self.new_shard()

    def new_shard(self) -> Shard:
        shard = Shard(self, len(self.shards))
        self.shards.append(shard)
        shard.start()
        return shard

    def shard_with_room(self, channel: str | None = None) -> Shard | None:
        """A shard that can carry one more stream (of `channel`, by its native name), or a new
        one while the connection limit allows."""
        limits = self.worker.limits
        cap = limits.streams_per_connection
        channel_cap = limits.channel_streams_per_connection.get(channel or "")
        for shard in self.shards:
            if (
                len(shard.wanted) < cap
                and not shard.retiring
                and (channel_cap is None or shard.count_channel(channel or "") < channel_cap)
            ):
                return shard
        if self.worker.total_shards() >= self.worker.config.max_connections:
            return None
        return self.new_shard()

    async def close(self) -> None:
        for shard in self.shards + self.retired:
            await shard.stop()

    def kick(self) -> None:
        for shard in self.shards:
            shard.kick()

    def rollover(self, old: Shard) -> None:
        """Make-before-break: start a successor for `old`; promote it once it is live."""
        if self.waiting_successor is not None or old.retiring or old not in self.shards:
            return
        successor = Shard(self, old.index)
        successor.wanted = set(old.wanted)
        old.successor = successor
        self.waiting_successor = successor
        self._pending_retire = old
        successor.start()

    def promote(self, successor: Shard) -> None:
        old = self._pending_retire
        self.waiting_successor = None
        self._pending_retire = None
        if old is None:
            return
        i = self.shards.index(old)
        self.shards[i] = successor
        self.retired.append(old)
        if old.task is not None:
            old.task.add_done_callback(lambda _task: self._fold(old))
        self.rollovers += 1
        self.worker.on_rollover(old, successor)

    def _fold(self, shard: Shard) -> None:
        """A rolled-over socket closed: keep its counts, drop the shard (a long-lived
        connection rolls over daily and must not accumulate them)."""
        if shard not in self.retired:
            return
        self.retired.remove(shard)
        msgs, size = shard.counts()
        t = self.retired_totals
        for key, value in (
            ("msgs", msgs),
            ("bytes", size),
            ("msgs_out", shard.msgs_out),
            ("bytes_out", shard.bytes_out),
            ("reconnects", shard.reconnects),
            ("audit_repairs", shard.audit_repairs),
        ):
            t[key] = t.get(key, 0) + value
        for channel, n in shard.parse_errors.items():
            self.retired_errors[channel] = self.retired_errors.get(channel, 0) + n

    @property
    def state(self) -> ConnState:
        return worst_state(s.state for s in self.shards)
