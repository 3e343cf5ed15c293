"""Messages between the coordinator and a worker process (msgpack over a pipe).

Commands are declarative where they can be (`SetStreams` states the wanted set), so that a
restarted worker is brought back by replaying the current state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from typing import Any, Union

import msgspec

from engine.backoff import ReconnectPolicy

# Upper bounds (microseconds) of the latency histogram buckets; the last bucket is unbounded.
LATENCY_BUCKETS_US: tuple[float, ...] = (
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    1_000_000,
)


class StreamSpec(msgspec.Struct, frozen=True):
    name: str  # the venue's stream name
    channel: str
    venue_symbol: str
    symbol: int  # registry id
    kinds: int  # bit mask of record kinds wanted


# -- coordinator -> worker ----------------------------------------------------------------


class Open(msgspec.Struct, tag="open", frozen=True):
    conn: str
    number: int  # small integer that identifies the connection in STATUS records
    url: str | None
    policy: ReconnectPolicy


class Close(msgspec.Struct, tag="close", frozen=True):
    conn: str


class Reconnect(msgspec.Struct, tag="reconnect", frozen=True):
    conn: str


class Rollover(msgspec.Struct, tag="rollover", frozen=True):
    conn: str


class SetStreams(msgspec.Struct, tag="streams", frozen=True):
    conn: str
    streams: list[StreamSpec]


class Stop(msgspec.Struct, tag="stop", frozen=True):
    pass


Command = Union[Open, Close, Reconnect, Rollover, SetStreams, Stop]  # noqa: UP007


# -- worker -> coordinator ----------------------------------------------------------------


class Ready(msgspec.Struct, tag="ready", frozen=True):
    pid: int
    generation: int


class StateChanged(msgspec.Struct, tag="state", frozen=True):
    conn: str
    shard: int
    state: int  # ConnState
    previous: int
    reason: str
    at_ns: int
    attempt: int = 0
    code: str | None = None


class StreamStatus(msgspec.Struct, tag="stream", frozen=True):
    conn: str
    stream: str
    status: str  # pending | active | rejected | removed
    reason: str = ""
    code: str | None = None


class ConnStats(msgspec.Struct):
    conn: str
    state: int
    shards: int
    streams: int
    msgs_in: int = 0
    bytes_in: int = 0
    msgs_out: int = 0
    bytes_out: int = 0
    parse_errors: dict[str, int] = {}
    gaps: int = 0
    resyncs: int = 0
    reconnects: int = 0
    rollovers: int = 0
    audit_repairs: int = 0  # subscriptions the venue had dropped silently, restored
    last_msg_ns: int = 0
    latency_p50_us: float | None = None
    latency_p99_us: float | None = None
    last_error: str = ""
    # this interval's latency samples per LATENCY_BUCKETS_US bucket (+1 for the overflow)
    latency_buckets: list[int] = []
    latency_sum_us: float = 0.0


class StreamStats(msgspec.Struct):
    stream: str
    messages: int
    last_ns: int


class Stats(msgspec.Struct, tag="stats"):
    at_ns: int
    conns: list[ConnStats]
    streams: list[StreamStats]
    budget_spent: int = 0
    unrouted: int = 0
    cpu_ns: int = 0  # the worker process's CPU time (user + system) so far
    tasks: int = 0  # asyncio tasks alive in the worker (a leak shows as a slope)


class Failure(msgspec.Struct, tag="failure", frozen=True):
    conn: str
    code: str | None
    message: str
    at_ns: int


Event = Union[Ready, StateChanged, StreamStatus, Stats, Failure]  # noqa: UP007

encode = msgspec.msgpack.Encoder().encode
decode_command = msgspec.msgpack.Decoder(Command).decode
decode_event = msgspec.msgpack.Decoder(Event).decode
_HEADER = struct.Struct("!I")


class MessagePipe:
    """Length-prefixed msgpack messages over the coordinator/worker socketpair, with asyncio
    streams on both ends (buffered, never blocking the loop, never a torn message)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def adopt(cls, conn: Any) -> MessagePipe:
        """Take over the socket of a `multiprocess` Connection (which is then closed)."""
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        conn.close()
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    def send(self, msg: Any) -> None:
        payload = encode(msg)
        self._writer.write(_HEADER.pack(len(payload)) + payload)

    async def recv(self, decode: Callable[[bytes], Any]) -> Any:
        """The next message, or None once the other end has gone."""
        try:
            (size,) = _HEADER.unpack(await self._reader.readexactly(_HEADER.size))
            return decode(await self._reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    def close(self) -> None:
        self._writer.close()
