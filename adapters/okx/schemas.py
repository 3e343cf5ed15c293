"""OKX v5 public wire types: only the fields WSM uses, ignoring the rest.

Every push is `{"arg":{"channel","instId"},"action"?,"data":[{..}]}` and every answer to a
request `{"event",..}`: both decode into one `OkxMsg`, whose `data` items are one struct with
the fields of every channel (trades, tickers, books, books5, bbo-tbt), so that one typed decode
parses any frame. Numbers come as decimal strings and decode straight into floats and ints
(`strict=False`), except book levels: their text is kept, because the book checksum is computed
over the levels' original text.
"""

from __future__ import annotations

from msgspec import Struct

from engine.venue import BookSnapshot

# [price, size, "0" (deprecated), number of orders], all strings
Level = tuple[str, str, str, str]


class OkxArg(Struct, gc=False):
    channel: str
    instId: str = ""


class OkxData(Struct, gc=False):
    ts: int = 0  # ms
    # trades
    tradeId: int = 0
    px: float = 0.0
    sz: float = 0.0
    side: str = ""  # the taker's side: "buy" | "sell"
    # tickers
    bidPx: float = 0.0
    bidSz: float = 0.0
    askPx: float = 0.0
    askSz: float = 0.0
    # books, books5, bbo-tbt
    asks: list[Level] = []
    bids: list[Level] = []
    checksum: int = 0  # signed CRC32 of the top 25 levels; 0: none
    seqId: int = 0  # absent before OKX added it (2022 recordings): 0
    prevSeqId: int = 0  # -1 in a snapshot


class OkxMsg(Struct, gc=False):
    arg: OkxArg | None = None
    action: str = ""  # books: "snapshot" | "update"; absent on other channels
    data: list[OkxData] = []
    # answers and notices
    event: str = ""
    code: str = ""
    msg: str = ""
    id: str = ""


class OkxOther(Struct):
    """A frame that did not decode as `OkxMsg`: loosely typed, to say what it was."""

    arg: object = None
    event: object = None
    code: object = None
    msg: object = None
    id: object = None


class OkxBookDelta(Struct, gc=False):
    """One `books` update for `engine.book.BookSync`, with the levels' text for the checksum."""

    first_id: int
    last_id: int
    prev_id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    bid_text: list[Level]
    ask_text: list[Level]
    checksum: int


class OkxBookSnapshot(BookSnapshot, frozen=True, kw_only=True):
    """A `books` snapshot (or a books5 push) with the levels' text. `bid_text` None: the
    channel keeps no text (books5: no checksum). `rest`: the REST book (`GET
    /api/v5/market/books`), which carries neither checksum nor `seqId`: its text is kept so
    that the checksums of the updates after it check it."""

    bid_text: list[Level] | None = None
    ask_text: list[Level] | None = None
    checksum: int = 0
    rest: bool = False


class OkxInstrument(Struct):
    instId: str
    baseCcy: str = ""
    quoteCcy: str = ""
    tickSz: str = ""
    lotSz: str = ""
    state: str = "live"
    instType: str = "SPOT"


class OkxInstruments(Struct):
    code: str
    msg: str = ""
    data: list[OkxInstrument] = []


class OkxRestBook(Struct):
    """`GET /api/v5/market/books` data: `asks`, `bids` (levels as in the WebSocket, text kept
    for the checksum) and `ts` (ms), the book's generation time. No `seqId`, no checksum."""

    asks: list[Level]
    bids: list[Level]
    ts: int = 0


class OkxRestBooks(Struct):
    code: str
    msg: str = ""
    data: list[OkxRestBook] = []
