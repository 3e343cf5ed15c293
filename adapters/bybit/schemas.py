"""Bybit v5 public (spot, linear) wire types: only the fields WSM uses, ignoring the rest.

Every market-data frame is `{"topic", "type": "snapshot"|"delta", "ts", "data", ...}`; the
key order differs between spot and linear, so nothing relies on it. Prices, sizes and spot
trade ids are decimal strings, decoded straight into floats and ints (`strict=False`); the
instrument's decimals make the floats exact again (see engine.records).
"""

from __future__ import annotations

from typing import Any

from msgspec import Raw, Struct

Levels = list[tuple[float, float]]


class BybitBookData(
    Struct, gc=False, rename={"last_id": "u", "bids": "b", "asks": "a", "symbol": "s"}
):
    """`data` of `orderbook.{depth}.{symbol}`: a snapshot or a delta, as the book sync takes
    it. `u` rises by one per message of a topic (continuity); `seq` is the cross sequence,
    shared across depths, which orders but does not chain."""

    symbol: str
    bids: Levels
    asks: Levels
    last_id: int
    seq: int = 0
    first_id: int = 0  # unused: continuity is u == previous u + 1
    prev_id: int = -1


class BybitSpotTrade(Struct, gc=False):
    """One spot trade: `i` is a decimal string, numbered +1 per trade of a symbol."""

    T: int  # ms
    S: str  # the taker's side: "Buy" | "Sell"
    p: float
    v: float
    i: int
    seq: int = 0


class BybitLinearTrade(Struct, gc=False):
    """One derivatives trade: `i` is a UUID, so the record's trade id is 0; `seq` (shared by
    the trades of one match) orders them."""

    T: int
    S: str
    p: float
    v: float
    i: str
    seq: int = 0


# Data frames. The session derives one tagged subclass per subscribed topic (tag = the topic),
# so one decode both routes and parses.
class BybitFrame(Struct, tag_field="topic", gc=False):
    pass


class BybitBookFrame(BybitFrame):
    type: str  # "snapshot" | "delta"
    ts: int  # ms, when the system generated the data
    data: BybitBookData
    cts: int = 0  # ms, the matching engine's time (lines up with the trades' T)


class BybitSpotTradeFrame(BybitFrame):
    ts: int
    data: list[BybitSpotTrade]


class BybitLinearTradeFrame(BybitFrame):
    ts: int
    data: list[BybitLinearTrade]


class BybitNoFrame(BybitFrame, tag=""):
    """Keeps the union non-empty while nothing is subscribed; the required field that no
    frame has makes every frame fail it, so control messages still take the control path."""

    never_sent: int


class BybitControlMsg(Struct):
    """Anything that is not a frame of a subscribed topic: acks, errors, pongs, and data
    frames that did not decode. Loosely typed so the slow path can say what it was."""

    op: Any = None
    success: Any = None
    ret_msg: Any = None
    req_id: Any = None
    conn_id: Any = None
    topic: Any = None
    type: Any = None
    data: Raw = Raw(b"null")


class BybitPriceFilter(Struct):
    tickSize: str


class BybitLotSizeFilter(Struct):
    basePrecision: str = ""  # spot
    qtyStep: str = ""  # derivatives


class BybitInstrument(Struct):
    symbol: str
    baseCoin: str
    quoteCoin: str
    priceFilter: BybitPriceFilter
    lotSizeFilter: BybitLotSizeFilter
    status: str = "Trading"
    contractType: str = ""  # derivatives: "LinearPerpetual", "LinearFutures"


class BybitInstrumentsResult(Struct, rename={"instruments": "list"}):
    instruments: list[BybitInstrument] = []
    category: str = ""
    nextPageCursor: str = ""


class BybitInstrumentsResponse(Struct):
    retCode: int
    retMsg: str = ""
    result: BybitInstrumentsResult | None = None
