"""KuCoin spot (classic WebSocket): the declarative venue spec, the bullet-public token flow,
request builders, REST parsers and book rules.

Every connection attempt first asks `POST /api/v1/bullet-public` for a token; the answer names
the WebSocket endpoint and the ping interval and timeout to use, so `prepare` builds the URL
(`<endpoint>?token=..&connectId=..`) and the heartbeat from it, and a reconnect after the
token's 24 hours gets a fresh one. The configured `ws_url` is not used: the endpoint is the
token's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import msgspec

from adapters.kucoin.parse import KucoinSession, topic_kind
from adapters.kucoin.schemas import (
    KucoinBulletResponse,
    KucoinSnapshotResponse,
    KucoinSymbolsResponse,
)
from engine.errors import RetryableError, VenueRejection
from engine.records import Kind
from engine.streams import RouteTable
from engine.venue import (
    BookSnapshot,
    Channel,
    Heartbeat,
    Instrument,
    Limits,
    Prepared,
    Request,
    SessionEvents,
    Sink,
    Venue,
    VenueSpec,
    Verdict,
)

OK = "200000"
PING = b'{"id":"wsm","type":"ping"}'

SPEC = VenueSpec(
    name="kucoin",
    exchange_id=6,
    ws_url="wss://ws-api-spot.kucoin.com",  # informative: the endpoint comes with the token
    rest_url="https://api.kucoin.com",
    # Replaced by the token's pingInterval/pingTimeout on every connection. The server closes
    # a connection whose client stops pinging, so we ping on the interval, idle or not; the
    # pong comes back as a text frame that the session reports (`on_pong`).
    heartbeat=Heartbeat(idle=18.0, timeout=10.0, periodic=True, ping=PING),
    limits=Limits(
        streams_per_connection=300,  # topics per connection; each symbol of a topic counts
        streams_per_request=100,  # topics (symbols) per subscribe request
        # 100 client messages per 10 s per connection; pings count too, so keep below 10/s
        requests_per_second=8.0,
        budget=30,  # 30 new connections a minute per user; REST snapshots share the budget
        budget_per_second=0.5,
        max_lifetime=24 * 3600.0,  # a token lasts 24 h and its connection is cut after it
        rollover_margin=300.0,
    ),
    channels=(
        Channel("trades", Kind.TRADE, "/market/match"),
        Channel("ticker", Kind.BBO, "/market/ticker"),
        Channel("orderbook", Kind.BOOK_LEVEL, "/market/level2"),
    ),
    welcome=True,
)

_bullet = msgspec.json.Decoder(KucoinBulletResponse)
_snapshot = msgspec.json.Decoder(KucoinSnapshotResponse, strict=False)
_symbols = msgspec.json.Decoder(KucoinSymbolsResponse)
_encode = msgspec.json.Encoder().encode


def decimals(step: str) -> int:
    """Decimals of an increment such as "0.00000001" (-> 8), "0.1" (-> 1) or "10" (-> 0)."""
    try:
        exponent = Decimal(step).normalize().as_tuple().exponent
    except InvalidOperation:
        raise ValueError(f"not a decimal increment: {step!r}") from None
    return max(0, -exponent) if isinstance(exponent, int) else 0


def strip_known(delta: Any, known_id: int) -> None:
    """Leave out of a bridging delta the changes that `known_id` already holds. Each change
    carries the sequence of the last change of its price, so it tells exactly that."""
    ch = delta.changes
    delta.bids = [(p, s) for p, s, q in ch.bids if p and q > known_id]
    delta.asks = [(p, s) for p, s, q in ch.asks if p and q > known_id]


class KucoinBookRules:
    """KuCoin level2 calibration: drop updates with sequenceEnd <= the book's sequence; the next
    must start at or before it + 1 (a later start is a gap) and end after it."""

    snapshot_from_rest = True

    def bridge(self, snapshot_id: int, delta: Any) -> Verdict:
        return self.follow(snapshot_id, delta)

    def follow(self, last_id: int, delta: Any) -> Verdict:
        first, last = delta.first_id, delta.last_id
        if last <= last_id:
            return Verdict.DROP
        if first > last_id + 1 or first > last:
            return Verdict.GAP
        if first <= last_id:
            strip_known(delta, last_id)
        return Verdict.APPLY


def bullet_prepared(body: bytes, connect_id: str) -> Prepared:
    """The connection URL and heartbeat from a bullet-public answer."""
    try:
        answer = _bullet.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RetryableError(f"kucoin bullet-public: {exc}") from None
    if answer.code != OK or answer.data is None:
        raise VenueRejection("kucoin", answer.code, answer.msg or "bullet-public refused")
    servers = [s for s in answer.data.instanceServers if s.protocol == "websocket"]
    if not servers:
        raise RetryableError("kucoin bullet-public: no WebSocket instance server")
    server = servers[0]
    query = urlencode({"token": answer.data.token, "connectId": connect_id})
    sep = "&" if "?" in server.endpoint else "?"
    # We ping every pingInterval; a pong later than the next ping cannot be waited for (nor
    # can picows), so a pingTimeout above the interval is cut to it: stricter, never laxer.
    idle = server.pingInterval / 1000
    timeout = min(server.pingTimeout / 1000, idle)
    heartbeat = msgspec.structs.replace(SPEC.heartbeat, idle=idle, timeout=timeout)
    return Prepared(f"{server.endpoint}{sep}{query}", heartbeat)


class KucoinVenue(Venue):
    spec = SPEC
    book_rules = KucoinBookRules()
    bullet_path = "/api/v1/bullet-public"
    symbols_path = "/api/v2/symbols"
    depth_path = "/api/v1/market/orderbook/level2_100"

    def stream_name(self, channel: Channel, venue_symbol: str) -> str:
        return f"{channel.native}:{venue_symbol}"

    def connect_url(self, ws_url: str) -> str:
        return ws_url

    async def prepare(self, http: Any, ws_url: str, rest_url: str) -> Prepared:
        """A fresh token, endpoint and heartbeat for this connection attempt."""
        async with http.post(rest_url.rstrip("/") + self.bullet_path) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RetryableError(f"kucoin bullet-public: HTTP {resp.status}: {body[:200]!r}")
        return bullet_prepared(body, uuid.uuid4().hex)

    def requests(self, streams: Sequence[str], first_id: int, *, subscribe: bool) -> list[Request]:
        """One topic per request (`/market/match:A,B,..`), at most 100 symbols in it."""
        per = self.spec.limits.streams_per_request
        by_kind: dict[str, list[str]] = {}
        for name in streams:
            by_kind.setdefault(topic_kind(name), []).append(name)
        kind = "subscribe" if subscribe else "unsubscribe"
        out: list[Request] = []
        for prefix, names in by_kind.items():
            for i in range(0, len(names), per):
                chunk = tuple(names[i : i + per])
                rid = first_id + len(out)
                topic = prefix + ":" + ",".join(n.partition(":")[2] for n in chunk)
                text = _encode(
                    {
                        "id": rid,
                        "type": kind,
                        "topic": topic,
                        "privateChannel": False,
                        "response": True,
                    }
                )
                out.append(Request(rid, text, chunk, subscribe))
        return out

    def instruments_url(self, rest_url: str) -> str:
        return rest_url.rstrip("/") + self.symbols_path

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        answer = _symbols.decode(body)
        if answer.code != OK or answer.data is None:
            raise VenueRejection("kucoin", answer.code, answer.msg or "symbols refused")
        out = []
        for s in answer.data:
            try:
                price_decimals, size_decimals = (
                    decimals(s.priceIncrement),
                    decimals(s.baseIncrement),
                )
            except ValueError:
                continue  # no exact decimals for it: leave the symbol out rather than guess
            out.append(
                Instrument(s.symbol, s.baseCurrency, s.quoteCurrency, price_decimals, size_decimals)
            )
        return out

    def snapshot_url(self, rest_url: str, venue_symbol: str) -> str | None:
        return f"{rest_url.rstrip('/')}{self.depth_path}?symbol={venue_symbol}"

    def parse_snapshot(self, body: bytes) -> BookSnapshot:
        answer = _snapshot.decode(body)
        if answer.code != OK or answer.data is None:
            raise VenueRejection("kucoin", answer.code, answer.msg or "snapshot refused")
        snap = answer.data
        return BookSnapshot(snap.sequence, snap.bids, snap.asks, snap.time * 1_000_000)

    def session(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> KucoinSession:
        return KucoinSession(routes, sink, events)

    def simulator(self, **options: Any) -> Any:
        from adapters.kucoin.simulator import KucoinSim

        return KucoinSim(**options)


VENUE = KucoinVenue()
