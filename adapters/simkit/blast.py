"""Blast mode: pre-encoded WebSocket frames written in large chunks, for benchmarks.

A simulator that builds every frame with a dict and `orjson.dumps` tops out far below what a
fast client takes, and a benchmark that repeats a small pool of frames flatters the client
(the engine drops a trade whose id is not above the last one). Blast mode does neither: a
venue describes each message kind as a fixed-width `FrameTemplate` (a server-to-client text
frame, header included) whose numeric fields are patched in bulk with NumPy, so every frame is
distinct (ids keep increasing, prices and sizes vary) and thousands of frames cost one array
operation per field. `Blaster` writes them straight to the client's transport, in chunks cut at
frame boundaries (picows may send an automatic pong between two writes), honouring
pause_writing/resume_writing, at a target rate or unlimited.

Templates are written as text with placeholders: `{name:W}` an integer of exactly W digits
(JSON numbers: values must stay within [10**(W-1), 10**W)), `{name:I.D}` a decimal with I
integer digits and D decimals (inside JSON strings), `{name:bool}` `true` or `false` padded to
five bytes (` true`). Any venue uses the same machinery: it only provides templates and the
field values (see `adapters/binance/simulator.py`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_FIELD = re.compile(rb"\{([A-Za-z_][A-Za-z0-9_]*):(bool|\d+(?:\.\d+)?)\}")
_POW10 = 10 ** np.arange(19, dtype=np.int64)
_BOOLS = np.frombuffer(b"false true", dtype=np.uint8).reshape(2, 5)  # row 1: " true"

Values = dict[str, Any]  # field name -> array of n values, or one scalar for all


def ws_header(payload_len: int, opcode: int = 0x1) -> bytes:
    """Header of an unmasked, final server-to-client frame (RFC 6455 section 5.2)."""
    first = 0x80 | opcode
    if payload_len < 126:
        return bytes((first, payload_len))
    if payload_len < 1 << 16:
        return bytes((first, 126)) + payload_len.to_bytes(2, "big")
    return bytes((first, 127)) + payload_len.to_bytes(8, "big")


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # "int" | "dec" | "bool"
    offset: int  # in the framed row
    digits: int  # digits written (int: width; dec: integer + decimals)
    decimals: int = 0


class FrameTemplate:
    """One message shape: renders `n` distinct framed messages from arrays of field values."""

    def __init__(self, text: bytes) -> None:
        payload = bytearray()
        fields: list[tuple[str, str, int, int, int]] = []
        pos = 0
        for m in _FIELD.finditer(text):
            payload += text[pos : m.start()]
            name, spec = m.group(1).decode(), m.group(2).decode()
            at = len(payload)
            if spec == "bool":
                fields.append((name, "bool", at, 5, 0))
                payload += b"false"
            elif "." in spec:
                whole, dec = (int(x) for x in spec.split("."))
                fields.append((name, "dec", at, whole + dec, dec))
                payload += b"1" * whole + (b"." + b"0" * dec if dec else b"")
            else:
                fields.append((name, "int", at, int(spec), 0))
                payload += b"1" * int(spec)
            pos = m.end()
        payload += text[pos:]
        header = ws_header(len(payload))
        self.payload_size = len(payload)
        self.frame_size = len(header) + len(payload)
        self.row = np.frombuffer(header + bytes(payload), dtype=np.uint8)
        self.fields = [
            _Field(name, kind, len(header) + at, digits, dec)
            for name, kind, at, digits, dec in fields
        ]
        self.names = {f.name for f in self.fields}
        self._base = np.tile(self.row, (1, 1))

    def render(self, n: int, values: Values) -> np.ndarray[Any, Any]:
        """`n` framed messages as an (n, frame_size) uint8 array. A value may be an array of
        `n` or one scalar for all (a timestamp shared by the chunk)."""
        if len(self._base) < n:
            self._base = np.tile(self.row, (max(n, 2 * len(self._base)), 1))
        out = self._base[:n].copy()
        for f in self.fields:
            v = values[f.name]
            if f.kind == "bool":
                out[:, f.offset : f.offset + 5] = _BOOLS[np.asarray(v, dtype=np.intp)]
                continue
            v = np.asarray(v, dtype=np.int64)
            if v.size and (
                v.max() >= _POW10[f.digits] or (f.kind == "int" and v.min() < _POW10[f.digits - 1])
            ):
                raise ValueError(f"{f.name} does not fit {f.digits} digits without a leading zero")
            digits = _digits(v.reshape(-1), f.digits)
            if f.kind == "dec" and f.decimals:
                whole = f.digits - f.decimals
                out[:, f.offset : f.offset + whole] = digits[:, :whole]
                out[:, f.offset + whole + 1 : f.offset + f.digits + 1] = digits[:, whole:]
            else:
                out[:, f.offset : f.offset + f.digits] = digits
        return out

    def message(self, values: dict[str, Any]) -> bytes:
        """One rendered payload without its header (for tests and documentation)."""
        arrays = {k: np.array([v]) for k, v in values.items()}
        row: bytes = self.render(1, arrays)[0].tobytes()
        return row[self.frame_size - self.payload_size :]


_LUT4 = np.array([list(f"{i:04d}".encode()) for i in range(10_000)], dtype=np.uint8)
_LUT4_U32 = _LUT4.view(np.uint32).reshape(-1)


def _digits(v: np.ndarray[Any, Any], width: int) -> np.ndarray[Any, Any]:
    """ASCII digits of each value, zero-padded to `width`: (len(v), width) uint8. Four digits
    per table lookup (a 40 kB table) instead of one division per digit."""
    groups = (width + 3) // 4
    out = np.empty((len(v), groups), dtype=np.uint32)
    for k in range(groups - 1, -1, -1):
        v, r = np.divmod(v, 10_000)
        out[:, k] = _LUT4_U32[r]
    return out.view(np.uint8)[:, 4 * groups - width :]


def dec_width(max_units: int, decimals: int) -> int:
    """Integer digits needed for values up to `max_units` of 10**-decimals (at least 1)."""
    return max(1, len(str(max_units // 10**decimals)))


class BlastStream:
    """One stream's blast source: its template(s) and how to fill them.

    `fill(n, now_ms, rng)` returns field values for the next `n` messages and advances the
    stream's own counters (ids keep increasing across chunks, clients and runs)."""

    def __init__(
        self,
        name: str,
        templates: dict[bool, FrameTemplate],
        fill: Callable[[int, int, np.random.Generator], Values],
        levels: int = 0,
    ) -> None:
        self.name = name
        self.templates = templates  # key: the client's shape (e.g. Binance combined or raw)
        self.fill = fill
        self.levels = levels  # book levels per message (0: not a book stream)
        self.sent = 0


