"""Order books kept by a worker, and the generic synchronisation procedure around them.

A `Book` holds one symbol's price levels with O(log n) best-price tracking (heaps with lazy
deletion). A `BookSync` runs the procedure every venue shares: buffer deltas until a snapshot
arrives, bridge the snapshot to the buffered deltas, check every following delta against the
venue's rules, and on a gap (or a crossed book, or a bad level) write a `GAP` record,
invalidate the book and ask for exactly one new snapshot, suppressing deltas until it comes.
The venue's own rules (which delta bridges a snapshot, what continuity means) come from its
adapter as a `BookRules`.

REST fallback (optional, `BookRules.rest_fallback_after`): a WebSocket-snapshot venue whose
snapshot may never come. A book that has buffered that many deltas since its subscription
became active (`start`) with no snapshot asks once for a REST one (`rest_fallback` tells the
worker to fetch instead of resubscribing); the worker hands it over with `from_rest=True` and
the buffered deltas are bridged to it by the rules' `bridge_rest` (the REST answer may carry no
update id). A WebSocket snapshot arriving first is taken as usual and the late REST answer is
discarded (the book no longer awaits one).
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable
from typing import Any

from engine.records import ASK, BID, Flag, GapReason, Kind
from engine.venue import BookRules, BookSnapshot, Sink, Verdict

MAX_BUFFERED = 10_000  # deltas kept while waiting for a snapshot
# Plain ints for the per-level path (an IntEnum member lookup is a class attribute access).
_BOOK_LEVEL = int(Kind.BOOK_LEVEL)
_BID = int(BID)
_ASK = int(ASK)
_LAST = int(Flag.LAST)
_SNAPSHOT = int(Flag.SNAPSHOT)


class Book:
    """Price levels of one symbol. Prices are the venue's exact values as doubles."""

    __slots__ = ("_ask_heap", "_bid_heap", "asks", "bids")

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self._bid_heap: list[float] = []  # negated prices
        self._ask_heap: list[float] = []

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bid_heap.clear()
        self._ask_heap.clear()

    def set_bid(self, price: float, size: float) -> None:
        bids = self.bids
        if size:
            if price not in bids:
                heapq.heappush(self._bid_heap, -price)
            bids[price] = size
        elif bids.pop(price, None) is not None and len(self._bid_heap) > 4 * len(bids) + 64:
            self._bid_heap = [-p for p in bids]
            heapq.heapify(self._bid_heap)

    def set_bids(self, levels: list[Any]) -> bool:
        """`set_bid` for each (price, size) in one call; False at a negative size."""
        bids, heap = self.bids, self._bid_heap
        for price, size in levels:
            if size < 0:
                return False
            if size:
                if price not in bids:
                    heapq.heappush(heap, -price)
                bids[price] = size
            elif bids.pop(price, None) is not None and len(heap) > 4 * len(bids) + 64:
                self._bid_heap = heap = [-p for p in bids]
                heapq.heapify(heap)
        return True

    def set_asks(self, levels: list[Any]) -> bool:
        """`set_ask` for each (price, size) in one call; False at a negative size."""
        asks, heap = self.asks, self._ask_heap
        for price, size in levels:
            if size < 0:
                return False
            if size:
                if price not in asks:
                    heapq.heappush(heap, price)
                asks[price] = size
            elif asks.pop(price, None) is not None and len(heap) > 4 * len(asks) + 64:
                self._ask_heap = heap = list(asks)
                heapq.heapify(heap)
        return True

    def set_ask(self, price: float, size: float) -> None:
        asks = self.asks
        if size:
            if price not in asks:
                heapq.heappush(self._ask_heap, price)
            asks[price] = size
        elif asks.pop(price, None) is not None and len(self._ask_heap) > 4 * len(asks) + 64:
            self._ask_heap = list(asks)
            heapq.heapify(self._ask_heap)

    def best_bid(self) -> float | None:
        heap, bids = self._bid_heap, self.bids
        while heap and -heap[0] not in bids:
            heapq.heappop(heap)
        return -heap[0] if heap else None

    def best_ask(self) -> float | None:
        heap, asks = self._ask_heap, self.asks
        while heap and heap[0] not in asks:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def crossed(self) -> bool:
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid >= ask

    def top(self, depth: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The best `depth` levels of each side, best first."""
        bids = [(p, self.bids[p]) for p in heapq.nlargest(depth, self.bids)]
        asks = [(p, self.asks[p]) for p in heapq.nsmallest(depth, self.asks)]
        return bids, asks


class SyncState(enum.IntEnum):
    AWAITING_SNAPSHOT = 1
    BRIDGING = 2  # have a snapshot, the first delta must bridge it
    LIVE = 3


class BookCounters:
    __slots__ = ("deltas", "dropped", "gaps", "resyncs", "snapshots")

    def __init__(self) -> None:
        self.deltas = self.dropped = self.gaps = self.resyncs = self.snapshots = 0


class BookSync:
    """One symbol's book synchronisation. `request_snapshot(self)` is called exactly once per
    resync; the engine answers with `on_snapshot` (REST venues) or the venue's own snapshot
    message arrives through the session (WebSocket venues)."""

    __slots__ = (
        "_armed",
        "_bridge_rest",
        "_buffer",
        "_fallback_after",
        "_request",
        "_rest_snap",
        "_verify",
        "book",
        "counters",
        "epoch",
        "last_id",
        "rest_fallback",
        "rules",
        "sink",
        "state",
        "symbol",
    )

    def __init__(
        self,
        *,
        rules: BookRules,
        symbol: int,
        sink: Sink,
        request_snapshot: Callable[[BookSync], None],
        counters: BookCounters | None = None,
    ) -> None:
        self.rules = rules
        # optional: a venue whose messages carry a checksum of the book checks it here
        self._verify: Callable[[Book, Any], bool] | None = getattr(rules, "verify", None)
        self.symbol = symbol
        self.sink = sink
        self._request = request_snapshot
        self.book = Book()
        self.state = SyncState.AWAITING_SNAPSHOT
        self.last_id = 0
        self._buffer: list[tuple[Any, int, int]] = []
        self.counters = counters or BookCounters()
        self.epoch = 0  # bumped whenever a requested snapshot stops being wanted
        # optional REST fallback of WebSocket-snapshot venues (see the module docstring)
        after: int | None = getattr(rules, "rest_fallback_after", None)
        self._bridge_rest: Callable[[BookSnapshot, Any, int], Verdict] | None = getattr(
            rules, "bridge_rest", None
        )
        self._fallback_after = 0 if rules.snapshot_from_rest or not after else after
        self._armed = False  # counting deltas since the subscription became active
        self.rest_fallback = False  # a REST snapshot was asked for in place of the venue's
        self._rest_snap: BookSnapshot | None = None  # the REST snapshot being bridged

    @property
    def awaiting(self) -> bool:
        return self.state == SyncState.AWAITING_SNAPSHOT

    def start(self) -> None:
        """Begin (or restart after a reconnect): REST venues fetch a snapshot now; WebSocket
        venues send one with the (re)subscription."""
        self.state = SyncState.AWAITING_SNAPSHOT
        self.epoch += 1
        self._buffer.clear()
        self._armed = self._fallback_after > 0
        self.rest_fallback = False
        if self.rules.snapshot_from_rest:
            self._request(self)

    def on_delta(self, delta: Any, exch_ts: int, recv_ns: int) -> None:
        state = self.state
        if state == SyncState.LIVE:
            verdict = self.rules.follow(self.last_id, delta)
        elif state == SyncState.BRIDGING:
            verdict = self._bridging(delta, exch_ts)
        else:
            buffer = self._buffer
            if len(buffer) < MAX_BUFFERED:
                buffer.append((delta, exch_ts, recv_ns))
            else:
                buffer.clear()  # the snapshot will be too old: fetch another
            if self._armed and len(buffer) >= self._fallback_after and not self.rest_fallback:
                # the venue's snapshot did not come with the subscription: ask REST, once
                self.rest_fallback = True
                self._request(self)
            return
        if verdict == Verdict.APPLY:
            self._apply(delta, exch_ts, recv_ns)
        elif verdict == Verdict.DROP:
            self.counters.dropped += 1
        else:
            self.invalidate(GapReason.SEQUENCE_GAP, recv_ns)

    def _apply(self, delta: Any, exch_ts: int, recv_ns: int) -> None:
        book = self.book
        uid = delta.last_id
        if not (book.set_bids(delta.bids) and book.set_asks(delta.asks)):
            return self.invalidate(GapReason.BAD_UPDATE, recv_ns)
        if book.crossed():
            return self.invalidate(GapReason.CROSSED_BOOK, recv_ns)
        if self._verify is not None and not self._verify(book, delta):
            return self.invalidate(GapReason.CHECKSUM_MISMATCH, recv_ns)
        self.last_id = uid
        self.state = SyncState.LIVE
        self.counters.deltas += 1
        self._emit(delta.bids, delta.asks, 0, exch_ts, recv_ns, uid)

    def _emit(
        self,
        bids: list[Any],
        asks: list[Any],
        flags: int,
        exch_ts: int,
        recv_ns: int,
        uid: int,
    ) -> None:
        # plain ints: IntFlag/IntEnum arithmetic per level costs more than the append
        append = self.sink.append
        sym = self.symbol
        last = flags | _LAST
        n = len(bids) + len(asks)
        i = 0
        for price, size in bids:
            i += 1
            f = last if i == n else flags
            append(_BOOK_LEVEL, _BID, f, sym, exch_ts, recv_ns, price, size, uid, 0)
        for price, size in asks:
            i += 1
            f = last if i == n else flags
            append(_BOOK_LEVEL, _ASK, f, sym, exch_ts, recv_ns, price, size, uid, 0)

    def _bridging(self, delta: Any, exch_ts: int) -> Verdict:
        snap, bridge_rest = self._rest_snap, self._bridge_rest
        if snap is not None and bridge_rest is not None:
            return bridge_rest(snap, delta, exch_ts)
        return self.rules.bridge(self.last_id, delta)

    def on_snapshot(self, snap: BookSnapshot, recv_ns: int, *, from_rest: bool = False) -> None:
        """A fresh snapshot: publish it, then replay the buffered deltas after it.
        `from_rest`: fetched by the engine; for a book that asked for its REST fallback, the
        deltas bridge to it by the rules' `bridge_rest`."""
        book = self.book
        book.clear()
        for price, size in snap.bids:
            book.set_bid(price, size)
        for price, size in snap.asks:
            book.set_ask(price, size)
        if book.crossed() or (self._verify is not None and not self._verify(book, snap)):
            book.clear()
            self.counters.gaps += 1
            # a new epoch: the fetch that brought this snapshot sees it is still wanted (a
            # request made while that fetch runs is folded into it) and fetches again
            self.epoch += 1
            self._request(self)
            return
        self._publish_snapshot(snap, recv_ns)
        self.last_id = snap.update_id
        self.state = SyncState.BRIDGING
        self._rest_snap = snap if from_rest and self.rest_fallback else None
        buffered, self._buffer = self._buffer, []
        for delta, exch_ts, delta_recv in buffered:
            if self.state == SyncState.AWAITING_SNAPSHOT:
                break  # a buffered delta showed a gap; a new snapshot is on its way
            verdict = (
                self._bridging(delta, exch_ts)
                if self.state == SyncState.BRIDGING
                else self.rules.follow(self.last_id, delta)
            )
            if verdict == Verdict.APPLY:
                self._apply(delta, exch_ts, delta_recv)
            elif verdict == Verdict.GAP:
                # The snapshot is older than what we buffered: fetch another one.
                self._refetch(buffered)
                return
            else:
                self.counters.dropped += 1

    def resnapshot(self, snap: BookSnapshot, recv_ns: int) -> None:
        """A snapshot the venue sent on its own (WebSocket-snapshot venues, on every
        subscription). A book that awaits one takes it as usual. A live book hands over to it
        when it is newer (`update_id` not below the book's; e.g. the successor's snapshot in a
        make-before-break rollover): only the levels that differ are written, as one update,
        so readers see neither a gap nor a second snapshot. An older one is dropped."""
        if self.state == SyncState.AWAITING_SNAPSHOT:
            self.on_snapshot(snap, recv_ns)
            return
        if snap.update_id < self.last_id:
            self.counters.dropped += 1
            return
        book = self.book
        bids = _changes(book.bids, snap.bids)
        asks = _changes(book.asks, snap.asks)
        for price, size in bids:
            book.set_bid(price, size)
        for price, size in asks:
            book.set_ask(price, size)
        if book.crossed():
            self.invalidate(GapReason.CROSSED_BOOK, recv_ns)
            return
        if self._verify is not None and not self._verify(book, snap):
            self.invalidate(GapReason.CHECKSUM_MISMATCH, recv_ns)
            return
        self.last_id = snap.update_id
        self.state = SyncState.LIVE
        self.counters.deltas += 1
        self._emit(bids, asks, 0, snap.exch_ts, recv_ns, snap.update_id)

    def _refetch(self, buffered: list[tuple[Any, int, int]]) -> None:
        self.state = SyncState.AWAITING_SNAPSHOT
        self.epoch += 1
        self._buffer = [b for b in buffered if b[0].last_id > self.last_id]
        self._request(self)

    def _publish_snapshot(self, snap: BookSnapshot, recv_ns: int) -> None:
        append = self.sink.append
        sym, uid, ts = self.symbol, snap.update_id, snap.exch_ts
        n = len(snap.bids) + len(snap.asks)
        append(Kind.SNAPSHOT_BEGIN, 0, 0, sym, ts, recv_ns, 0.0, 0.0, uid, n)
        for side, levels in ((_BID, snap.bids), (_ASK, snap.asks)):
            for price, size in levels:
                append(_BOOK_LEVEL, side, _SNAPSHOT, sym, ts, recv_ns, price, size, uid, 0)
        append(Kind.SNAPSHOT_END, 0, Flag.LAST, sym, ts, recv_ns, 0.0, 0.0, uid, n)
        self.counters.snapshots += 1

    def invalidate(self, reason: GapReason, recv_ns: int, *, request: bool = True) -> None:
        """Write a GAP record, drop the book and ask for exactly one new snapshot (a REST
        fetch, or a resubscription on WebSocket-snapshot venues). While the snapshot is on its
        way, further deltas are suppressed and further invalidations do nothing.

        `request=False` when the connection itself is down: the snapshot is asked for when
        the stream is live again (`start`)."""
        if self.state == SyncState.AWAITING_SNAPSHOT:
            return
        self.sink.append(
            Kind.GAP, 0, Flag.LAST, self.symbol, 0, recv_ns, 0.0, 0.0, self.last_id, reason
        )
        self.counters.gaps += 1
        self.counters.resyncs += 1
        self.book.clear()
        self.state = SyncState.AWAITING_SNAPSHOT
        self.epoch += 1
        self._buffer.clear()
        self._armed = self.rest_fallback = False  # armed again when the stream is (`start`)
        if request:
            self._request(self)


def _changes(
    have: dict[float, float], want: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The level changes that turn the side `have` into `want` (size 0 removes a level)."""
    target = dict(want)
    out = [(p, 0.0) for p in have if p not in target]
    out.extend((p, q) for p, q in target.items() if have.get(p) != q)
    return out
