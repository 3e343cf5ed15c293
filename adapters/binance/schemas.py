"""Binance spot (and USD-M futures) wire types: only the fields WSM uses, ignoring the rest.

Numbers that Binance sends as decimal strings are decoded straight into floats
(`strict=False`); the symbol's decimals make them exact again (see engine.records).
"""

from __future__ import annotations

from typing import Any

from msgspec import Raw, Struct

Levels = list[tuple[float, float]]


class BinanceTradeMsg(Struct, gc=False):
    E: int  # event time, ms
    t: int  # trade id
    p: float
    q: float
    T: int  # trade time, ms
    m: bool  # buyer is the maker (the taker sold)


class BinanceAggTradeMsg(Struct, gc=False):
    E: int
    a: int  # aggregate trade id
    p: float
    q: float
    T: int
    m: bool


class BinanceBookTickerMsg(Struct, gc=False):
    u: int  # order book update id
    b: float
    B: float
    a: float
    A: float
    E: int = 0  # futures only; spot's bookTicker has no event time
    T: int = 0


class BinanceDepthMsg(
    Struct,
    gc=False,
    rename={"first_id": "U", "last_id": "u", "prev_id": "pu", "bids": "b", "asks": "a"},
):
    E: int
    first_id: int
    last_id: int
    bids: Levels
    asks: Levels
    prev_id: int = -1  # futures only: the previous event's last id
    T: int = 0


class BinanceShutdownMsg(Struct):
    E: int = 0


# Combined-stream frames: {"stream": "<name>", "data": {...}}. The engine derives one tagged
# subclass per subscribed stream (tag = the stream name), so one decode routes and parses.
class BinanceFrame(Struct, tag_field="stream", gc=False):
    pass


class BinanceTradeFrame(BinanceFrame):
    data: BinanceTradeMsg


class BinanceAggTradeFrame(BinanceFrame):
    data: BinanceAggTradeMsg


class BinanceBookTickerFrame(BinanceFrame):
    data: BinanceBookTickerMsg


class BinanceDepthFrame(BinanceFrame):
    data: BinanceDepthMsg


class BinanceShutdownFrame(BinanceFrame, tag="!serverShutdown"):
    data: BinanceShutdownMsg


class BinanceControlMsg(Struct):
    """Anything that is not a known stream frame: acks, errors, a raw-stream shutdown."""

    id: int | str | None = None
    result: Any = None
    code: int | None = None
    msg: str | None = None
    stream: str | None = None
    e: str | None = None
    data: Raw = Raw(b"null")


class BinanceDepthSnapshot(Struct):
    lastUpdateId: int
    bids: Levels
    asks: Levels
    E: int = 0


class BinanceFilter(Struct):
    filterType: str
    tickSize: str | None = None
    stepSize: str | None = None


class BinanceSymbol(Struct):
    symbol: str
    baseAsset: str
    quoteAsset: str
    filters: list[BinanceFilter]
    status: str = "TRADING"


class BinanceExchangeInfo(Struct):
    symbols: list[BinanceSymbol]
