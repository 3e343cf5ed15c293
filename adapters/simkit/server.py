"""The harness every exchange simulator runs in: a picows server on loopback that speaks one
venue's protocol (through a `VenueSim`), serves its REST endpoints and a control endpoint,
paces market data, and injects faults.

Faults (from Python, or `GET /_sim/fault/<name>?...` over HTTP):
`close` (drop every connection), `stall` (stop sending and stop reading, so pings go
unanswered, without closing), `skip` (the next book update skips sequence ids), `malformed`
(inject bad frames), `shutdown` (the venue's shutdown notice, then close), `refuse` (stop
listening for a while: connections are refused), `reject` (refuse the next subscribe request
with the venue's error), `reset` (clear faults). `GET /_sim/pause?value=1` quiesces the market
(batched book updates are still flushed), `/_sim/stats` reports, and venue paths such as
`/_sim/book?symbol=` and `/_sim/trades?symbol=` show what the simulator published.

picows answers plain GETs only. A venue whose REST API needs other methods (KuCoin's
`POST /api/v1/bullet-public`) sets `rest_server = True`: its REST endpoints and the control
endpoint are then served by an aiohttp listener on a port of their own (`rest_url`), as real
venues serve REST and WebSocket from different hosts; the WebSocket port keeps answering GETs.

Blast mode (benchmarks, see `adapters/simkit/blast.py`): `GET /_sim/blast?rate=max&count=N`
sends every current client N pre-encoded frames per subscribed stream (or `rate=R` frames per
second per stream, one frame per write), `/_sim/blast/stats` reports what was sent and
`/_sim/blast/stop` stops; `SimServer(blast=BlastConfig(...))` blasts every client as soon as
it subscribes. Venues opt in with a `blast_stream(name)` method.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson
import picows
from aiohttp import web
from picows import WSMsgType, WSUpgradeResponse, WSUpgradeResponseWithListener

from adapters.simkit.blast import BlastConfig, Blaster


class VenueSim(Protocol):
    """The venue-specific half of a simulator."""

    name: str

    def attach(self, server: SimServer) -> None: ...
    def http(self, method: str, path: str, query: dict[str, str]) -> tuple[int, bytes] | None: ...
    def accepts(self, path: str) -> bool: ...
    def on_connect(self, client: SimClient, path: str, query: dict[str, str]) -> None: ...
    def on_text(self, client: SimClient, text: bytes) -> None: ...
    def tick(self, now_ns: int, events: int) -> None: ...
    def malformed(self, kind: str) -> bytes: ...
    def shutdown_notice(self) -> bytes | None: ...
    def skip(self, n: int) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def control(self, parts: list[str], query: dict[str, str]) -> Any: ...
    def reject_next(self, count: int) -> None: ...


class SimClient(picows.WSListener):
    """One client connection, with the subscriptions the venue protocol gave it."""

    def __init__(self, server: SimServer, path: str, query: dict[str, str]) -> None:
        self.server = server
        self.path = path
        self.query = query
        self.transport: picows.WSTransport | None = None
        self.subs: set[str] = set()
        self.state: dict[str, Any] = {}  # venue-specific per-connection state
        self.stalled = False
        self.closing = False
        self.paused = False
        self.sent = 0
        self.dropped = 0
        self.received = 0
        self.recv_times: list[float] = []  # monotonic time of each client message
        self.connected_at = time.monotonic()
        self.blast: Any = None  # the running blast to this client, if any

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        self.server.clients.add(self)
        self.server.connections_total += 1
        self.server.venue.on_connect(self, self.path, self.query)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type not in (WSMsgType.TEXT, WSMsgType.BINARY) or self.stalled or self.closing:
            return
        self.received += 1
        self.recv_times.append(time.monotonic())
        self.server.venue.on_text(self, frame.get_payload_as_bytes())

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.server.drop_client(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.blast is not None:
            self.blast.writable.set()

    def send(self, payload: bytes, *, force: bool = False) -> None:
        """Send one text frame unless stalled; a client that cannot keep up loses frames
        (unless `force`d: an injected fault is always delivered)."""
        if self.stalled or self.transport is None:
            return
        if self.paused and not force:
            self.dropped += 1
            return
        self.transport.send(WSMsgType.TEXT, payload)
        self.sent += 1

    def subscribe(self, streams: Iterable[str]) -> None:
        for s in streams:
            self.subs.add(s)
            self.server.index.setdefault(s, set()).add(self)
        self.server.on_subscribed(self)

    def unsubscribe(self, streams: Iterable[str]) -> None:
        for s in streams:
            self.subs.discard(s)
            self.server.index.get(s, set()).discard(self)

    def close(self, code: int | None = None) -> None:
        self.closing = True
        if self.transport is None:
            return
        if code is None:
            self.transport.disconnect(graceful=False)
        else:
            self.transport.send_close(picows.WSCloseCode(code))
            self.transport.disconnect()


class SimServer:
    """Runs a `VenueSim` on 127.0.0.1. `rate` is market events per second."""

    def __init__(
        self,
        venue: VenueSim,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate: float = 50.0,
        tick: float = 0.01,
        ping_interval: float | None = None,
        pong_timeout: float = 60.0,
        max_lifetime: float | None = None,
        rest_port: int = 0,
        blast: BlastConfig | None = None,
    ) -> None:
        self.venue = venue
        self.host = host
        self.port = port
        # the venue's REST API on a listener of its own (see the module docstring)
        self.rest_port: int | None = rest_port if getattr(venue, "rest_server", False) else None
        self._rest: web.AppRunner | None = None
        self._rest_site: web.TCPSite | None = None
        self.rate = rate
        self.tick_seconds = tick
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_lifetime = max_lifetime
        self.clients: set[SimClient] = set()
        self.index: dict[str, set[SimClient]] = {}
        self.connections_total = 0
        self.faults: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._refuse_until = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.paused_market = False
        self.blast_config = blast  # blast every client as soon as it subscribes
        self.blaster = Blaster(
            getattr(venue, "blast_stream", lambda name: None),
            lambda name: list(self.index.get(name, ())),
            lambda: [name for name, subs in self.index.items() if subs],
        )
        venue.attach(self)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port if self.rest_port is None else self.rest_port}"

    async def start(self) -> SimServer:
        if self.rest_port is not None:
            app = web.Application()
            app.router.add_route("*", "/{path:.*}", self._on_rest)
            self._rest = web.AppRunner(app, access_log=None)
            await self._rest.setup()
            await self._listen_rest()
        await self._listen()
        self._ticker = asyncio.get_running_loop().create_task(self._run_market())
        return self

    async def _listen(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.ping_interval:
            kwargs = {
                "enable_auto_ping": True,
                "auto_ping_idle_timeout": self.ping_interval,
                "auto_ping_reply_timeout": self.pong_timeout,
                "auto_ping_strategy": picows.WSAutoPingStrategy.PING_PERIODICALLY,
            }
        self._server = await picows.ws_create_server(
            self._factory,
            self.host,
            self.port,
            max_frame_size=1 << 20,
            reuse_address=True,
            **kwargs,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _listen_rest(self) -> None:
        assert self._rest is not None
        self._rest_site = web.TCPSite(
            self._rest, self.host, self.rest_port or 0, reuse_address=True
        )
        await self._rest_site.start()
        self.rest_port = int(self._rest.addresses[-1][1])

    async def _on_rest(self, request: web.Request) -> web.Response:
        path, query = request.path, dict(request.query)
        if path.startswith("/_sim/"):
            status, body = self._control(path, query)
        else:
            answer = self.venue.http(request.method, path, query)
            status, body = answer or (404, b'{"error":"not found"}')
        return web.Response(status=status, body=body, content_type="application/json")

    async def stop(self) -> None:
        self.blaster.stop()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for task in list(self._tasks):
            task.cancel()
        for client in list(self.clients):
            client.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._rest is not None:
            await self._rest.cleanup()
            self._rest = None

    async def __aenter__(self) -> SimServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _factory(self, request: picows.WSUpgradeRequest) -> Any:
        raw = request.path.decode()
        path, _, qs = raw.partition("?")
        query = dict(parse_qsl(qs))
        method = request.method.decode()
        if path.startswith("/_sim/"):
            return self._respond(*self._control(path, query))
        answer = self.venue.http(method, path, query)
        if answer is not None:
            return self._respond(*answer)
        if time.monotonic() < self._refuse_until or not self.venue.accepts(path):
            return None
        return SimClient(self, path, query)

    @staticmethod
    def _respond(status: int, body: bytes) -> WSUpgradeResponseWithListener:
        headers = {"Content-Type": "application/json"}
        if status < 400:
            resp = WSUpgradeResponse.create_ok_response(body, headers)
        else:
            resp = WSUpgradeResponse.create_error_response(status, body, headers)
        return WSUpgradeResponseWithListener(resp, None)

    def on_subscribed(self, client: SimClient) -> None:
        if self.blast_config is not None and client.transport is not None:
            config = self.blast_config
            asyncio.get_running_loop().call_soon(self.blaster.start_client, client, config)

    def blast(self, config: BlastConfig) -> int:
        """Blast every current client; returns how many clients have blastable streams."""
        return self.blaster.start(list(self.clients), config)

    def drop_client(self, client: SimClient) -> None:
        self.clients.discard(client)
        for s in client.subs:
            self.index.get(s, set()).discard(client)

    def broadcast(self, stream: str, build: Callable[[SimClient], bytes]) -> int:
        """Send a frame (built per client, e.g. wrapped or not) to every subscriber."""
        subscribers = self.index.get(stream)
        if not subscribers:
            return 0
        for client in subscribers:
            client.send(build(client))
        return len(subscribers)

    async def _run_market(self) -> None:
        carry = 0.0
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_seconds)
            now = time.monotonic()
            carry += self.rate * (now - last)
            last = now
            events = int(carry)
            carry -= events
            if self.max_lifetime is not None:
                self._expire(now)
            # a paused market still flushes what it batched (depth diffs), so it quiesces
            self.venue.tick(time.time_ns(), 0 if self.paused_market else events)

    def _expire(self, now: float) -> None:
        for client in list(self.clients):
            if now - client.connected_at > self.max_lifetime:  # type: ignore[operator]
                client.close(1000)

    # -- faults ---------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        self.faults[name] = self.faults.get(name, 0) + n

    def close_all(self, code: int | None = None) -> int:
        clients = list(self.clients)
        for c in clients:
            c.close(code)
        self._count("close")
        return len(clients)

    def stall(self) -> int:
        """Every current connection goes silent and deaf (pings unanswered), but stays open."""
        clients = list(self.clients)
        for c in clients:
            c.stalled = True
            if c.transport is not None:
                c.transport.underlying_transport.pause_reading()
        self._count("stall")
        return len(clients)

    def forget(self, count: int = 1) -> int:
        """Every connection silently loses `count` of its subscriptions (no message says so)."""
        lost = 0
        for c in list(self.clients):
            for stream in sorted(c.subs)[:count]:
                c.unsubscribe([stream])
                lost += 1
        self._count("forget")
        return lost

    def skip(self, n: int = 1) -> None:
        self.venue.skip(n)
        self._count("skip")

    def malformed(self, kind: str, count: int = 1) -> int:
        frame = self.venue.malformed(kind)
        sent = 0
        for _ in range(count):
            for c in list(self.clients):
                if c.subs:
                    c.send(frame, force=True)  # a big frame must not crowd out the next
                    sent += 1
        self._count(f"malformed:{kind}", count)
        return sent

    def shutdown(self, grace: float = 1.0) -> int:
        notice = self.venue.shutdown_notice()
        clients = list(self.clients)
        for c in clients:
            if notice is not None:
                c.send(notice)
        self._count("shutdown")

        def close() -> None:
            for c in clients:
                if c in self.clients:
                    c.close(1001)

        self._later(grace, close)
        return len(clients)

    async def refuse(self, seconds: float) -> None:
        """Stop listening for `seconds`: new connections are refused; existing ones close."""
        self._count("refuse")
        self._refuse_until = time.monotonic() + seconds
        if self._server is not None:
            self._server.close()  # stop listening; wait_closed would wait for the clients
            self._server = None
        if self._rest_site is not None:
            await self._rest_site.stop()
            self._rest_site = None
        self.close_all()
        self._later(seconds, lambda: self._spawn(self._relisten()))

    async def _relisten(self) -> None:
        if self._rest is not None:
            await self._listen_rest()
        await self._listen()

    def reset(self) -> None:
        self._refuse_until = 0.0
        self.paused_market = False

    def _later(self, delay: float, fn: Callable[[], Any]) -> None:
        asyncio.get_running_loop().call_later(delay, fn)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stats(self) -> dict[str, Any]:
        return {
            "venue": self.venue.name,
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
            "clients": len(self.clients),
            "connections_total": self.connections_total,
            "subscriptions": [sorted(c.subs) for c in self.clients],
            "sent": sum(c.sent for c in self.clients),
            "faults": self.faults,
            "blast": self.blaster.stats(),
            **self.venue.stats(),
        }

    def _control(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        parts = path.strip("/").split("/")
        try:
            if parts[1:] == ["stats"]:
                return 200, orjson.dumps(self.stats())
            if len(parts) == 3 and parts[1] == "fault":
                return 200, orjson.dumps({"ok": True, "result": self._fault(parts[2], query)})
            if parts[1:] == ["rate"]:
                self.rate = float(query["value"])
                return 200, orjson.dumps({"ok": True, "rate": self.rate})
            if parts[1:2] == ["blast"]:
                return 200, orjson.dumps(self._blast_control(parts[2:], query))
            if parts[1:] == ["pause"]:
                self.paused_market = query.get("value", "1") == "1"
                return 200, orjson.dumps({"ok": True, "paused": self.paused_market})
            answer = self.venue.control(parts[1:], query)
            if answer is not None:
                return 200, orjson.dumps(answer)
        except (KeyError, ValueError) as exc:
            return 400, orjson.dumps({"error": f"bad control request: {exc}"})
        return 404, orjson.dumps({"error": f"unknown control path {path}"})

    def _blast_control(self, parts: list[str], q: dict[str, str]) -> Any:
        if parts == ["stop"]:
            self.blaster.stop()
        elif parts == []:
            rate = q.get("rate", "max")
            config = BlastConfig(
                rate=None if rate == "max" else float(rate),
                count=int(q["count"]) if "count" in q else None,
                chunk=int(q.get("chunk", str(BlastConfig.chunk))),
            )
            return {"ok": True, "clients": self.blast(config)}
        elif parts != ["stats"]:
            raise ValueError(f"unknown blast command {parts}")
        return self.blaster.stats()

    def _fault(self, name: str, q: dict[str, str]) -> Any:
        if name == "close":
            return self.close_all(int(q["code"]) if "code" in q else None)
        if name == "stall":
            return self.stall()
        if name == "skip":
            self.skip(int(q.get("n", "1")))
            return None
        if name == "malformed":
            return self.malformed(q.get("kind", "truncated"), int(q.get("count", "1")))
        if name == "shutdown":
            return self.shutdown(float(q.get("grace", "1.0")))
        if name == "refuse":
            self._spawn(self.refuse(float(q.get("seconds", "2.0"))))
            return None
        if name == "reset":
            self.reset()
            return None
        if name == "forget":
            return self.forget(int(q.get("count", "1")))
        if name == "reject":
            self.venue.reject_next(int(q.get("count", "1")))
            self._count("reject")
            return None
        raise ValueError(f"unknown fault {name!r}")
