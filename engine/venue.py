"""The contract between the engine and an exchange adapter.

An adapter (one package under `adapters/`, registered in the `wsm.adapters` entry-point group)
exposes a `Venue`: a frozen declarative `VenueSpec` (URLs, heartbeat, limits, channels), request
builders, REST parsers, book rules, and a `Session` per physical connection that turns frames
into records. Adapters know the wire format; sockets, retries and timing stay in the engine.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import msgspec
from msgspec import Meta

from engine.records import Kind
from engine.symbols import Market

if TYPE_CHECKING:
    from engine.streams import RouteTable

PositiveFloat = Annotated[float, Meta(gt=0)]
PositiveInt = Annotated[int, Meta(gt=0)]


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """How liveness is judged: ping after `idle` seconds without any frame (or every `idle`
    seconds when `periodic`), and declare the connection dead `timeout` seconds later without
    a pong. `ping` is the venue's application-level ping text (None: a WebSocket PING frame);
    `pong` recognises its answer."""

    idle: PositiveFloat
    timeout: PositiveFloat
    periodic: bool = False
    ping: bytes | None = None
    pong: bytes | None = None


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    streams_per_connection: PositiveInt
    streams_per_request: PositiveInt
    requests_per_second: PositiveFloat  # client-to-venue messages per connection
    budget: PositiveInt  # connection attempts + REST snapshots per exchange: bucket size
    budget_per_second: PositiveFloat  # ... and refill rate
    max_lifetime: float | None = None  # the venue cuts connections after this many seconds
    rollover_margin: float = 300.0  # roll over this long before `max_lifetime`
    subscribe_deadline: float | None = None  # first subscribe must arrive within this
    # `requests_per_second` counts the messages of every connection of the exchange together
    # (a per-IP limit), not of each connection alone
    requests_shared: bool = False
    # at most this many streams of one channel (native name) per connection, within
    # `streams_per_connection` (a venue that caps its costly channels, e.g. order books)
    channel_streams_per_connection: dict[str, PositiveInt] = {}
    max_message_bytes: PositiveInt | None = None  # the venue's largest frame, if above the default


class Channel(msgspec.Struct, frozen=True):
    """A normalized (`trades`, `ticker`, `orderbook`) or venue-native channel."""

    name: str
    kind: Kind  # the record kind this channel produces (BOOK_LEVEL for books)
    native: str  # the venue's own name for it


class VenueSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    exchange_id: Annotated[int, Meta(ge=1, le=63)]
    ws_url: str
    rest_url: str
    heartbeat: Heartbeat
    limits: Limits
    channels: tuple[Channel, ...]
    # The venue greets every new connection (KuCoin's `welcome`) and wants nothing sent before
    # the greeting: requests wait for `SessionEvents.on_welcome` (at most the connect timeout).
    welcome: bool = False

    def channel(self, name: str) -> Channel | None:
        for ch in self.channels:
            if name in (ch.name, ch.native):
                return ch
        return None


class Prepared(msgspec.Struct, frozen=True):
    """Where and how to connect, decided just before each connection attempt."""

    url: str
    heartbeat: Heartbeat | None = None  # overrides the spec's (e.g. from a token response)


class Instrument(msgspec.Struct, frozen=True):
    venue_symbol: str
    base: str
    quote: str
    price_decimals: int
    size_decimals: int
    market: Market = Market.SPOT

    @property
    def symbol(self) -> str:
        return f"{self.base}-{self.quote}"


class Request(msgspec.Struct, frozen=True):
    """One control message to send: its id (for the ack), text and the streams it covers."""

    id: int
    text: bytes
    streams: tuple[str, ...]
    subscribe: bool = True


class Level(Protocol):
    def __getitem__(self, i: int) -> float: ...


class BookSnapshot(msgspec.Struct, frozen=True):
    update_id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    exch_ts: int = 0


class Verdict(enum.IntEnum):
    DROP = 0  # already applied (stale or a duplicate from an overlapping connection)
    APPLY = 1
    GAP = 2  # updates were missed: the book must be resynchronised


class BookRules(Protocol):
    """A venue's book-integrity rules. Deltas are the adapter's decoded structs with
    `first_id`, `last_id`, `prev_id`, `bids` and `asks` attributes.

    A venue whose messages carry a checksum of the book also defines
    `verify(book: engine.book.Book, message) -> bool`: called after each delta is applied and
    after each snapshot (`message` is what the session passed: its own struct may carry the
    checksum and the levels' exact text); False writes a `CHECKSUM_MISMATCH` gap and resyncs.

    A WebSocket-snapshot venue (`snapshot_from_rest` False) whose snapshot may not come can
    also define `rest_fallback_after: int | None` and
    `bridge_rest(snapshot: BookSnapshot, delta, exch_ts: int) -> Verdict`: a book that buffered
    that many deltas since its subscription became active, with no snapshot, fetches one from
    `Venue.snapshot_url` (once, through the worker's snapshot fetch), and the deltas bridge to
    it by `bridge_rest` instead of `bridge` (a REST answer may carry no update id; `exch_ts` is
    the delta's exchange time in ns). Absent or None: no fallback."""

    snapshot_from_rest: bool

    def bridge(self, snapshot_id: int, delta: Any) -> Verdict: ...
    def follow(self, last_id: int, delta: Any) -> Verdict: ...


class Sink(Protocol):
    """Where records go: the ring writer in a worker, a list in tests."""

    def append(
        self,
        kind: int,
        side: int,
        flags: int,
        symbol: int,
        exch_ts: int,
        recv_ts: int,
        price: float,
        size: float,
        ref: int,
        aux: int,
        extra: int = 0,
        /,
    ) -> None: ...

    def append_bbo(
        self,
        flags: int,
        symbol: int,
        exch_ts: int,
        recv_ts: int,
        bid_price: float,
        bid_size: float,
        ask_price: float,
        ask_size: float,
        /,
    ) -> None: ...


class SessionEvents(Protocol):
    """What a session reports to the engine (never per data message)."""

    def on_ack(
        self, request_id: int | None, ok: bool, code: int | str | None, message: str
    ) -> None:
        """The venue answered request `request_id` (None: the oldest request still unanswered,
        for venues whose answers carry no id and come in the order of the requests)."""
        ...

    def on_parse_error(self, channel: str, detail: str) -> None: ...
    def on_notice(self, kind: str, message: str) -> None: ...
    def on_pong(self) -> None: ...
    def on_listing(self, request_id: int, streams: list[str]) -> None:
        """The venue's own list of this connection's subscriptions."""
        ...

    def on_welcome(self) -> None:
        """The venue greeted the connection (`VenueSpec.welcome`): requests may go out now."""
        ...

    def on_gap(self, stream: str | None, reason: int) -> None:
        """Data was lost for `stream` (None: every stream of this connection, e.g. a gap in a
        connection-wide sequence): the engine writes GAP records and resubscribes."""
        ...


class Session(Protocol):
    def routes_changed(self) -> None:
        """The routing table changed (streams added or removed)."""
        ...

    def on_message(self, payload: memoryview | bytes, recv_ns: int) -> int:
        """Handle one frame; return its exchange event time in ns (0 when it has none)."""
        ...


class Venue(ABC):
    """An exchange adapter. Subclasses are stateless; per-connection state lives in sessions."""

    spec: VenueSpec
    book_rules: BookRules | None = None

    @abstractmethod
    def stream_name(self, channel: Channel, venue_symbol: str) -> str: ...

    @abstractmethod
    def connect_url(self, ws_url: str) -> str: ...

    async def prepare(self, http: Any, ws_url: str, rest_url: str) -> Prepared:
        """Called before every connection attempt with an aiohttp session (KuCoin fetches a
        connect token here). Must not keep state between calls."""
        return Prepared(self.connect_url(ws_url))

    def list_request(self, request_id: int) -> Request | None:
        """A request asking the venue which streams this connection is subscribed to (the
        session answers with `events.on_listing`), or None where the venue has none."""
        return None

    def setup_requests(self, first_id: int) -> list[Request]:
        """Sent on every new connection before the subscriptions (e.g. a keep-alive
        channel). Acked like subscriptions; the connection is live once all are acked."""
        return []

    @abstractmethod
    def requests(self, streams: Sequence[str], first_id: int, *, subscribe: bool) -> list[Request]:
        """Subscribe or unsubscribe requests for `streams`, within the venue's limits."""

    @abstractmethod
    def instruments_url(self, rest_url: str) -> str: ...

    @abstractmethod
    def parse_instruments(self, body: bytes) -> list[Instrument]: ...

    def snapshot_url(self, rest_url: str, venue_symbol: str) -> str | None:
        """REST book snapshot for venues whose books start from one (else None)."""
        return None

    def parse_snapshot(self, body: bytes) -> BookSnapshot:
        raise NotImplementedError

    @abstractmethod
    def session(self, routes: RouteTable, sink: Sink, events: SessionEvents) -> Session: ...

    def simulator(self, **options: Any) -> Any:
        """The venue's simulator (the server side of its protocol), for a `SimServer`."""
        raise NotImplementedError(f"{self.spec.name} has no simulator")

    def normalize_symbol(self, text: str) -> str:
        """A user's spelling (`BTC/USDT`, `btc-usdt`) in the registry's `BASE-QUOTE` form."""
        return text.strip().upper().replace("/", "-").replace("_", "-")


Handler = Callable[..., int]
