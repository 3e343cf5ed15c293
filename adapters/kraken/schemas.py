"""Kraken Spot WebSocket v2 wire types: only the fields WSM uses, ignoring the rest.

Market-data frames are `{"channel", "type", "data": [...]}`; `channel` is the tag of one union,
so one decode both parses and dispatches. Prices and quantities are JSON numbers printed at the
pair's full precision (`64525.0`, `0.00005100`): they decode straight into floats, and the
book checksum re-creates their text from the precision (see `adapters.kraken.parse`).
Answers to requests (`{"method": ...}`) have no `channel` and take the control path.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import Struct


class KrakenLevel(Struct, gc=False):
    price: float
    qty: float  # absolute; 0 removes the level


class KrakenBookData(Struct, gc=False):
    symbol: str
    bids: list[KrakenLevel]
    asks: list[KrakenLevel]
    checksum: int  # CRC32 of the top 10 levels, unsigned
    timestamp: str = ""


class KrakenTrade(Struct, gc=False):
    symbol: str
    side: str  # the taker's side: "buy" | "sell"
    price: float
    qty: float
    trade_id: int  # sequential per pair
    timestamp: str


class KrakenTicker(Struct, gc=False):
    symbol: str
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    timestamp: str = ""  # in 2026 frames, not in 2024 ones


class KrakenStatus(Struct, gc=False):
    system: str  # online | maintenance | cancel_only | post_only | limit_only
    version: str = ""
    api_version: str = ""
    connection_id: int = 0  # can exceed 2**53: an int, never a double


class KrakenMsg(Struct, tag_field="channel", gc=False):
    pass


class KrakenBookMsg(KrakenMsg, tag="book"):
    type: Literal["snapshot", "update"]
    data: list[KrakenBookData]


class KrakenTradeMsg(KrakenMsg, tag="trade"):
    type: Literal["snapshot", "update"]
    data: list[KrakenTrade]


class KrakenTickerMsg(KrakenMsg, tag="ticker"):
    type: Literal["snapshot", "update"]
    data: list[KrakenTicker]


class KrakenHeartbeatMsg(KrakenMsg, tag="heartbeat"):
    pass


class KrakenStatusMsg(KrakenMsg, tag="status"):
    data: list[KrakenStatus]
    type: str = "update"


KrakenFrame = (
    KrakenBookMsg | KrakenTradeMsg | KrakenTickerMsg | KrakenHeartbeatMsg | KrakenStatusMsg
)


class KrakenResult(Struct):
    channel: Any = None
    symbol: Any = None


class KrakenControl(Struct):
    """Answers to requests (`subscribe`, `unsubscribe`, `pong`) and anything that is not a
    well-formed market-data frame. Every field is optional and loosely typed so that the slow
    path can say what it was."""

    method: Any = None
    success: Any = None
    result: KrakenResult | None = None
    error: Any = None
    req_id: Any = None
    symbol: Any = None
    channel: Any = None


class KrakenPair(Struct):
    """One entry of REST `/0/public/AssetPairs`."""

    altname: str = ""
    wsname: str = ""  # "XBT/USD": the v1 spelling; v2 names Bitcoin BTC
    base: str = ""
    quote: str = ""
    pair_decimals: int = -1  # price precision
    lot_decimals: int = -1  # quantity precision
    status: str = "online"


class KrakenAssetPairs(Struct):
    error: list[str]
    result: dict[str, KrakenPair] = {}
