"""Bybit v5 public market data, spot (`bybit`) and USDT/USDC perpetuals (`bybit-linear`): the
declarative venue specs, request builders, the instruments-info parser and book rules.

Channels. `trades` is `publicTrade`; `orderbook` is `orderbook.200` (100 ms), `orderbook.50`
(20 ms) is offered natively. `ticker` (best bid and offer) is `orderbook.1`: Bybit's spot
`tickers` carry no bid or ask at all (last price and 24 h statistics only, as the captures
show), and linear `tickers` send bid1/ask1 only inside deltas of changed fields, every 100 ms;
`orderbook.1` is the venue's own top-of-book feed on both, every 10 ms, whole in every message.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from adapters.bybit.parse import BybitSession
from adapters.bybit.schemas import BybitInstrumentsResponse
from engine.errors import VenueRejection
from engine.records import Kind
from engine.streams import RouteTable
from engine.symbols import Market
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

# Bybit answers `{"success":true,"ret_msg":"pong","conn_id":..,"op":"ping"}` (spot; linear adds
# `"req_id"`): the session reports it.
PING = b'{"req_id":"ping","op":"ping"}'

SPEC = VenueSpec(
    name="bybit",
    exchange_id=3,
    ws_url="wss://stream.bybit.com",
    rest_url="https://api.bybit.com",
    # The venue asks for a ping every 20 s and closes a connection without ping or data after
    # about 10 minutes; we ping every 20 s and give up 10 s without the pong.
    heartbeat=Heartbeat(idle=20.0, timeout=10.0, periodic=True, ping=PING),
    limits=Limits(
        # no documented cap for public spot/linear topics per connection: keep them moderate
        streams_per_connection=200,
        streams_per_request=10,  # spot: at most 10 args per subscribe request
        requests_per_second=5.0,  # undocumented for public streams: stay modest
        budget=50,  # at most 500 connections per 5 minutes per domain
        budget_per_second=1.0,
    ),
    channels=(
        Channel("trades", Kind.TRADE, "publicTrade"),
        Channel("ticker", Kind.BBO, "orderbook.1"),
        Channel("orderbook", Kind.BOOK_LEVEL, "orderbook.200"),
        Channel("orderbook.50", Kind.BOOK_LEVEL, "orderbook.50"),
    ),
)

LINEAR_SPEC = msgspec.structs.replace(SPEC, name="bybit-linear", exchange_id=12)

_instruments = msgspec.json.Decoder(BybitInstrumentsResponse)
_encode = msgspec.json.Encoder().encode


def decimals(step: str) -> int:
    """Decimals of a tick or lot step such as "0.01" (-> 2), "0.10" (-> 1) or "1" (-> 0)."""
    try:
        exponent = Decimal(step).normalize().as_tuple().exponent
    except InvalidOperation:
        raise ValueError(f"not a decimal step: {step!r}") from None
    return max(0, -exponent) if isinstance(exponent, int) else 0


class BybitBookRules:
    """Books come from the WebSocket snapshot (one on every subscription). A delta must carry
    `u` = the book's + 1; an older or equal one is dropped (an overlapping connection's), a
    later one is a gap. `seq` is the cross sequence shared across depths: it orders messages
    but does not chain them, so it is not used for continuity."""

    snapshot_from_rest = False

    def bridge(self, snapshot_id: int, delta: Any) -> Verdict:
        return self.follow(snapshot_id, delta)

    def follow(self, last_id: int, delta: Any) -> Verdict:
        u = delta.last_id
        if u <= last_id:
            return Verdict.DROP
        return Verdict.APPLY if u == last_id + 1 else Verdict.GAP


class BybitVenue(Venue):
    spec = SPEC
    book_rules = BybitBookRules()
    category = "spot"
    market = Market.SPOT

    def stream_name(self, channel: Channel, venue_symbol: str) -> str:
        return f"{channel.native}.{venue_symbol}"

    def connect_url(self, ws_url: str) -> str:
        return f"{ws_url.rstrip('/')}/v5/public/{self.category}"

    def requests(self, streams: Sequence[str], first_id: int, *, subscribe: bool) -> list[Request]:
        """Topics of any kind together, at most `streams_per_request` per message."""
        per = self.spec.limits.streams_per_request
        op = "subscribe" if subscribe else "unsubscribe"
        out = []
        for n, i in enumerate(range(0, len(streams), per)):
            chunk = tuple(streams[i : i + per])
            rid = first_id + n
            text = _encode({"req_id": str(rid), "op": op, "args": chunk})
            out.append(Request(rid, text, chunk, subscribe))
        return out

    def instruments_url(self, rest_url: str) -> str:
        return f"{rest_url.rstrip('/')}/v5/market/instruments-info?category={self.category}"

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        answer = _instruments.decode(body)
        if answer.retCode != 0 or answer.result is None:
            raise VenueRejection(self.spec.name, answer.retCode, answer.retMsg or "refused")
        out = []
        for s in answer.result.instruments:
            step = s.lotSizeFilter.basePrecision or s.lotSizeFilter.qtyStep
            if not self.wanted(s.contractType):
                continue
            try:
                price, size = decimals(s.priceFilter.tickSize), decimals(step)
            except ValueError:
                continue  # no exact decimals for it: leave the symbol out rather than guess
            out.append(Instrument(s.symbol, s.baseCoin, s.quoteCoin, price, size, self.market))
        return out

    def wanted(self, contract_type: str) -> bool:
        return True

    def session(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> BybitSession:
        return BybitSession(routes, sink, events, linear=self.category == "linear")

    def simulator(self, **options: Any) -> Any:
        from adapters.bybit.simulator import BybitSim

        return BybitSim(category=self.category, **options)


VENUE = BybitVenue()


class BybitLinearVenue(BybitVenue):
    """USDT and USDC perpetuals: the same protocol; trade ids are UUIDs (records carry 0)."""

    spec = LINEAR_SPEC
    category = "linear"
    market = Market.LINEAR

    def instruments_url(self, rest_url: str) -> str:
        return super().instruments_url(rest_url) + "&limit=1000"

    def wanted(self, contract_type: str) -> bool:
        # dated futures (BTCUSDT-26DEC25) share base and quote with the perpetual
        return contract_type == "LinearPerpetual"


LINEAR_VENUE = BybitLinearVenue()
