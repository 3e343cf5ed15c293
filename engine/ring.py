"""The shared-memory ring: one writer, any number of reader processes, the writer never waits.

Modelled on Agrona's broadcast buffer. Sequence numbers are 64-bit and free-running; a record
lives in slot ``seq & (capacity - 1)``. The writer announces the slots it is about to overwrite
(`intent`) before writing them and publishes `tail` after; a reader copies records below `tail`,
then reads `intent` and discards whatever may have been overwritten while it copied. A reader
more than `capacity` records behind is lapped: it learns exactly how many records it lost and
resumes at the oldest valid record.

Segment layout (`/dev/shm/wsm.<instance>.ring.<exchange>`): a 4096-byte header whose hot
counters each sit on their own cache line, then ``capacity`` records of 64 bytes.

Ownership: the engine (`Ring.create`) creates and unlinks a ring; a worker attaches as its
`RingWriter`. A writer that attaches to a ring whose previous writer died bumps the ring's
generation and writes a `GAP`/`WRITER_RESTART` record first, so readers see the restart in the
stream. A ring left behind by a crashed engine is replaced at start: the old segment is marked
superseded (its readers move to the new one) and the new one continues its sequence numbers.
"""

from __future__ import annotations

import functools
import importlib
import os
import struct
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Final, Literal

import numpy as np

from engine import shm
from engine.errors import RingError, RingLayoutError, RingNotFound
from engine.records import MAX_EXCHANGE_ID, RECORD_DTYPE, RECORD_SIZE, Flag, GapReason, Kind, Record

MAGIC: Final = b"WSMRING1"
LAYOUT_VERSION: Final = 1
HEADER_SIZE: Final = 4096

# header offsets
_MAGIC = 0
_VERSION = 8  # u32
_RECORD_SIZE = 12  # u32
_CAPACITY = 16  # u64
_EXCHANGE_ID = 24  # u32
_FLAGS = 28  # u32
_OWNER_PID = 32  # u64
_CREATED_NS = 40  # u64
_BASE_SEQ = 48  # u64: first seq ever written into this segment
_EXCHANGE_NAME = 64  # 32 bytes
GENERATION = 128  # u64
WRITER_PID = 136  # u64
HEARTBEAT_NS = 144  # u64
INTENT = 192  # u64, own cache line
TAIL = 256  # u64, own cache line
FUTEX = 320  # u32
WAITERS = 324  # u32
RECORDS = HEADER_SIZE

FLAG_SUPERSEDED: Final = 1
FLAG_CLOSED: Final = 2

DEFAULT_CAPACITY: Final = 1 << 20
WRITER_CLAIM: Final = 64
_STATIC = struct.Struct("<8sIIQII")  # magic .. flags
_U64 = struct.Struct("<Q")

Start = Literal["newest", "oldest"]


@functools.cache
def default_backend() -> ModuleType:
    """The C helper when it was compiled; else the pure-Python fallback (x86-64 only).

    `WSM_RING_BACKEND=python` forces the fallback (tests run both)."""
    choice = os.environ.get("WSM_RING_BACKEND", "auto")
    if choice not in ("auto", "c", "python"):
        raise RingError(f"WSM_RING_BACKEND must be auto, c or python, not {choice!r}")
    if choice != "python":
        try:
            return importlib.import_module("engine._ring")
        except ImportError as exc:
            if choice == "c":
                raise RingError(f"the compiled ring helper engine._ring is missing: {exc}") from exc
    from engine import _ringpy

    if not _ringpy.supported():
        raise RingError(
            "the compiled ring helper engine._ring is missing and the pure-Python fallback "
            "is only correct on x86-64: install a C compiler and reinstall WSM"
        )
    return _ringpy


def _backend(backend: ModuleType | str | None) -> ModuleType:
    if backend is None:
        return default_backend()
    if isinstance(backend, str):
        if backend == "python":
            from engine import _ringpy

            return _ringpy
        return importlib.import_module("engine._ring")
    return backend


def _check_layout(name: str, buf: memoryview) -> int:
    """Validate a segment's header; return its capacity."""
    if len(buf) < HEADER_SIZE:
        raise RingLayoutError(name, f"segment is {len(buf)} bytes, smaller than a header")
    magic, version, record_size, capacity, _, _ = _STATIC.unpack_from(buf, 0)
    if magic != MAGIC:
        raise RingLayoutError(name, f"bad magic {magic!r} (not a WSM ring)")
    if version != LAYOUT_VERSION:
        raise RingLayoutError(
            name, f"layout version {version}, this WSM understands version {LAYOUT_VERSION}"
        )
    if record_size != RECORD_SIZE:
        raise RingLayoutError(name, f"record size {record_size}, expected {RECORD_SIZE}")
    if capacity <= 0 or capacity & (capacity - 1):
        raise RingLayoutError(name, f"capacity {capacity} is not a power of two")
    if len(buf) < HEADER_SIZE + capacity * RECORD_SIZE:
        raise RingLayoutError(name, "segment is shorter than its capacity says")
    return int(capacity)


