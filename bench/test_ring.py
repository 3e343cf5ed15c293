"""Ring micro benchmarks. Run: `pytest bench/test_ring.py --benchmark-columns=min,median,max`.

Each benchmark does N operations per round; divide by N (in `extra_info`) for per-record figures.
Baselines in the same run: `struct.pack_into` into a private buffer (the least a Python writer
does per record) and a plain memcpy of the same bytes (the ceiling of any batch read).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from engine.records import RECORD_DTYPE, RECORD_STRUCT, Kind
from engine.ring import Ring, RingReader, RingWriter

N = 10_000
BATCH = 65_536


@pytest.fixture(params=["c", "python"])
def ring(request: pytest.FixtureRequest, instance: str) -> Iterator[tuple[Ring, str, str]]:
    r = Ring.create(
        instance=instance, exchange="b", exchange_id=1, capacity=1 << 20, backend=request.param
    )
    yield r, instance, request.param
    r.close()


def _per_record(benchmark: Any, n: int) -> None:
    benchmark.extra_info["records_per_round"] = n


def test_baseline_pack_into_private_buffer(benchmark: Any) -> None:
    buf = bytearray(N * 64)
    pack = RECORD_STRUCT.pack_into

    def run() -> None:
        for i in range(N):
            pack(buf, i << 6, i, 1, 1, 1, 1, 7, i, i, 1.5, 2.5, i, 0, 0)

    _per_record(benchmark, N)
    benchmark(run)


def test_write_single(benchmark: Any, ring: tuple[Ring, str, str]) -> None:
    _, instance, backend = ring
    w = RingWriter(instance=instance, exchange="b", backend=backend)
    write = w.write

    def run() -> None:
        for i in range(N):
            write(Kind.TRADE, 1, 1, 7, i, i, 1.5, 2.5, i, 0)

    _per_record(benchmark, N)
    benchmark(run)
    w.close()


def test_append_commit_every_64(benchmark: Any, ring: tuple[Ring, str, str]) -> None:
    _, instance, backend = ring
    w = RingWriter(instance=instance, exchange="b", backend=backend)
    append, commit = w.append, w.commit

    def run() -> None:
        for j in range(0, N, 64):
            for i in range(j, j + 64):
                append(Kind.TRADE, 1, 1, 7, i, i, 1.5, 2.5, i, 0)
            commit()

    _per_record(benchmark, N // 64 * 64)
    benchmark(run)
    w.close()


def test_write_batch_numpy(benchmark: Any, ring: tuple[Ring, str, str]) -> None:
    _, instance, backend = ring
    w = RingWriter(instance=instance, exchange="b", backend=backend)
    batch = np.zeros(BATCH, dtype=RECORD_DTYPE)
    batch["kind"] = Kind.TRADE
    batch["price"] = np.linspace(1, 2, BATCH)
    _per_record(benchmark, BATCH)
    benchmark(w.write_batch, batch)
    w.close()


def _filled_reader(ring: tuple[Ring, str, str]) -> tuple[RingWriter, RingReader]:
    _, instance, backend = ring
    w = RingWriter(instance=instance, exchange="b", backend=backend)
    batch = np.zeros(BATCH, dtype=RECORD_DTYPE)
    for _ in range(4):
        w.write_batch(batch)
    return w, RingReader("b", instance=instance, backend=backend, batch_size=BATCH)


def test_baseline_memcpy(benchmark: Any) -> None:
    src = np.zeros(BATCH * 64, dtype=np.uint8)
    dst = np.empty_like(src)
    _per_record(benchmark, BATCH)
    benchmark(np.copyto, dst, src)


def test_read_batch_numpy(benchmark: Any, ring: tuple[Ring, str, str]) -> None:
    w, rd = _filled_reader(ring)

    def run() -> int:
        rd.pos = rd.tail - BATCH
        return len(rd.read_batch())

    _per_record(benchmark, BATCH)
    assert benchmark(run) == BATCH
    rd.close()
    w.close()


def test_read_objects(benchmark: Any, ring: tuple[Ring, str, str]) -> None:
    w, rd = _filled_reader(ring)

    def run() -> int:
        rd.pos = rd.tail - N
        return len(rd.read())

    _per_record(benchmark, N)
    assert benchmark(run) == N
    rd.close()
    w.close()


_ = struct  # the baseline above documents what struct costs
