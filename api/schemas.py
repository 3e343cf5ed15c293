"""Request and response bodies (msgspec Structs): they validate requests and generate the
OpenAPI document (`api/openapi.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from engine.backoff import ReconnectPolicy
from engine.coordinator import ConnectionMetrics

Name = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
ExchangeName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Url = Annotated[str, Meta(min_length=6, max_length=2048, pattern=r"^wss?://[^\s]+$")]
Symbol = Annotated[
    str, Meta(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9/_:.-]*$")
]
Channel = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9@_.:-]+$")]
RecordKind = Literal["trade", "bbo", "book"]
Id = Annotated[str, Meta(description="a UUID")]


class _Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class NewConnection(_Body):
    """A connection to create. The engine connects it at once unless `connect` is false."""

    exchange: ExchangeName
    name: Name
    url: Url | None = None
    reconnect: ReconnectPolicy = ReconnectPolicy()
    connect: bool = True


class NewSubscription(_Body):
    """Subscribe a connection to a channel for some symbols (`BTC-USDT`, `BTC/USDT` or the
    venue's own spelling); `kinds` keeps only some record kinds."""

    connection_id: Id
    channel: Channel
    symbols: Annotated[list[Symbol], Meta(min_length=1, max_length=200)]
    kinds: Annotated[list[RecordKind], Meta(min_length=1, max_length=3)] | None = None


class ErrorDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: str
    message: str
    field: str | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class Connection(msgspec.Struct, kw_only=True):
    id: Id
    name: str
    exchange: str
    url: str | None
    reconnect: ReconnectPolicy
    desired_state: Literal["connected", "disconnected"]
    state: str  # the engine's: connecting, subscribing, live, stale, closed, backoff, failed,
    # stopped; or `unknown` when the engine does not run it
    live_since: datetime | None
    last_error: str | None
    created_at: datetime
    metrics: ConnectionMetrics | None


class ConnectionPage(msgspec.Struct, kw_only=True):
    items: list[Connection]
    next_cursor: str | None


class Subscription(msgspec.Struct, kw_only=True):
    id: Id
    connection_id: Id
    exchange: str
    channel: str
    symbols: list[str]
    kinds: list[str] | None
    state: str  # pending, active, rejected
    reason: str | None
    created_at: datetime


class SubscriptionPage(msgspec.Struct, kw_only=True):
    items: list[Subscription]
    next_cursor: str | None


class Event(msgspec.Struct, kw_only=True):
    id: int
    connection_id: Id
    ts: datetime
    kind: Literal["state", "error"]
    state: str | None
    code: str | None
    reason: str | None


class EventPage(msgspec.Struct, kw_only=True):
    items: list[Event]
    next_cursor: str | None


class MetricPoint(msgspec.Struct, kw_only=True):
    ts: datetime  # the start of the step
    messages_in: int  # counters at the end of the step (they restart with a worker)
    bytes_in: int
    errors: int
    gaps: int
    resyncs: int
    reconnects: int
    messages_per_s: float | None  # over the step (None for the first)
    bytes_per_s: float | None
    latency_p50_us: float | None  # mean of the step's samples
    latency_p99_us: float | None  # worst of the step's samples


class MetricSeries(msgspec.Struct, kw_only=True):
    connection_id: Id
    start: datetime
    end: datetime
    step: float
    points: list[MetricPoint]


class Aggregate(msgspec.Struct, kw_only=True):
    exchange: str  # "*" for all
    connections: int
    live: int
    messages_per_s: float
    bytes_per_s: float
    messages_in: int
    errors: int
    gaps: int
    resyncs: int
    reconnects: int
    latency_p50_us: float | None  # rate-weighted mean of the connections' p50
    latency_p99_us: float | None  # worst of the connections' p99
    uptime_s: float  # summed over live connections
    live_ratio: float  # live / connections (1.0 with no connection)


class Aggregated(msgspec.Struct, kw_only=True):
    at: datetime
    exchanges: list[Aggregate]
    overall: Aggregate


class ExchangeInfo(msgspec.Struct, kw_only=True):
    name: str
    running: bool
    channels: list[str]


class ExchangeList(msgspec.Struct, kw_only=True):
    items: list[ExchangeInfo]


class NewAllowedNetwork(_Body):
    """A network the caller's requests may come from (`203.0.113.0/24`, `2001:db8::/32`, or
    one address). Once a user has any, requests from elsewhere are refused with 403."""

    cidr: Annotated[str, Meta(min_length=2, max_length=64)]
    label: Annotated[str, Meta(max_length=200)] = ""


class AllowedNetwork(msgspec.Struct, kw_only=True):
    id: Id
    cidr: str
    label: str
    created_at: datetime


class AllowedNetworkPage(msgspec.Struct, kw_only=True):
    items: list[AllowedNetwork]
    next_cursor: str | None


class Deleted(msgspec.Struct, kw_only=True):
    id: Id
    deleted: bool


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok", "starting", "stopping", "unavailable"]
    checks: dict[str, str] = {}