@dataclass
class BlastConfig:
    """`rate`: messages per second per stream and connection (None: as fast as it drains);
    `count`: messages per stream and connection (None: until stopped); `chunk`: bytes per write
    in unlimited mode (frames are never split)."""

    rate: float | None = None
    count: int | None = None
    chunk: int = 256 << 10
    seed: int = 7


@dataclass
class _ClientBlast:
    client: Any
    streams: list[tuple[BlastStream, FrameTemplate]]
    config: BlastConfig
    sent: int = 0
    started_ns: int = 0
    finished_ns: int = 0
    writable: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def target(self) -> int | None:
        c = self.config.count
        return None if c is None else c * len(self.streams)


class Blaster:
    """Runs blasts to the clients of a `SimServer`.

    Unlimited rate: one task per client connection, each writing chunks as fast as that
    client drains them (a stream shared by two connections gives each its own ids: fine for a
    benchmark, where each stream has one subscriber). Paced: one task for the server that
    generates each stream's messages once per tick and writes the same frames to every
    subscriber, one frame per write, as a venue does (so connections overlapping during a
    make-before-break rollover see the same ids); a paused or stalled client loses them."""

    def __init__(
        self,
        lookup: Callable[[str], BlastStream | None],
        subscribers: Callable[[str], Iterable[Any]],
        streams: Callable[[], Iterable[str]],
    ) -> None:
        self.lookup = lookup
        self.subscribers = subscribers
        self.streams = streams
        self.blasts: list[_ClientBlast] = []
        self.paced: asyncio.Task[None] | None = None
        self.paced_sent: dict[Any, int] = {}  # client -> frames written
        self.paced_started_ns = self.paced_finished_ns = 0
        self.runs = 0

    def start(self, clients: list[Any], config: BlastConfig) -> int:
        """Start a blast to every client with blastable subscriptions; returns how many."""
        self.stop()
        self.blasts = []
        self.paced_sent = {}
        self.paced = None
        self.runs += 1
        if config.rate is None:
            return sum(self.start_client(c, config) for c in clients)
        names = sorted({n for c in clients for n in c.subs if self._blastable(n, c)})
        self.paced = asyncio.get_running_loop().create_task(self._broadcast(config, names))
        return len({c for c in clients if any(self._blastable(n, c) for n in c.subs)})

    def start_client(self, client: Any, config: BlastConfig) -> bool:
        """A client subscribed while blasting is on: flood it, or make sure the paced
        broadcast runs (it picks up new subscriptions by itself)."""
        if config.rate is not None:
            if self.paced is None or self.paced.done():
                self.paced = asyncio.get_running_loop().create_task(self._broadcast(config, None))
            return True
        old = getattr(client, "blast", None)
        if old is not None:
            self._cancel(old)
            self.blasts.remove(old)
        streams = [
            (bs, bs.templates[_shape(client)])
            for bs in (self.lookup(n) for n in sorted(client.subs) if self._blastable(n, client))
            if bs is not None
        ]
        if not streams or client.transport is None:
            return False
        blast = _ClientBlast(client, streams, config)
        blast.writable.set()
        client.blast = blast
        blast.task = asyncio.get_running_loop().create_task(self._run(blast))
        self.blasts.append(blast)
        return True

    def _blastable(self, name: str, client: Any) -> bool:
        bs = self.lookup(name)
        return bs is not None and _shape(client) in bs.templates

    def stop(self) -> None:
        for b in self.blasts:
            self._cancel(b)
        if self.paced is not None and not self.paced.done():
            self.paced.cancel()

    @staticmethod
    def _cancel(blast: _ClientBlast) -> None:
        if blast.task is not None and not blast.task.done():
            blast.task.cancel()
        blast.client.blast = None

    def stats(self) -> dict[str, Any]:
        if self.paced is not None:
            done = self.paced.done()
            seconds = (self.paced_finished_ns - self.paced_started_ns) / 1e9 if done else None
            return {
                "runs": self.runs,
                "mode": "paced",
                "clients": len(self.paced_sent),
                "sent": sum(self.paced_sent.values()),
                "done": done,
                "per_client": [
                    {"streams": sorted(c.subs), "sent": n, "seconds": seconds}
                    for c, n in self.paced_sent.items()
                ],
            }
        return {
            "runs": self.runs,
            "mode": "flood",
            "clients": len(self.blasts),
            "sent": sum(b.sent for b in self.blasts),
            "done": all(b.task is not None and b.task.done() for b in self.blasts),
            "per_client": [
                {
                    "streams": [s.name for s, _ in b.streams],
                    "sent": b.sent,
                    "seconds": (b.finished_ns - b.started_ns) / 1e9 if b.finished_ns else None,
                }
                for b in self.blasts
            ],
        }

    async def _run(self, blast: _ClientBlast) -> None:
        blast.started_ns = time.time_ns()
        try:
            await self._flood(blast)
        finally:
            blast.finished_ns = time.time_ns()

    def _render(
        self, stream: BlastStream, tpl: FrameTemplate, n: int, rng: np.random.Generator
    ) -> memoryview:
        values = stream.fill(n, time.time_ns() // 1_000_000, rng)
        stream.sent += n
        return tpl.render(n, values).data  # a fresh array: the transport may keep it

    async def _flood(self, blast: _ClientBlast) -> None:
        rng = np.random.default_rng(blast.config.seed)
        left = [blast.config.count for _ in blast.streams]
        transport = blast.client.transport.underlying_transport
        for i in _round_robin(left):
            stream, tpl = blast.streams[i]
            n = max(1, blast.config.chunk // tpl.frame_size)
            remaining = left[i]
            if remaining is not None:
                n = min(n, remaining)
                if n <= 0:
                    continue
                left[i] = remaining - n
            if blast.client.closing or transport.is_closing():
                return
            while blast.client.stalled:
                await asyncio.sleep(0.05)
            transport.write(self._render(stream, tpl, n, rng))
            blast.sent += n
            if blast.client.paused:
                blast.writable.clear()
                await blast.writable.wait()
            else:
                await asyncio.sleep(0)  # let the server answer pings and control requests

    async def _broadcast(self, config: BlastConfig, names: list[str] | None) -> None:
        """Paced: each stream's frames due at this tick, generated once, written to every
        subscriber one frame per write. `names` None: every subscribed blastable stream."""
        self.paced_started_ns = time.time_ns()
        rng = np.random.default_rng(config.seed)
        rate = config.rate or 1.0
        left: dict[str, int | None] = {}
        carry = 0.0
        last = time.monotonic()
        try:
            while True:
                await asyncio.sleep(0.0005)
                now = time.monotonic()
                carry += rate * (now - last)
                last = now
                due = int(carry)
                carry -= due
                if due == 0:
                    continue
                current = names if names is not None else sorted(self.streams())
                for name in current:
                    remaining = left.setdefault(name, config.count)
                    n = due if remaining is None else min(due, remaining)
                    if n > 0 and self._send_paced(name, n, rng) and remaining is not None:
                        left[name] = remaining - n
                if names is not None and all(left.get(n) == 0 for n in names):
                    return
        finally:
            self.paced_finished_ns = time.time_ns()

    def _send_paced(self, name: str, n: int, rng: np.random.Generator) -> bool:
        stream = self.lookup(name)
        clients = [
            c
            for c in self.subscribers(name)
            if c.transport is not None and not c.closing and not c.stalled
        ]
        if stream is None or not clients:
            return False
        values = stream.fill(n, time.time_ns() // 1_000_000, rng)
        stream.sent += n
        frames: dict[bool, list[bytes]] = {}
        for c in clients:
            shape = _shape(c)
            if shape not in stream.templates:
                continue
            if shape not in frames:
                frames[shape] = [r.tobytes() for r in stream.templates[shape].render(n, values)]
            if c.paused:  # a client that cannot keep up loses frames, as with any venue
                c.dropped += n
                continue
            write = c.transport.underlying_transport.write
            for frame in frames[shape]:
                write(frame)
            self.paced_sent[c] = self.paced_sent.get(c, 0) + n
        return True


def _shape(client: Any) -> bool:
    return bool(client.state.get("combined", True))


def _round_robin(left: list[int | None]) -> Iterator[int]:
    while True:
        active = [i for i, x in enumerate(left) if x is None or x > 0]
        if not active:
            return
        yield from active