class _Header:
    """Typed access to one mapped ring header (ordered where it matters)."""

    def __init__(self, seg: shm.Segment, backend: ModuleType) -> None:
        self.seg = seg
        self.shared = backend.Shared(seg.buf, os.path.join(shm.SHM_DIR, seg.name))
        self._q = seg.buf[:HEADER_SIZE].cast("Q")
        self._i = seg.buf[:HEADER_SIZE].cast("I")

    def u64(self, off: int) -> int:
        return int(self._q[off >> 3])

    def set_u64(self, off: int, value: int) -> None:
        self._q[off >> 3] = value

    @property
    def flags(self) -> int:
        return int(self._i[_FLAGS >> 2])

    def set_flag(self, flag: int) -> None:
        self._i[_FLAGS >> 2] = self.flags | flag

    @property
    def capacity(self) -> int:
        return self.u64(_CAPACITY)

    @property
    def exchange_id(self) -> int:
        return int(self._i[_EXCHANGE_ID >> 2])

    @property
    def exchange_name(self) -> str:
        raw = bytes(self.seg.buf[_EXCHANGE_NAME : _EXCHANGE_NAME + 32])
        return raw.rstrip(b"\0").decode()

    def close(self) -> None:
        self.shared.release()
        self._q.release()
        self._i.release()
        self.seg.close()


class Ring:
    """The engine's handle on a ring it created: it unlinks the segment on `close`."""

    def __init__(self, header: _Header) -> None:
        self._header = header
        self.name = header.seg.name

    @classmethod
    def create(
        cls,
        *,
        instance: str,
        exchange: str,
        exchange_id: int,
        capacity: int = DEFAULT_CAPACITY,
        backend: ModuleType | str | None = None,
    ) -> Ring:
        """Create the ring of `exchange`, replacing one left behind by a dead engine."""
        if capacity <= 0 or capacity & (capacity - 1):
            raise RingError(f"ring capacity must be a power of two, not {capacity}")
        if not 0 < exchange_id <= MAX_EXCHANGE_ID:
            raise RingError(f"exchange id must be in 1..{MAX_EXCHANGE_ID}, not {exchange_id}")
        mod = _backend(backend)
        name = shm.ring_name(instance, exchange)
        base_seq, generation = _retire_stale(name, mod)
        seg = shm.Segment.create(name, HEADER_SIZE + capacity * RECORD_SIZE)
        header = _Header(seg, mod)
        _STATIC.pack_into(seg.buf, 0, MAGIC, LAYOUT_VERSION, RECORD_SIZE, capacity, exchange_id, 0)
        header.set_u64(_OWNER_PID, os.getpid())
        header.set_u64(_CREATED_NS, time.time_ns())
        header.set_u64(_BASE_SEQ, base_seq)
        seg.buf[_EXCHANGE_NAME : _EXCHANGE_NAME + 32] = exchange.encode()[:32].ljust(32, b"\0")
        header.set_u64(GENERATION, generation)
        header.set_u64(INTENT, base_seq)
        header.set_u64(TAIL, base_seq)
        return cls(header)

    @property
    def generation(self) -> int:
        return self._header.u64(GENERATION)

    @property
    def tail(self) -> int:
        return self._header.shared.load(TAIL)  # type: ignore[no-any-return]

    @property
    def capacity(self) -> int:
        return self._header.capacity

    def close(self, *, unlink: bool = True) -> None:
        """Mark the ring closed (readers stop waiting), then unmap and unlink it."""
        self._header.set_flag(FLAG_CLOSED)
        self._header.shared.wake(FUTEX)
        self._header.close()
        if unlink:
            shm.unlink(self.name)

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _retire_stale(name: str, backend: ModuleType) -> tuple[int, int]:
    """Retire a segment left by a dead engine; return (base seq, generation) to continue from."""
    if not shm.exists(name):
        return 0, 1
    try:
        old = shm.Segment.open(name)
    except (OSError, RingError):
        shm.unlink(name)
        return 0, 1
    try:
        _check_layout(name, old.buf)
    except RingLayoutError:
        old.close()
        shm.unlink(name)
        return 0, 1
    header = _Header(old, backend)
    try:
        owner = header.u64(_OWNER_PID)
        if owner != os.getpid() and shm.pid_alive(owner) and not header.flags & FLAG_CLOSED:
            raise RingError(f"ring {name!r} is in use by a running engine (pid {owner})")
        base, generation = header.u64(INTENT), header.u64(GENERATION) + 1
        header.set_flag(FLAG_SUPERSEDED)
        header.shared.wake(FUTEX)
    finally:
        header.close()
    shm.unlink(name)
    return base, generation


