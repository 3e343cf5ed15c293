"""Kraken v2 decode+parse per message kind, with Binance's equivalent as the in-run baseline.

Run: `pytest bench/test_parse_kraken.py --benchmark-columns=min,median,max`, or, with the rounds
of every variant interleaved so that the machine's drift hits them alike:
`python -m bench.test_parse_kraken --rounds 21`.

Each round feeds N distinct frames of one kind through the venue's `Session.on_message`: one
typed decode, one route lookup, the duplicate check and, for books, the engine's book sync
applying the change to a live depth-10 book. Kraken's book updates carry one level each (as
the Binance depth frames here), at a price inside the book, so an insert pushes a level out of
range: the book rules then cut it, and check the venue's CRC32 over the top 10 levels of each
side. `orderbook` is that whole path; `orderbook_nocrc` is the same frames with the book's
checksum left out of the book's hook (the depth cut alone), so the difference is what the
checksum costs. The frames' checksums are computed independently (integer units,
`adapters.kraken.simulator.checksum`), and every round must end with no gap. The sink does
nothing: the figure is the adapter's (and book sync's) cost, not the ring's.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from adapters.binance import VENUE as BINANCE
from adapters.kraken import VENUE as KRAKEN
from adapters.kraken.parse import KrakenBookDelta, truncate
from adapters.kraken.simulator import checksum
from adapters.simkit.market import fmt
from bench.parse_rounds import SessionRounds, binance_frames, interleave
from engine.book import Book
from engine.streams import Stream
from engine.venue import Venue

N = 10_000
SYMBOLS = 10
DEPTH = 10
PD, QD = 2, 8  # price and quantity precision of the benchmark's pairs
TRADE0 = 70_635_251


def _ts(i: int) -> str:
    return f"2026-07-19T17:54:{39 + i // 1_000_000 % 20:02d}.{i % 1_000_000:06d}Z"


def rand_qty(rng: random.Random) -> int:
    return rng.randint(1, 10**QD)


def _levels(levels: list[tuple[int, int]]) -> str:
    return ",".join(f'{{"price":{fmt(p, PD)},"qty":{fmt(q, QD)}}}' for p, q in levels)


def _book_frame(sym: str, kind: str, bids: Any, asks: Any, crc: int, i: int) -> bytes:
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{sym}",'
        f'"bids":[{_levels(bids)}],"asks":[{_levels(asks)}],'
        f'"checksum":{crc},"timestamp":"{_ts(i)}"}}]}}'
    ).encode()


class KrakenBooks:
    """Depth-10 books per pair, their snapshot frames and N one-level updates that keep them
    (inserts push the 11th level out without a removal, as the venue does)."""

    def __init__(self, symbols: list[str]) -> None:
        rng = random.Random(1)
        self.books: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
        self.snapshots: list[bytes] = []
        for sym in symbols:
            bids = {10200 - 5 * k: rand_qty(rng) for k in range(DEPTH)}
            asks = {10201 + 5 * k: rand_qty(rng) for k in range(DEPTH)}
            self.books[sym] = (bids, asks)
            self.snapshots.append(
                _book_frame(
                    sym,
                    "snapshot",
                    sorted(bids.items(), reverse=True),
                    sorted(asks.items()),
                    checksum(bids, asks),
                    0,
                )
            )
        self.updates = [self._update(symbols[i % SYMBOLS], rng, i) for i in range(N)]

    def _update(self, sym: str, rng: random.Random, i: int) -> bytes:
        bids, asks = self.books[sym]
        is_bid = rng.random() < 0.5
        side = bids if is_bid else asks
        if rng.random() < 0.2 and len(side) > DEPTH // 2:
            price, qty = rng.choice(list(side)), 0
            del side[price]
        else:
            best_bid, best_ask = max(bids), min(asks)
            lo, hi = (best_ask - 60, best_ask - 1) if is_bid else (best_bid + 1, best_bid + 60)
            price, qty = rng.randint(lo, hi), rand_qty(rng)
            side[price] = qty
            for p in sorted(side, reverse=is_bid)[DEPTH:]:
                del side[p]  # out of range: the venue sends nothing for it
        level = [(price, qty)]
        return _book_frame(
            sym,
            "update",
            level if is_bid else [],
            [] if is_bid else level,
            checksum(*self.books[sym]),
            i,
        )


def kraken_frames(kind: str, symbols: list[str]) -> list[bytes]:
    rng = random.Random(1)
    out = []
    for i in range(N):
        sym = symbols[i % SYMBOLS]
        if kind == "trades":
            data = (
                f'{{"symbol":"{sym}","side":"{rng.choice(("buy", "sell"))}",'
                f'"price":{fmt(rng.randint(10000, 10400), PD)},"qty":{fmt(rand_qty(rng), QD)},'
                f'"ord_type":"{rng.choice(("limit", "market"))}",'
                f'"trade_id":{TRADE0 + i // SYMBOLS},"timestamp":"{_ts(i)}"}}'
            )
            out.append(f'{{"channel":"trade","type":"update","data":[{data}]}}'.encode())
        elif kind == "ticker":
            bid, ask = rng.randint(10000, 10200), rng.randint(10201, 10400)
            data = (
                f'{{"symbol":"{sym}","bid":{fmt(bid, PD)},"bid_qty":{fmt(rand_qty(rng), QD)},'
                f'"ask":{fmt(ask, PD)},"ask_qty":{fmt(rand_qty(rng), QD)},"last":{fmt(ask, PD)},'
                f'"volume":{fmt(rng.randint(10**9, 10**12), QD)},"vwap":{fmt(bid, PD)},'
                f'"low":{fmt(10000, PD)},"high":{fmt(10400, PD)},"change":{fmt(25, PD)},'
                f'"change_pct":0.25,"trades":{38144 + i},"timestamp":"{_ts(i)}"}}'
            )
            out.append(f'{{"channel":"ticker","type":"update","data":[{data}]}}'.encode())
        else:
            raise ValueError(kind)
    return out


KINDS = ("trades", "ticker", "orderbook", "orderbook_nocrc")
VENUES: dict[str, tuple[Venue, list[str]]] = {
    "kraken": (KRAKEN, [f"S{i}/USD" for i in range(SYMBOLS)]),
    "binance": (BINANCE, [f"S{i}USDT" for i in range(SYMBOLS)]),
}


def _cut_only(book: Book, message: Any) -> bool:
    """`KrakenBookRules.verify` without the checksum: the depth cut alone."""
    if type(message) is KrakenBookDelta:
        truncate(book, message)
    return True


class Variant(SessionRounds):
    """Kraken's books start from the venue's own snapshots, fed through the session."""

    def __init__(self, venue_name: str, kind: str) -> None:
        venue, symbols = VENUES[venue_name]
        book_kind = kind.startswith("orderbook")
        self.venue_name, self.kind = venue_name, kind
        self.snapshots: list[bytes] = []
        if venue_name == "kraken" and book_kind:
            books = KrakenBooks(symbols)
            frames, self.snapshots = books.updates, books.snapshots
        elif venue_name == "kraken":
            frames = kraken_frames(kind, symbols)
        else:
            frames = binance_frames("orderbook" if book_kind else kind, symbols)
        super().__init__(venue, "orderbook" if book_kind else kind, symbols, frames)
        if kind == "orderbook_nocrc":
            for stream in self.streams:
                if stream.book is not None:
                    stream.book._verify = _cut_only

    def start_book(self, stream: Stream) -> None:
        if not self.snapshots:
            return super().start_book(stream)
        assert stream.book is not None
        stream.book.start()

    def reset(self) -> None:
        super().reset()
        for frame in self.snapshots:  # the venue's snapshots, through the session
            self.on_message(frame, 0)
        for stream in self.streams:
            stream.count = 0
            if stream.book is not None:
                stream.book.counters.deltas = 0

    def check(self) -> None:
        """(and, on Kraken, every checksum verified and every book cut to the depth)"""
        super().check()
        for stream in self.streams:
            if stream.book is not None and self.venue_name == "kraken":
                assert len(stream.book.book.bids) <= DEPTH >= len(stream.book.book.asks)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("venue_name", ["kraken", "binance"])
def test_decode_and_parse(benchmark: Any, venue_name: str, kind: str) -> None:
    if venue_name == "binance" and kind == "orderbook_nocrc":
        pytest.skip("Binance books carry no checksum")
    variant = Variant(venue_name, kind)
    variant.reset()
    variant.run()  # warm up, and prove every frame is taken
    variant.check()
    benchmark.extra_info["messages_per_round"] = N
    benchmark.pedantic(variant.run, setup=variant.reset, rounds=30, iterations=1)


def main() -> None:
    import argparse
    import statistics

    parser = argparse.ArgumentParser(description="interleaved rounds, ns per message")
    parser.add_argument("--rounds", type=int, default=21)
    rounds = parser.parse_args().rounds
    times = interleave(
        {
            (v, k): Variant(v, k)
            for k in KINDS
            for v in VENUES
            if not (v == "binance" and k == "orderbook_nocrc")
        },
        rounds,
    )
    med = {key: statistics.median(t) for key, t in times.items()}
    print("| kind | venue | median ns/msg | min-max | Kraken / Binance (medians) |")
    print("|---|---|---|---|---|")
    for (venue_name, kind), t in times.items():
        base = med.get(("binance", "orderbook" if kind.startswith("orderbook") else kind))
        ratio = f"{med[('kraken', kind)] / base:.2f}" if base and venue_name == "kraken" else ""
        print(
            f"| {kind} | {venue_name} | {med[(venue_name, kind)]:,.0f} | "
            f"{min(t):,.0f}-{max(t):,.0f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
