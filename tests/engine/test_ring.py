"""The ring in one process: writing, reading, lapping, batches, restarts, errors."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import pytest

from engine import shm
from engine.errors import RingError, RingLayoutError, RingNotFound
from engine.records import RECORD_DTYPE, Flag, GapReason, Kind
from engine.ring import GENERATION, WRITER_PID, Ring, RingReader, RingWriter


@pytest.fixture
def ring(instance: str, backend: str) -> Iterator[Ring]:
    r = Ring.create(instance=instance, exchange="x", exchange_id=7, capacity=16, backend=backend)
    yield r
    r.close()


@pytest.fixture
def writer(ring: Ring, instance: str, backend: str) -> Iterator[RingWriter]:
    w = RingWriter(instance=instance, exchange="x", backend=backend)
    yield w
    w.close()


def reader(instance: str, backend: str, **kw: object) -> RingReader:
    return RingReader("x", instance=instance, backend=backend, **kw)  # type: ignore[arg-type]


def put(w: RingWriter, n: int, *, start_ref: int = 0) -> None:
    for i in range(n):
        ref = start_ref + i
        w.append(Kind.TRADE, 1, Flag.LAST, 3, ref * 10, ref * 11, ref + 0.5, ref + 0.25, ref, 0)
    w.commit()


def test_written_records_read_back_exactly(writer: RingWriter, instance: str, backend: str) -> None:
    rd = reader(instance, backend)
    put(writer, 5)
    recs = rd.read()
    assert [r.seq for r in recs] == [0, 1, 2, 3, 4]
    assert [r.ref for r in recs] == [0, 1, 2, 3, 4]
    r = recs[3]
    assert (r.kind, r.exchange, r.side, r.flags, r.symbol) == (Kind.TRADE, 7, 1, Flag.LAST, 3)
    assert (r.exch_ts, r.recv_ts, r.price, r.size) == (30, 33, 3.5, 3.25)
    assert rd.read() == []
    assert rd.lost == 0
    rd.close()


def test_uncommitted_records_are_invisible(writer: RingWriter, instance: str, backend: str) -> None:
    rd = reader(instance, backend)
    writer.append(Kind.TRADE, 1, 0, 3, 0, 0, 1.0, 1.0, 0, 0)
    assert rd.read() == []
    assert writer.commit() == 1
    assert len(rd.read()) == 1
    rd.close()


def test_bbo_records(writer: RingWriter, instance: str, backend: str) -> None:
    rd = reader(instance, backend)
    writer.append_bbo(Flag.LAST, 9, 100, 200, 10.5, 1.5, 10.75, 2.5)
    writer.commit()
    (r,) = rd.read()
    assert (r.kind, r.symbol, r.price, r.size, r.ask_price, r.ask_size) == (
        Kind.BBO,
        9,
        10.5,
        1.5,
        10.75,
        2.5,
    )
    rd.close()


def test_start_newest_skips_history_start_oldest_gets_it(
    writer: RingWriter, instance: str, backend: str
) -> None:
    put(writer, 20)  # capacity 16: seqs 4..19 are still in the ring
    newest = reader(instance, backend, start="newest")
    oldest = reader(instance, backend, start="oldest")
    assert newest.read() == []
    assert [r.seq for r in oldest.read()] == list(range(4, 20))
    assert oldest.lost == 0
    newest.close()
    oldest.close()


def test_lapped_reader_learns_exactly_how_many_it_lost(
    writer: RingWriter, instance: str, backend: str
) -> None:
    rd = reader(instance, backend)
    put(writer, 3)
    assert len(rd.read(max_records=1)) == 1  # pos = 1
    put(writer, 40, start_ref=3)  # tail = 43, oldest valid = 27
    recs = rd.read()
    assert rd.lost == 27 - 1
    assert [r.seq for r in recs] == list(range(27, 43))
    assert [r.ref for r in recs] == list(range(27, 43))
    rd.close()


def test_batches_wrap_around_the_ring(writer: RingWriter, instance: str, backend: str) -> None:
    rd = reader(instance, backend)
    for round_ in range(5):
        batch = np.zeros(11, dtype=RECORD_DTYPE)
        batch["kind"] = Kind.BOOK_LEVEL
        batch["ref"] = np.arange(11) + 100 * round_
        batch["seq"] = 999  # assigned by the ring
        tail = writer.write_batch(batch)
        assert tail == 11 * (round_ + 1)
        got = rd.read_batch()
        assert list(got["seq"]) == list(range(11 * round_, 11 * (round_ + 1)))
        assert list(got["ref"]) == list(batch["ref"])
        assert set(got["exchange"]) == {7}
    assert rd.lost == 0
    rd.close()


def test_batch_larger_than_the_ring_keeps_its_newest_records(
    writer: RingWriter, instance: str, backend: str
) -> None:
    rd = reader(instance, backend)
    batch = np.zeros(40, dtype=RECORD_DTYPE)
    batch["ref"] = np.arange(40)
    writer.write_batch(batch)
    got = rd.read_batch()
    assert list(got["ref"]) == list(range(24, 40))
    assert rd.lost == 24
    rd.close()


def test_write_batch_refuses_other_dtypes(writer: RingWriter) -> None:
    with pytest.raises(RingError, match="RECORD_DTYPE"):
        writer.write_batch(np.zeros(3, dtype=np.int64))


def test_read_batch_limit(writer: RingWriter, instance: str, backend: str) -> None:
    rd = reader(instance, backend, batch_size=4)
    put(writer, 10)
    sizes = []
    while len(b := rd.read_batch()):
        sizes.append(len(b))
    assert sizes == [4, 4, 2]
    rd.close()


def test_a_second_live_writer_is_refused(writer: RingWriter, instance: str, backend: str) -> None:
    # The same process may re-attach (it is the writer); another live pid may not.
    ring_buf = shm.Segment.open(shm.ring_name(instance, "x"))
    struct.pack_into("<Q", ring_buf.buf, WRITER_PID, 1)  # pid 1 is always alive
    ring_buf.close()
    with pytest.raises(RingError, match="already has a live writer"):
        RingWriter(instance=instance, exchange="x", backend=backend)
    seg = shm.Segment.open(shm.ring_name(instance, "x"))
    struct.pack_into("<Q", seg.buf, WRITER_PID, 0)
    seg.close()


def test_writer_takeover_bumps_generation_and_marks_the_restart(
    ring: Ring, instance: str, backend: str
) -> None:
    w1 = RingWriter(instance=instance, exchange="x", backend=backend)
    rd = reader(instance, backend)
    put(w1, 3)
    w1.append(Kind.TRADE, 1, 0, 3, 0, 0, 1.0, 1.0, 99, 0)  # appended, never committed
    # Simulate a writer that died: its pid is gone but it is still recorded.
    seg = shm.Segment.open(shm.ring_name(instance, "x"))
    struct.pack_into("<Q", seg.buf, WRITER_PID, 2**22 + 12345)
    seg.close()
    gen = ring.generation
    w2 = RingWriter(instance=instance, exchange="x", backend=backend)
    assert ring.generation == gen + 1
    recs = rd.read()
    assert [r.seq for r in recs[:3]] == [0, 1, 2]
    restart = recs[3:]
    assert restart, "the new writer must mark the restart in the stream"
    assert all(r.kind == Kind.GAP and r.aux == GapReason.WRITER_RESTART for r in restart)
    assert all(r.flags & Flag.EXCHANGE_WIDE for r in restart)
    assert rd.restarts == 1
    put(w2, 2, start_ref=50)
    assert [r.ref for r in rd.read()] == [50, 51]
    w2.close()
    w1._core.release()
    w1._header.close()
    rd.close()


def test_stale_ring_of_a_dead_engine_is_replaced_and_readers_follow(
    instance: str, backend: str
) -> None:
    old = Ring.create(instance=instance, exchange="x", exchange_id=7, capacity=16, backend=backend)
    w = RingWriter(instance=instance, exchange="x", backend=backend)
    put(w, 5)
    rd = reader(instance, backend, start="oldest")
    assert len(rd.read()) == 5
    # the engine dies: owner pid gone, segment left behind
    seg = shm.Segment.open(old.name)
    struct.pack_into("<Q", seg.buf, 32, 2**22 + 4321)
    seg.close()
    w.close()
    old.close(unlink=False)
    new = Ring.create(instance=instance, exchange="x", exchange_id=7, capacity=16, backend=backend)
    assert new.generation == 2
    w2 = RingWriter(instance=instance, exchange="x", backend=backend)
    put(w2, 2, start_ref=70)
    recs = rd.read()
    assert [r.ref for r in recs] == [70, 71]
    assert recs[0].seq == 5, "the new ring continues the sequence numbers"
    assert rd.restarts == 1
    w2.close()
    rd.close()
    new.close()


def test_ring_of_a_live_engine_is_not_replaced(ring: Ring, instance: str, backend: str) -> None:
    seg = shm.Segment.open(ring.name)
    struct.pack_into("<Q", seg.buf, 32, 1)  # owned by pid 1, alive
    seg.close()
    with pytest.raises(RingError, match="in use by a running engine"):
        Ring.create(instance=instance, exchange="x", exchange_id=7, capacity=16, backend=backend)


def test_attach_to_a_missing_ring_names_it(instance: str, backend: str) -> None:
    with pytest.raises(RingNotFound, match=r"no ring for exchange 'nope'.*wsm\..*\.ring\.nope"):
        RingReader("nope", instance=instance, backend=backend)
    with pytest.raises(RingNotFound):
        RingWriter(instance=instance, exchange="nope", backend=backend)


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [(0, b"NOTARING", "bad magic"), (8, struct.pack("<I", 99), "layout version 99")],
)
def test_attach_to_an_incompatible_ring_names_the_problem(
    ring: Ring, instance: str, backend: str, offset: int, value: bytes, message: str
) -> None:
    seg = shm.Segment.open(ring.name)
    seg.buf[offset : offset + len(value)] = value
    seg.close()
    with pytest.raises(RingLayoutError, match=message) as info:
        RingReader("x", instance=instance, backend=backend)
    assert ring.name in str(info.value)


def test_bad_parameters_are_refused(instance: str) -> None:
    with pytest.raises(RingError, match="power of two"):
        Ring.create(instance=instance, exchange="x", exchange_id=1, capacity=1000)
    with pytest.raises(RingError, match="exchange id"):
        Ring.create(instance=instance, exchange="x", exchange_id=0, capacity=16)
    with pytest.raises(RingError, match="start must be"):
        RingReader("x", instance=instance, start="middle")  # type: ignore[arg-type]


def test_close_unlinks_and_wakes_readers(instance: str, backend: str) -> None:
    ring = Ring.create(instance=instance, exchange="x", exchange_id=7, capacity=16, backend=backend)
    rd = reader(instance, backend)
    ring.close()
    assert rd.closed
    assert rd.wait(timeout=5.0) is False
    assert list(rd.records(timeout=5.0)) == []
    assert shm.instance_segments(instance) == []
    rd.close()


def test_generation_is_stored_in_the_header(ring: Ring, instance: str, backend: str) -> None:
    seg = shm.Segment.open(ring.name)
    assert struct.unpack_from("<Q", seg.buf, GENERATION) == (1,)
    seg.close()