class RingWriter:
    """The single writer of a ring. `append*` stage records, `commit` publishes them.

    The hot path calls the bound methods `append`, `append_bbo` and `commit` directly."""

    def __init__(
        self,
        *,
        instance: str,
        exchange: str,
        backend: ModuleType | str | None = None,
        claim: int = WRITER_CLAIM,
    ) -> None:
        mod = _backend(backend)
        self.name = shm.ring_name(instance, exchange)
        try:
            seg = shm.Segment.open(self.name)
        except FileNotFoundError:
            raise RingNotFound(exchange, self.name) from None
        try:
            capacity = _check_layout(self.name, seg.buf)
        except RingLayoutError:
            seg.close()
            raise
        self._header = header = _Header(seg, mod)
        other = header.u64(WRITER_PID)
        if other not in (0, os.getpid()) and shm.pid_alive(other):
            header.close()
            raise RingError(f"ring {self.name!r} already has a live writer (pid {other})")
        restarted = other != 0
        header.set_u64(WRITER_PID, os.getpid())
        header.set_u64(GENERATION, header.u64(GENERATION) + (1 if restarted else 0))
        self.capacity = capacity
        self.exchange_id = header.exchange_id
        self._core = mod.WriterCore(
            seg.buf,
            records_off=RECORDS,
            capacity=capacity,
            tail_off=TAIL,
            intent_off=INTENT,
            futex_off=FUTEX,
            waiters_off=WAITERS,
            exchange=self.exchange_id,
            next_seq=header.shared.load(TAIL),
            claim=max(1, min(claim, capacity // 8)),
        )
        self.append = self._core.append
        self.append_bbo = self._core.append_bbo
        self.append_raw = self._core.append_raw
        self.commit = self._core.commit
        self.write = self._core.write
        if restarted:
            self._mark_restart()

    def _mark_restart(self) -> None:
        """Tell readers the previous writer died; rewrite any slot it may have left torn."""
        now = time.time_ns()
        first = True
        while first or self._core.next < self._core.claimed:
            self.append(
                Kind.GAP,
                0,
                Flag.EXCHANGE_WIDE | Flag.LAST,
                0,
                now,
                now,
                0.0,
                0.0,
                0,
                GapReason.WRITER_RESTART,
            )
            first = False
        self.commit()

    @property
    def generation(self) -> int:
        return self._header.u64(GENERATION)

    @property
    def next_seq(self) -> int:
        return int(self._core.next)

    def write_batch(self, batch: np.ndarray[Any, Any]) -> int:
        """Append a `RECORD_DTYPE` array (its seq and exchange fields are assigned) and commit."""
        if batch.dtype != RECORD_DTYPE:
            raise RingError(f"batch dtype must be RECORD_DTYPE, not {batch.dtype}")
        self._core.append_raw(np.ascontiguousarray(batch).view(np.uint8))
        return int(self.commit())

    def heartbeat(self) -> None:
        """Record that the writer is alive (called about once a second, never per record)."""
        self._header.set_u64(HEARTBEAT_NS, time.time_ns())

    def close(self) -> None:
        self.commit()
        self._header.set_u64(WRITER_PID, 0)
        self._core.release()
        for attr in ("append", "append_bbo", "append_raw", "commit", "write"):
            self.__dict__.pop(attr, None)
        self._header.close()

    def __enter__(self) -> RingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RingReader:
    """A reader of one exchange's ring, attached by name from any process.

    `read_batch` returns every new record at once as a NumPy array (a view of this reader's
    own buffer, valid until the next read); `read` returns `Record` objects; iterating waits
    for records without spinning. `lost` counts records this reader was lapped out of.
    """

    def __init__(
        self,
        exchange: str,
        *,
        instance: str = "default",
        start: Start = "newest",
        batch_size: int = 65536,
        backend: ModuleType | str | None = None,
        spin: bool = False,
    ) -> None:
        if start not in ("newest", "oldest"):
            raise RingError(f"start must be 'newest' or 'oldest', not {start!r}")
        self.exchange = exchange
        self.instance = instance
        self.name = shm.ring_name(instance, exchange)
        self.lost = 0
        self.restarts = 0
        self.detached = False  # closed: its shared memory is gone
        self.spin = spin
        self._backend = _backend(backend)
        self._out = np.empty(batch_size, dtype=RECORD_DTYPE)
        self._out_raw = memoryview(self._out.view(np.uint8).reshape(-1).data)
        self._attach()
        self.pos: int = self.tail if start == "newest" else self.oldest_valid()

    def _attach(self) -> None:
        try:
            seg = shm.Segment.open(self.name)
        except FileNotFoundError:
            raise RingNotFound(self.exchange, self.name) from None
        try:
            self.capacity = _check_layout(self.name, seg.buf)
        except RingLayoutError:
            seg.close()
            raise
        self._header = _Header(seg, self._backend)
        self._records = seg.buf[RECORDS : RECORDS + self.capacity * RECORD_SIZE]
        self._mask = self.capacity - 1
        self._base = self._header.u64(_BASE_SEQ)
        self.generation = self._header.u64(GENERATION)
        self.exchange_id = self._header.exchange_id

    def _detach(self) -> None:
        self._records.release()
        self._header.close()

    def oldest_valid(self) -> int:
        """The oldest record still in the ring."""
        intent: int = self._header.shared.load(INTENT)
        return max(self._base, intent - self.capacity)

    @property
    def tail(self) -> int:
        return self._header.shared.load(TAIL)  # type: ignore[no-any-return]

    @property
    def lag(self) -> int:
        """Records published but not yet read by this reader."""
        return max(self.tail - self.pos, 0)

    @property
    def writer_pid(self) -> int:
        return self._header.u64(WRITER_PID)

    @property
    def closed(self) -> bool:
        """The engine closed this ring (a clean stop)."""
        return bool(self._header.flags & FLAG_CLOSED)

    def read_batch(self, max_records: int | None = None) -> np.ndarray[Any, Any]:
        """Every new record (up to `max_records`) as a `RECORD_DTYPE` array; empty if none."""
        limit = len(self._out) if max_records is None else min(max_records, len(self._out))
        shared = self._header.shared
        while True:
            tail = shared.load(TAIL)
            pos = self.pos
            if tail <= pos:
                if self._header.flags & FLAG_SUPERSEDED:
                    self._reattach()
                    shared = self._header.shared
                    continue
                return self._out[:0]
            self._check_generation()
            oldest = max(self._base, tail - self.capacity)
            if pos < oldest:
                self.lost += oldest - pos
                pos = oldest
            n = min(tail - pos, limit)
            self._copy(pos, n)
            # Anything below `valid` may have been overwritten while we copied it.
            valid = max(self._base, shared.load_after_read(INTENT) - self.capacity)
            drop = min(max(valid - pos, 0), n)
            self.lost += drop
            self.pos = pos + n
            if drop < n:
                return self._out[drop:n]

    def _copy(self, pos: int, n: int) -> None:
        slot = pos & self._mask
        first = min(n, self.capacity - slot)
        src = self._records
        dst = self._out_raw
        dst[: first * RECORD_SIZE] = src[slot * RECORD_SIZE : (slot + first) * RECORD_SIZE]
        if first < n:
            rest = (n - first) * RECORD_SIZE
            dst[first * RECORD_SIZE : first * RECORD_SIZE + rest] = src[:rest]

    def _check_generation(self) -> None:
        generation = self._header.u64(GENERATION)
        if generation != self.generation:
            self.restarts += 1
            self.generation = generation

    def _reattach(self) -> None:
        """Our segment was replaced by a new engine run: move to the new one."""
        self._detach()
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self._attach()
                break
            except RingNotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.restarts += 1
        self.pos = max(self.pos, self._base)

    def read(self, max_records: int | None = None) -> list[Record]:
        """New records as `Record` objects (empty list if none)."""
        batch = self.read_batch(max_records)
        raw = batch.tobytes()
        return [Record.from_bytes(raw, i * RECORD_SIZE) for i in range(len(batch))]

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a record is published (True) or the timeout passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        shared = self._header.shared
        while True:
            if shared.load(TAIL) > self.pos:
                return True
            if self._header.flags & (FLAG_SUPERSEDED | FLAG_CLOSED):
                return self._header.flags & FLAG_SUPERSEDED != 0
            remaining = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if remaining <= 0:
                return False
            if self.spin:
                continue
            if shared.wait(FUTEX, WAITERS, TAIL, self.pos, remaining):
                return True

    def batches(self, timeout: float | None = None) -> Iterator[np.ndarray[Any, Any]]:
        """Yield batches as they come; stop after `timeout` seconds without any, or on close."""
        while True:
            batch = self.read_batch()
            if len(batch):
                yield batch
                continue
            if self.closed or not self.wait(timeout):
                return

    def records(self, timeout: float | None = None) -> Iterator[Record]:
        """Yield records as they come; stop after `timeout` seconds without any, or on close."""
        for batch in self.batches(timeout):
            raw = batch.tobytes()
            for i in range(len(batch)):
                yield Record.from_bytes(raw, i * RECORD_SIZE)

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def close(self) -> None:
        self.detached = True
        self._out_raw.release()
        self._detach()

    def __enter__(self) -> RingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
