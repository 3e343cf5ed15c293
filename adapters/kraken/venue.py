"""Kraken Spot WebSocket v2 market data: the declarative venue spec, request builders, the
AssetPairs REST parser and book rules (continuity by the venue's CRC32 checksum)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from adapters.kraken.parse import (
    ACK_BITS,
    DEPTH,
    KrakenBookDelta,
    KrakenSession,
    LevelTexts,
    truncate,
)
from adapters.kraken.schemas import KrakenAssetPairs
from engine.book import Book
from engine.errors import VenueRejection
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

PING = b'{"method":"ping"}'
ASSET_PAIRS_PATH = "/0/public/AssetPairs"
# REST (and v1) spell some assets the ISO 4217 way; WebSocket v2 uses the common names.
V2_NAMES = {"XBT": "BTC"}

SPEC = VenueSpec(
    name="kraken",
    exchange_id=4,
    ws_url="wss://ws.kraken.com/v2",
    rest_url="https://api.kraken.com",
    # `heartbeat` frames come about once a second on a subscribed connection; after 5 s of
    # silence we send the venue's application ping and give up 5 s later without its pong.
    heartbeat=Heartbeat(idle=5.0, timeout=5.0, ping=PING),
    limits=Limits(
        # Kraken publishes no fixed numbers for public v2 market data (its message limit is
        # "dynamic"): these are conservative choices of ours, enforced alike by the simulator.
        streams_per_connection=200,
        streams_per_request=50,  # pairs of one channel per subscribe message
        requests_per_second=5.0,
        # "150 connection attempts per rolling 10 minutes" as third parties quote it
        budget=20,
        budget_per_second=0.25,
    ),
    channels=(
        Channel("trades", Kind.TRADE, "trade"),
        Channel("ticker", Kind.BBO, "ticker"),
        Channel("orderbook", Kind.BOOK_LEVEL, "book"),
    ),
)

_asset_pairs = msgspec.json.Decoder(KrakenAssetPairs)
_encode = msgspec.json.Encoder().encode


def v2_name(asset: str) -> str:
    return V2_NAMES.get(asset, asset)


class KrakenBookRules:
    """Books come from the WebSocket snapshot and have no sequence: ids are the session's
    (`connection << 40 | message number`, see parse.py), so an update older than the book
    is dropped, which also drops an old connection's late updates after a newer connection's
    snapshot took the book over. Integrity is the venue's checksum (`verify`)."""

    snapshot_from_rest = False

    def __init__(self) -> None:
        # the checksum text of each book's levels (a worker keeps few books: never pruned)
        self.texts: dict[Book, LevelTexts] = {}

    def bridge(self, snapshot_id: int, delta: Any) -> Verdict:
        return Verdict.DROP if delta.last_id < snapshot_id else Verdict.APPLY

    def follow(self, last_id: int, delta: Any) -> Verdict:
        return Verdict.DROP if delta.last_id < last_id else Verdict.APPLY

    def verify(self, book: Book, message: Any) -> bool:
        """After a message is applied: cut the book to the subscribed depth (updates only:
        a snapshot never exceeds it), then compare the venue's checksum with the book's."""
        pd, qd = message.price_decimals, message.qty_decimals
        texts = self.texts.get(book)
        if type(message) is KrakenBookDelta:
            truncate(book, message)
            if texts is not None and texts.precision == (pd, qd):
                texts.update(message)
                return bool(texts.checksum(book) == message.checksum)
        texts = self.texts[book] = LevelTexts(book, pd, qd)  # a snapshot: every level anew
        return bool(texts.checksum(book) == message.checksum)


class KrakenVenue(Venue):
    spec = SPEC
    book_rules = KrakenBookRules()

    def stream_name(self, channel: Channel, venue_symbol: str) -> str:
        return f"{channel.native}:{venue_symbol}"

    def connect_url(self, ws_url: str) -> str:
        return ws_url

    def normalize_symbol(self, text: str) -> str:
        """`BTC/USD`, `xbt/usd`, `BTC-USD` -> `BTC-USD` (Kraken's XBT is BTC)."""
        base, _, quote = super().normalize_symbol(text).partition("-")
        return f"{v2_name(base)}-{v2_name(quote)}" if quote else v2_name(base)

    def requests(self, streams: Sequence[str], first_id: int, *, subscribe: bool) -> list[Request]:
        """One channel per message, up to `streams_per_request` pairs. The venue answers each
        pair on its own with the message's req_id, which says how many pairs it has."""
        by_channel: dict[str, list[str]] = {}
        for name in streams:
            native, _, pair = name.partition(":")
            by_channel.setdefault(native, []).append(pair)
        per = self.spec.limits.streams_per_request
        method = "subscribe" if subscribe else "unsubscribe"
        out: list[Request] = []
        for native, pairs in by_channel.items():
            for i in range(0, len(pairs), per):
                chunk = pairs[i : i + per]
                rid = first_id + len(out)
                params: dict[str, Any] = {"channel": native, "symbol": chunk}
                if native == "book":
                    params["depth"] = DEPTH
                elif native == "ticker":
                    params["event_trigger"] = "bbo"  # on every best bid/offer change
                if subscribe:
                    params["snapshot"] = True  # books need it; trades: the missed ones
                text = _encode(
                    {"method": method, "params": params, "req_id": rid << ACK_BITS | len(chunk)}
                )
                names = tuple(f"{native}:{p}" for p in chunk)
                out.append(Request(rid, text, names, subscribe))
        return out

    def instruments_url(self, rest_url: str) -> str:
        return rest_url.rstrip("/") + ASSET_PAIRS_PATH

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        answer = _asset_pairs.decode(body)
        if answer.error:
            raise VenueRejection("kraken", None, "; ".join(answer.error))
        out = []
        for p in answer.result.values():
            base, slash, quote = p.wsname.partition("/")
            if not slash or p.pair_decimals < 0 or p.lot_decimals < 0:
                continue  # no WebSocket name (dark pools) or no precision: not streamable
            base, quote = v2_name(base), v2_name(quote)
            out.append(Instrument(f"{base}/{quote}", base, quote, p.pair_decimals, p.lot_decimals))
        return out

    def session(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> KrakenSession:
        return KrakenSession(routes, sink, events)

    def simulator(self, **options: Any) -> Any:
        from adapters.kraken.simulator import KrakenSim

        return KrakenSim(**options)


VENUE = KrakenVenue()
