"""Stateful property test: the ring against a model of what every reader must see.

The model knows every record ever written and how far the writer has claimed slots. After
each step it checks the ring's promises: a reader gets a contiguous run of intact records; it
loses records exactly when the writer has moved more than the capacity past it, and then it
is told how many and resumes at the oldest valid record.
"""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from engine.records import RECORD_DTYPE, Kind
from engine.ring import Ring, RingReader, RingWriter
from tests.conftest import new_instance

CAPACITY = 16


def _payload(seq: int) -> int:
    return seq * 7919 + 13


class RingModel(RuleBasedStateMachine):
    readers = Bundle("readers")

    @initialize(backend=st.sampled_from(["c", "python"]), claim=st.sampled_from([1, 2, 64]))
    def start(self, backend: str, claim: int) -> None:
        self.instance = new_instance()
        self.backend = backend
        self.ring = Ring.create(
            instance=self.instance,
            exchange="m",
            exchange_id=1,
            capacity=CAPACITY,
            backend=backend,
        )
        self.writer = RingWriter(instance=self.instance, exchange="m", backend=backend, claim=claim)
        self.claim_size = max(1, min(claim, CAPACITY // 8))
        self.tail = 0  # committed
        self.next = 0  # appended
        self.claimed = 0  # the writer's announced overwrite horizon
        self.open: list[RingReader] = []

    def _append_one(self) -> None:
        seq = self.next
        if seq >= self.claimed:
            self.claimed = seq + self.claim_size
        p = _payload(seq)
        self.writer.append(Kind.TRADE, 1, 0, 5, p, -p, p + 0.5, p * 2.0, p, seq & 0xFFFF)
        self.next += 1

    @rule(n=st.integers(1, 40))
    def append(self, n: int) -> None:
        for _ in range(n):
            self._append_one()

    @rule()
    def commit(self) -> None:
        assert self.writer.commit() == self.next
        self.tail = self.next
        self.claimed = min(self.claimed, self.next)

    @precondition(lambda self: self.next == self.tail)
    @rule(n=st.integers(1, 40))
    def write_batch(self, n: int) -> None:
        batch = np.zeros(n, dtype=RECORD_DTYPE)
        seqs = np.arange(self.tail, self.tail + n, dtype=np.uint64)
        p = seqs * np.uint64(7919) + np.uint64(13)
        batch["kind"] = Kind.TRADE
        batch["side"] = 1
        batch["symbol"] = 5
        batch["exch_ts"] = p.astype(np.int64)
        batch["recv_ts"] = -p.astype(np.int64)
        batch["price"] = p.astype(np.float64) + 0.5
        batch["size"] = p.astype(np.float64) * 2.0
        batch["ref"] = p
        batch["aux"] = seqs & np.uint64(0xFFFF)
        assert self.writer.write_batch(batch) == self.tail + n
        self.tail = self.next = self.tail + n
        self.claimed = self.tail

    def _oldest_valid(self) -> int:
        return max(0, self.claimed - CAPACITY)

    @rule(target=readers, start=st.sampled_from(["newest", "oldest"]))
    def attach(self, start: str) -> RingReader:
        rd = RingReader("m", instance=self.instance, start=start, backend=self.backend)  # type: ignore[arg-type]
        expected = self.tail if start == "newest" else self._oldest_valid()
        assert rd.pos == expected
        self.open.append(rd)
        return rd

    @rule(rd=readers, limit=st.integers(1, 40))
    def read(self, rd: RingReader, limit: int) -> None:
        pos0, lost0 = rd.pos, rd.lost
        batch = rd.read_batch(limit)
        oldest = self._oldest_valid()
        lapped = pos0 < oldest
        if len(batch) == 0:
            assert pos0 >= self.tail or lapped
            if not lapped:
                assert rd.lost == lost0
                assert rd.pos == pos0
            return
        seqs = [int(s) for s in batch["seq"]]
        first, last = seqs[0], seqs[-1]
        assert seqs == list(range(first, last + 1)), "records must be contiguous"
        assert last < self.tail, "never past the committed tail"
        assert len(seqs) <= limit
        assert first >= oldest, "never a record the writer may have overwritten"
        if lapped:
            assert first == oldest, "a lapped reader resumes at the oldest valid record"
        else:
            assert first == pos0
            assert last + 1 == min(self.tail, pos0 + limit)
        assert rd.lost - lost0 == first - pos0, "lost counts exactly the skipped records"
        assert rd.pos == last + 1
        p = batch["ref"]
        np.testing.assert_array_equal(p, np.array(seqs, dtype=np.uint64) * 7919 + 13)
        np.testing.assert_array_equal(batch["price"], p.astype(np.float64) + 0.5)
        np.testing.assert_array_equal(batch["recv_ts"], -p.astype(np.int64))
        assert set(batch["exchange"].tolist()) == {1}

    @rule(rd=consumes(readers))
    def detach(self, rd: RingReader) -> None:
        rd.close()
        self.open.remove(rd)

    @invariant()
    def tail_is_published(self) -> None:
        if hasattr(self, "ring"):
            assert self.ring.tail == self.tail

    def teardown(self) -> None:
        if not hasattr(self, "ring"):
            return
        for rd in self.open:
            rd.close()
        self.writer.close()
        self.ring.close()


TestRingModel = RingModel.TestCase
TestRingModel.settings = settings(max_examples=150, stateful_step_count=40)
