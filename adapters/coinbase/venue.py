"""Coinbase Advanced Trade market data: the declarative venue spec, request builders, the
products REST parser and book rules."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from adapters.coinbase.parse import CoinbaseSession
from adapters.coinbase.schemas import CoinbaseProducts
from engine.records import Kind
from engine.streams import RouteTable
from engine.venue import (
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

PRODUCTS_PATH = "/api/v3/brokerage/market/products"
# Observed, not documented: a connection may carry at most 30 level2 products; the 31st is
# refused with "too many L2 streams requested in a single session".
L2_PER_CONNECTION = 30

SPEC = VenueSpec(
    name="coinbase",
    exchange_id=2,
    ws_url="wss://advanced-trade-ws.coinbase.com",
    rest_url="https://api.coinbase.com",
    # The `heartbeats` channel (subscribed on every connection) sends a frame every second;
    # after 5 s of silence we ping and give up 5 s later.
    heartbeat=Heartbeat(idle=5.0, timeout=5.0),
    limits=Limits(
        streams_per_connection=1000,
        streams_per_request=100,  # products of one channel per subscribe message
        # 8 unauthenticated messages per second per IP address: half of it, for every
        # connection together (our pings count too)
        requests_per_second=4.0,
        requests_shared=True,
        # 8 connections per second per IP address: a bucket of 4 refilled at 4/s never lets
        # more than 8 start within one second
        budget=4,
        budget_per_second=4.0,
        subscribe_deadline=5.0,  # met by `setup_requests`
        channel_streams_per_connection={"level2": L2_PER_CONNECTION},
        max_message_bytes=16 << 20,  # the full-depth BTC-USD snapshot alone is 5 MB
    ),
    channels=(
        Channel("trades", Kind.TRADE, "market_trades"),
        Channel("ticker", Kind.BBO, "ticker"),
        Channel("orderbook", Kind.BOOK_LEVEL, "level2"),
    ),
)

_products = msgspec.json.Decoder(CoinbaseProducts)
_encode = msgspec.json.Encoder().encode


def decimals(step: str) -> int:
    """Decimals of an increment such as "0.01" (-> 2) or "0.00000001" (-> 8)."""
    try:
        exponent = Decimal(step).normalize().as_tuple().exponent
    except InvalidOperation:
        return 0
    return max(0, -exponent) if isinstance(exponent, int) else 0


class CoinbaseBookRules:
    """Books come from the WebSocket snapshot and have no per-product sequence: continuity is
    the connection's `sequence_num`, checked by the session (a break resynchronises every book
    of the connection). Ids are `connection << 40 | sequence_num` (see parse.py): an update
    older than the book is dropped, which also drops an old connection's late updates after a
    newer connection's snapshot took the book over."""

    snapshot_from_rest = False

    def bridge(self, snapshot_id: int, delta: Any) -> Verdict:
        return Verdict.DROP if delta.last_id < snapshot_id else Verdict.APPLY

    def follow(self, last_id: int, delta: Any) -> Verdict:
        return Verdict.DROP if delta.last_id < last_id else Verdict.APPLY


class CoinbaseVenue(Venue):
    spec = SPEC
    book_rules = CoinbaseBookRules()

    def stream_name(self, channel: Channel, venue_symbol: str) -> str:
        return f"{channel.native}:{venue_symbol}"

    def connect_url(self, ws_url: str) -> str:
        return ws_url

    def setup_requests(self, first_id: int) -> list[Request]:
        # Heartbeats keep quiet channels open, show missed messages (`heartbeat_counter`) and
        # meet the venue's rule that a connection subscribes within 5 s.
        return [Request(first_id, b'{"type":"subscribe","channel":"heartbeats"}', ())]

    def requests(self, streams: Sequence[str], first_id: int, *, subscribe: bool) -> list[Request]:
        """One channel per message (the venue's rule), up to `streams_per_request` products."""
        by_channel: dict[str, list[str]] = {}
        for name in streams:
            native, _, product = name.partition(":")
            by_channel.setdefault(native, []).append(product)
        per = self.spec.limits.streams_per_request
        kind = "subscribe" if subscribe else "unsubscribe"
        out: list[Request] = []
        for native, products in by_channel.items():
            for i in range(0, len(products), per):
                chunk = products[i : i + per]
                text = _encode({"type": kind, "product_ids": chunk, "channel": native})
                names = tuple(f"{native}:{p}" for p in chunk)
                out.append(Request(first_id + len(out), text, names, subscribe))
        return out

    def instruments_url(self, rest_url: str) -> str:
        return rest_url.rstrip("/") + PRODUCTS_PATH

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        out = []
        for p in _products.decode(body).products:
            if p.product_type != "SPOT" or (p.alias and p.alias != p.product_id):
                continue  # futures; USDC books that the venue serves as their USD alias
            base, dash, quote = p.product_id.partition("-")
            if not dash:
                base, quote = p.base_currency_id, p.quote_currency_id
            price = max(decimals(p.quote_increment), decimals(p.price_increment))
            out.append(Instrument(p.product_id, base, quote, price, decimals(p.base_increment)))
        return out

    def session(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> CoinbaseSession:
        return CoinbaseSession(routes, sink, events)

    def simulator(self, **options: Any) -> Any:
        from adapters.coinbase.simulator import CoinbaseSim

        return CoinbaseSim(**options)


VENUE = CoinbaseVenue()
