"""Binance spot: the declarative venue spec, request builders, REST parsers and book rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from adapters.binance.parse import BinanceSession
from adapters.binance.schemas import BinanceDepthSnapshot, BinanceExchangeInfo
from engine.records import Kind
from engine.streams import RouteTable
from engine.venue import (
    BookSnapshot,
    Channel,
    Heartbeat,
    Instrument,
    Limits,
    Request,
    SessionEvents,
    Sink,
    Venue,
    VenueSpec,
    Verdict,
)

SPEC = VenueSpec(
    name="binance",
    exchange_id=1,
    ws_url="wss://stream.binance.com:9443",
    rest_url="https://api.binance.com",
    # The server pings every 20 s and wants a pong within a minute; we ping when 30 s pass
    # without any frame and give up 10 s later.
    heartbeat=Heartbeat(idle=30.0, timeout=10.0),
    limits=Limits(
        streams_per_connection=1024,
        streams_per_request=200,
        # the venue closes connections above 5 incoming messages a second (pings included);
        # 3 evenly spaced leave room for arrival jitter and our pings
        requests_per_second=3.0,
        budget=20,  # 300 connection attempts per 5 minutes per IP
        budget_per_second=1.0,
        max_lifetime=24 * 3600.0,
        rollover_margin=300.0,
    ),
    channels=(
        Channel("trades", Kind.TRADE, "trade"),
        Channel("ticker", Kind.BBO, "bookTicker"),
        Channel("orderbook", Kind.BOOK_LEVEL, "depth@100ms"),
        Channel("aggTrade", Kind.TRADE, "aggTrade"),
        Channel("depth", Kind.BOOK_LEVEL, "depth"),
    ),
)

_info = msgspec.json.Decoder(BinanceExchangeInfo)
_snapshot = msgspec.json.Decoder(BinanceDepthSnapshot, strict=False)
_encode = msgspec.json.Encoder().encode


def decimals(step: str | None) -> int:
    """Decimals of a tick or lot step such as "0.01000000" (-> 2)."""
    if not step or "." not in step:
        return 0
    return len(step.rstrip("0").partition(".")[2])


class SpotBookRules:
    """Binance spot diff depth: drop u <= lastUpdateId, bridge U <= id+1 <= u, then U == u'+1."""

    snapshot_from_rest = True

    def bridge(self, snapshot_id: int, delta: Any) -> Verdict:
        if delta.last_id <= snapshot_id:
            return Verdict.DROP
        return Verdict.APPLY if delta.first_id <= snapshot_id + 1 else Verdict.GAP

    def follow(self, last_id: int, delta: Any) -> Verdict:
        if delta.last_id <= last_id:
            return Verdict.DROP
        return Verdict.APPLY if delta.first_id <= last_id + 1 else Verdict.GAP


class FuturesBookRules:
    """USD-M: drop u < lastUpdateId, bridge U <= id <= u, then pu == previous u.

    A snapshot taken between two events (its id is the previous event's `u`) is bridged by
    the next event's `pu` as well: ids are shared by all symbols, so that event's `U` is above
    the snapshot's id and the documented test alone would refetch forever in a quiet market."""

    snapshot_from_rest = True

    def bridge(self, snapshot_id: int, delta: Any) -> Verdict:
        if delta.last_id < snapshot_id:
            return Verdict.DROP
        if delta.first_id <= snapshot_id or delta.prev_id == snapshot_id:
            return Verdict.APPLY
        return Verdict.GAP

    def follow(self, last_id: int, delta: Any) -> Verdict:
        if delta.last_id <= last_id:
            return Verdict.DROP
        return Verdict.APPLY if delta.prev_id == last_id else Verdict.GAP


class BinanceVenue(Venue):
    spec = SPEC
    book_rules = SpotBookRules()
    depth_path = "/api/v3/depth"
    info_path = "/api/v3/exchangeInfo"
    snapshot_limit = 1000
    futures = False

    def stream_name(self, channel: Channel, venue_symbol: str) -> str:
        return f"{venue_symbol.lower()}@{channel.native}"

    def connect_url(self, ws_url: str) -> str:
        return ws_url.rstrip("/") + "/stream"

    def requests(self, streams: Sequence[str], first_id: int, *, subscribe: bool) -> list[Request]:
        per = self.spec.limits.streams_per_request
        method = "SUBSCRIBE" if subscribe else "UNSUBSCRIBE"
        out = []
        for n, i in enumerate(range(0, len(streams), per)):
            chunk = tuple(streams[i : i + per])
            rid = first_id + n
            text = _encode({"method": method, "params": chunk, "id": rid})
            out.append(Request(rid, text, chunk, subscribe))
        return out

    def list_request(self, request_id: int) -> Request:
        text = _encode({"method": "LIST_SUBSCRIPTIONS", "id": request_id})
        return Request(request_id, text, ())

    def instruments_url(self, rest_url: str) -> str:
        return rest_url.rstrip("/") + self.info_path

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        out = []
        for s in _info.decode(body).symbols:
            tick = next((f.tickSize for f in s.filters if f.filterType == "PRICE_FILTER"), None)
            step = next((f.stepSize for f in s.filters if f.filterType == "LOT_SIZE"), None)
            out.append(
                Instrument(s.symbol, s.baseAsset, s.quoteAsset, decimals(tick), decimals(step))
            )
        return out

    def snapshot_url(self, rest_url: str, venue_symbol: str) -> str | None:
        return (
            f"{rest_url.rstrip('/')}{self.depth_path}?symbol={venue_symbol}"
            f"&limit={self.snapshot_limit}"
        )

    def parse_snapshot(self, body: bytes) -> BookSnapshot:
        snap = _snapshot.decode(body)
        return BookSnapshot(snap.lastUpdateId, snap.bids, snap.asks, snap.E * 1_000_000)

    def session(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> BinanceSession:
        return BinanceSession(routes, sink, events)

    def simulator(self, **options: Any) -> Any:
        from adapters.binance.simulator import BinanceSim

        return BinanceSim(futures=self.futures, **options)


VENUE = BinanceVenue()


USDM_SPEC = msgspec.structs.replace(
    SPEC,
    name="binance-usdm",
    exchange_id=7,
    ws_url="wss://fstream.binance.com",
    rest_url="https://fapi.binance.com",
    # The server pings every 3 minutes and wants a pong within 10.
    heartbeat=Heartbeat(idle=30.0, timeout=10.0),
    limits=msgspec.structs.replace(SPEC.limits, requests_per_second=7.0),  # venue: 10/s
)


class BinanceUsdmVenue(BinanceVenue):
    """USD-M futures: same frames plus `pu` continuity in the diff depth stream."""

    spec = USDM_SPEC
    book_rules = FuturesBookRules()  # type: ignore[assignment]
    depth_path = "/fapi/v1/depth"
    info_path = "/fapi/v1/exchangeInfo"
    futures = True


USDM_VENUE = BinanceUsdmVenue()
