"""Coinbase Advanced Trade wire types: only the fields WSM uses, ignoring the rest.

Every market-data frame is an envelope `{"channel", "timestamp", "sequence_num", "events"}`;
`channel` is the tag of one union, so one decode both parses and dispatches. Numbers come as
decimal strings and are decoded straight into floats (`strict=False`); the instrument's
decimals make them exact again (see engine.records). `trade_id` is a decimal string too and
decodes into an int.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import Raw, Struct


class CoinbaseL2Level(Struct, gc=False):
    side: Literal["bid", "offer"]  # drives the book: anything else fails the frame
    event_time: str
    price_level: float
    new_quantity: float  # absolute; 0 removes the level


class CoinbaseL2Event(Struct, gc=False):
    type: Literal["snapshot", "update"]
    product_id: str
    updates: list[CoinbaseL2Level]


class CoinbaseTrade(Struct, gc=False):
    product_id: str
    trade_id: int
    price: float
    size: float
    time: str
    side: str  # the MAKER's side: "SELL" is a buy that lifted the offer (see parse.py)


class CoinbaseTradesEvent(Struct, gc=False):
    type: Literal["snapshot", "update"]
    trades: list[CoinbaseTrade]  # newest first


class CoinbaseTicker(Struct, gc=False):
    product_id: str
    best_bid: float
    best_ask: float
    best_bid_quantity: float = 0.0
    best_ask_quantity: float = 0.0


class CoinbaseTickerEvent(Struct, gc=False):
    tickers: list[CoinbaseTicker]


class CoinbaseHeartbeat(Struct, gc=False):
    heartbeat_counter: int


class CoinbaseSubscriptionsEvent(Struct, gc=False):
    subscriptions: dict[str, list[str]]


class CoinbaseMsg(Struct, tag_field="channel", gc=False):
    timestamp: str
    sequence_num: int


class CoinbaseL2Msg(CoinbaseMsg, tag="l2_data"):
    events: list[CoinbaseL2Event]


class CoinbaseTradesMsg(CoinbaseMsg, tag="market_trades"):
    events: list[CoinbaseTradesEvent]


class CoinbaseTickerMsg(CoinbaseMsg, tag="ticker"):
    events: list[CoinbaseTickerEvent]


class CoinbaseHeartbeatsMsg(CoinbaseMsg, tag="heartbeats"):
    events: list[CoinbaseHeartbeat]


class CoinbaseSubscriptionsMsg(CoinbaseMsg, tag="subscriptions"):
    events: list[CoinbaseSubscriptionsEvent]


CoinbaseFrame = (
    CoinbaseL2Msg
    | CoinbaseTradesMsg
    | CoinbaseTickerMsg
    | CoinbaseHeartbeatsMsg
    | CoinbaseSubscriptionsMsg
)


class CoinbaseOther(Struct):
    """Anything that is not a known, well-formed frame: errors, unknown channels, bad frames.
    Every field is optional and loosely typed so that the slow path can say what it was."""

    type: Any = None
    message: Any = None
    reason: Any = None
    channel: Any = None
    sequence_num: Any = None
    events: Raw = Raw(b"null")


class CoinbaseProduct(Struct):
    product_id: str
    base_currency_id: str = ""
    quote_currency_id: str = ""
    base_increment: str = ""
    quote_increment: str = ""
    price_increment: str = ""
    product_type: str = "SPOT"
    alias: str = ""


class CoinbaseProducts(Struct):
    products: list[CoinbaseProduct]
