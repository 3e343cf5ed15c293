"""KuCoin spot wire types: only the fields WSM uses, ignoring the rest.

KuCoin sends prices, sizes and most sequence numbers as decimal strings; they are decoded
straight into floats and ints (`strict=False`), and the symbol's decimals make the floats exact
again (see engine.records).
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta, Raw, Struct

Levels = list[tuple[float, float]]
Changes = list[tuple[float, float, int]]  # [price, size, sequence of this change]

PositiveMs = Annotated[int, Meta(gt=0)]


class KucoinMatchMsg(Struct, gc=False):
    sequence: int  # in the symbol's sequence space (shared with level2 and ticker)
    side: str  # the taker's side: "buy" | "sell"
    price: float
    size: float
    time: int  # ns


class KucoinTickerMsg(Struct, gc=False):
    sequence: int
    bestBid: float
    bestBidSize: float
    bestAsk: float
    bestAskSize: float
    time: int = 0  # ms


class KucoinChanges(Struct, gc=False):
    asks: Changes
    bids: Changes


class KucoinLevel2Msg(
    Struct, gc=False, rename={"first_id": "sequenceStart", "last_id": "sequenceEnd"}
):
    """One `trade.l2update`. The session fills `bids` and `asks` (what the engine's book sync
    applies) from `changes`, leaving out the sequence steps (price "0")."""

    first_id: int
    last_id: int
    changes: KucoinChanges
    time: int = 0  # ms; KuCoin added it in 2022
    bids: Any = ()  # Levels, set by the session (a shared empty default: no allocation)
    asks: Any = ()
    prev_id: int = -1  # unused: continuity is sequenceStart <= previous sequenceEnd + 1


# Data frames: {"type":"message","topic":"/market/match:BTC-USDT","subject":..,"data":{..}}.
# The session derives one tagged subclass per subscribed topic (tag = the topic), so one decode
# both routes and parses.
class KucoinFrame(Struct, tag_field="topic", gc=False):
    pass


class KucoinMatchFrame(KucoinFrame):
    data: KucoinMatchMsg


class KucoinTickerFrame(KucoinFrame):
    data: KucoinTickerMsg


class KucoinLevel2Frame(KucoinFrame):
    data: KucoinLevel2Msg


class KucoinNoFrame(KucoinFrame, tag=""):
    """Keeps the union non-empty while nothing is subscribed. Alone it would stand for a plain
    struct, which decodes anything without a `topic`: the required field that no frame has
    makes every frame fail it instead, so control messages still take the control path."""

    never_sent: int


class KucoinControlMsg(Struct):
    """Anything that is not a frame of a subscribed topic: welcome, ack, pong, error, notices,
    and data frames that did not decode."""

    type: str = ""
    id: int | str | None = None
    topic: str | None = None
    code: int | str | None = None
    data: Raw = Raw(b"null")


class KucoinInstanceServer(Struct):
    endpoint: str
    pingInterval: PositiveMs
    pingTimeout: PositiveMs
    protocol: str = "websocket"
    encrypt: bool = True


class KucoinBullet(Struct):
    token: str
    instanceServers: list[KucoinInstanceServer]


class KucoinBulletResponse(Struct):
    code: str
    data: KucoinBullet | None = None
    msg: str = ""


class KucoinSnapshot(Struct):
    sequence: int
    bids: Levels
    asks: Levels
    time: int = 0  # ms


class KucoinSnapshotResponse(Struct):
    code: str
    data: KucoinSnapshot | None = None
    msg: str = ""


class KucoinSymbol(Struct):
    symbol: str
    baseCurrency: str
    quoteCurrency: str
    baseIncrement: str
    priceIncrement: str
    enableTrading: bool = True


class KucoinSymbolsResponse(Struct):
    code: str
    data: list[KucoinSymbol] | None = None
    msg: str = ""
