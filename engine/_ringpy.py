"""Pure-Python fallback of engine._ring (used when the C helper could not be compiled).

Correct on x86-64 only: its total store order keeps the writer's stores in program order, and
each store below is one aligned 8-byte `memoryview` item assignment (never `struct.pack_into`
on a published counter: it zero-fills first). Python cannot issue the full fence that orders
"publish the tail" before "look for sleepers", so a wake-up can be missed in a tiny window;
sleeping readers therefore wake on a short timeout as well (see `FALLBACK_MAX_SLEEP`).
Atomic increments of the sleeper count use a POSIX record lock on the segment file.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
from typing import Any, Final

import numpy as np

from engine.records import BBO_STRUCT, RECORD_SIZE, RECORD_STRUCT, Kind

BACKEND: Final = "python"
FALLBACK_MAX_SLEEP: Final = 0.002
_SYS_FUTEX: Final = {"x86_64": 202, "amd64": 202}.get(platform.machine().lower())
_FUTEX_WAIT: Final = 0
_FUTEX_WAKE: Final = 1
_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def supported() -> bool:
    return _SYS_FUTEX is not None


class Shared:
    def __init__(self, buffer: memoryview, path: str | None = None) -> None:
        self._buf = buffer
        self._q = buffer.cast("B").cast("Q")
        self._i = buffer.cast("B").cast("I")
        self._anchor: Any = ctypes.c_char.from_buffer(buffer)
        self._base = ctypes.addressof(self._anchor)
        self._lock_fd = os.open(path, os.O_RDWR) if path else -1

    def load(self, off: int) -> int:
        return int(self._q[off >> 3])

    load_after_read = load

    def store(self, off: int, value: int) -> None:
        self._q[off >> 3] = value

    def _add(self, off: int, delta: int) -> None:
        if self._lock_fd >= 0:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_EX, 4, off)
        try:
            self._i[off >> 2] = (self._i[off >> 2] + delta) & 0xFFFFFFFF
        finally:
            if self._lock_fd >= 0:
                fcntl.lockf(self._lock_fd, fcntl.LOCK_UN, 4, off)

    def wait(
        self, futex_off: int, waiters_off: int, tail_off: int, pos: int, timeout: float
    ) -> bool:
        word = self._i[futex_off >> 2]
        self._add(waiters_off, 1)
        try:
            if self.load(tail_off) > pos:
                return True
            timeout = min(max(timeout, 0.0), FALLBACK_MAX_SLEEP)
            ts = _Timespec(int(timeout), int((timeout - int(timeout)) * 1e9))
            _libc.syscall(
                _SYS_FUTEX,
                ctypes.c_void_p(self._base + futex_off),
                _FUTEX_WAIT,
                ctypes.c_uint32(word),
                ctypes.byref(ts),
                None,
                0,
            )
            return self.load(tail_off) > pos
        finally:
            self._add(waiters_off, -1)

    def wake(self, futex_off: int) -> None:
        self._i[futex_off >> 2] = (self._i[futex_off >> 2] + 1) & 0xFFFFFFFF
        _libc.syscall(
            _SYS_FUTEX,
            ctypes.c_void_p(self._base + futex_off),
            _FUTEX_WAKE,
            0x7FFFFFFF,
            None,
            None,
            0,
        )

    def release(self) -> None:
        self._anchor = None
        self._q.release()
        self._i.release()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


class WriterCore:
    """Same interface and protocol as the C `WriterCore`."""

    def __init__(
        self,
        buffer: memoryview,
        *,
        records_off: int,
        capacity: int,
        tail_off: int,
        intent_off: int,
        futex_off: int,
        waiters_off: int,
        exchange: int,
        next_seq: int,
        claim: int,
    ) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two")
        self._buf = buffer
        self._shared = Shared(buffer)
        self._q = buffer.cast("B").cast("Q")
        self._records_off = records_off
        self._mask = capacity - 1
        self._capacity = capacity
        self._tail_i = tail_off >> 3
        self._intent_i = intent_off >> 3
        self._futex_off = futex_off
        self._waiters_i = waiters_off >> 2
        self._i = buffer.cast("B").cast("I")
        self._exchange = exchange
        self.next = next_seq
        self._published = next_seq
        self._claim = claim
        # keep a dead writer's claim past the tail until those slots are rewritten
        self.claimed = max(int(self._q[self._intent_i]), next_seq)
        self._q[self._intent_i] = self.claimed
        self._q[self._tail_i] = next_seq

    @property
    def pending(self) -> int:
        return self.next - self._published

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
    ) -> None:
        seq = self.next
        if seq >= self.claimed:
            self.claimed = seq + self._claim
            self._q[self._intent_i] = self.claimed
        RECORD_STRUCT.pack_into(
            self._buf,
            self._records_off + (seq & self._mask) * RECORD_SIZE,
            seq,
            kind,
            self._exchange,
            side,
            flags,
            symbol,
            exch_ts,
            recv_ts,
            price,
            size,
            ref,
            aux,
            extra,
        )
        self.next = seq + 1

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
    ) -> None:
        seq = self.next
        if seq >= self.claimed:
            self.claimed = seq + self._claim
            self._q[self._intent_i] = self.claimed
        BBO_STRUCT.pack_into(
            self._buf,
            self._records_off + (seq & self._mask) * RECORD_SIZE,
            seq,
            Kind.BBO,
            self._exchange,
            0,
            flags,
            symbol,
            exch_ts,
            recv_ts,
            bid_price,
            bid_size,
            ask_price,
            ask_size,
        )
        self.next = seq + 1

    def append_raw(self, data: Any) -> None:
        rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_SIZE).copy()
        n = len(rows)
        seqs = np.arange(self.next, self.next + n, dtype="<u8")
        rows[:, 0:8] = seqs.view(np.uint8).reshape(n, 8)
        rows[:, 9] = self._exchange
        flat = memoryview(rows.data).cast("B")
        done = 0
        while done < n:
            slot = self.next & self._mask
            run = min(self._capacity - slot, n - done)
            if self.next + run > self.claimed:
                self.claimed = self.next + run
                self._q[self._intent_i] = self.claimed
            off = self._records_off + slot * RECORD_SIZE
            self._buf[off : off + run * RECORD_SIZE] = flat[
                done * RECORD_SIZE : (done + run) * RECORD_SIZE
            ]
            self.next += run
            done += run

    def commit(self) -> int:
        if self.next != self._published:
            self._published = self.next
            self._q[self._tail_i] = self.next
            if self.claimed > self.next:
                self.claimed = self.next
                self._q[self._intent_i] = self.next
            if self._i[self._waiters_i]:
                self._shared.wake(self._futex_off)
        return self.next

    def write(self, *args: Any) -> None:
        self.append(*args)
        self.commit()

    def release(self) -> None:
        self._shared.release()
        self._q.release()
        self._i.release()
