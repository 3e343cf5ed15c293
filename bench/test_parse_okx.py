"""OKX decode+parse per message kind, with Binance's equivalent as the in-run baseline.

Run: `pytest bench/test_parse_okx.py --benchmark-columns=min,median,max`, or, with the rounds
of every variant interleaved so that the machine's drift hits them alike:
`python -m bench.test_parse_okx --rounds 21`.

Each round feeds N distinct frames of one kind through the venue's `Session.on_message`: one
typed decode, one route lookup, the duplicate check and, for books, the engine's book sync
applying the change to a live book of 50 levels a side. OKX book updates carry one level
change each (as Binance's depth frames here), `seqId`/`prevSeqId` chained, and a true CRC32
`checksum` of the best 25 levels a side: `orderbook` verifies it on every message (the text of
every level is kept, the best 25 a side picked and hashed), `orderbook-nocrc` sends checksum 0
(none, as OKX sends now), so the difference is the checksum's cost. The sink does nothing.
Per-message figure: the round's time / `messages_per_round` (in `extra_info`).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from adapters.binance import VENUE as BINANCE
from adapters.okx import VENUE as OKX
from adapters.okx.schemas import OkxBookSnapshot
from bench.parse_rounds import SEQ0, SessionRounds, binance_frames, interleave, rand_px, rand_qty
from engine.streams import Stream
from engine.venue import Venue

N = 10_000
SYMBOLS = 10
DEPTH = 50  # levels a side in the starting book


def _level(price: int, size: str) -> list[str]:
    return [f"{price / 100:.2f}".rstrip("0").rstrip("."), size, "0", "0" if size == "0" else "1"]


def start_book() -> tuple[list[list[str]], list[list[str]]]:
    rng = random.Random(2)
    bids = [_level(10200 - i, rand_qty(rng)) for i in range(DEPTH)]
    asks = [_level(10201 + i, rand_qty(rng)) for i in range(DEPTH)]
    return bids, asks


def _crc(bids: dict[int, list[str]], asks: dict[int, list[str]]) -> int:
    b = [bids[p] for p in sorted(bids, reverse=True)[:25]]
    a = [asks[p] for p in sorted(asks)[:25]]
    parts: list[str] = []
    for i in range(max(len(b), len(a))):
        if i < len(b):
            parts += b[i][:2]
        if i < len(a):
            parts += a[i][:2]
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


START_CRC = _crc(*({round(float(lv[0]) * 100): lv for lv in side} for side in start_book()))


def okx_frames(kind: str, symbols: list[str], *, checksums: bool = True) -> list[bytes]:
    rng = random.Random(1)
    books = {}
    for sym in symbols:
        bids, asks = start_book()
        books[sym] = (
            {round(float(lv[0]) * 100): lv for lv in bids},
            {round(float(lv[0]) * 100): lv for lv in asks},
        )
    out = []
    for i in range(N):
        sym, seq = symbols[i % SYMBOLS], SEQ0 + 1 + i // SYMBOLS
        ts = str(1652459225453 + i)
        if kind == "trades":
            channel = "trades"
            data: dict[str, Any] = {
                "instId": sym,
                "tradeId": str(seq),
                "px": rand_px(rng, 10000, 10400),
                "sz": rand_qty(rng),
                "side": rng.choice(("buy", "sell")),
                "ts": ts,
                "count": "1",
                "source": "0",
                "seqId": seq,
            }
        elif kind == "ticker":
            channel = "tickers"
            data = {
                "instType": "SPOT",
                "instId": sym,
                "last": rand_px(rng, 10000, 10400),
                "lastSz": rand_qty(rng),
                "askPx": rand_px(rng, 10201, 10400),
                "askSz": rand_qty(rng),
                "bidPx": rand_px(rng, 10000, 10200),
                "bidSz": rand_qty(rng),
                "open24h": "10100",
                "high24h": "10400",
                "low24h": "10000",
                "volCcy24h": "525802090.62716611",
                "vol24h": "17602.13085371",
                "sodUtc0": "10100",
                "sodUtc8": "10100",
                "ts": ts,
            }
        else:
            channel = "books"
            bids, asks = books[sym]
            side = rng.choice(("asks", "bids"))
            price = rng.randint(10201, 10300) if side == "asks" else rng.randint(10100, 10200)
            size = "0" if rng.random() < 0.2 else rand_qty(rng)
            level = _level(price, size)
            book = asks if side == "asks" else bids
            if size == "0":
                book.pop(price, None)
            else:
                book[price] = level
            data = {"asks": [], "bids": [], "ts": ts}
            data[side].append(level)
            data |= {"checksum": _crc(bids, asks) if checksums else 0}
            data |= {"prevSeqId": seq - 1, "seqId": seq}
        frame = {"arg": {"channel": channel, "instId": sym}, "data": [data]}
        if channel == "books":
            frame = {"arg": frame["arg"], "action": "update", "data": [data]}
        out.append(orjson.dumps(frame))
    return out


def okx_nocrc_frames(kind: str, symbols: list[str]) -> list[bytes]:
    return okx_frames(kind, symbols, checksums=False)


VENUES: dict[str, tuple[Venue, Callable[[str, list[str]], list[bytes]], list[str]]] = {
    "okx": (OKX, okx_frames, [f"S{i}-USDT" for i in range(SYMBOLS)]),
    "okx-nocrc": (OKX, okx_nocrc_frames, [f"S{i}-USDT" for i in range(SYMBOLS)]),
    "binance": (BINANCE, binance_frames, [f"S{i}USDT" for i in range(SYMBOLS)]),
}
KINDS = ("trades", "ticker", "orderbook")
VARIANTS = [(v, k) for k in KINDS for v in VENUES if v != "okx-nocrc" or k == "orderbook"]


class Variant(SessionRounds):
    """(every checksum matched: a mismatch would have been a gap, which `check` refuses)"""

    def __init__(self, venue_name: str, kind: str) -> None:
        venue, make, symbols = VENUES[venue_name]
        self.okx = venue is OKX
        self.crc = venue_name == "okx"
        super().__init__(venue, kind, symbols, make(kind, symbols))

    def start_book(self, stream: Stream) -> None:
        if not self.okx:
            return super().start_book(stream)
        assert stream.book is not None
        stream.book.start()
        bids, asks = start_book()
        snap = OkxBookSnapshot(
            SEQ0,
            [(float(p), float(q)) for p, q, _, _ in bids],
            [(float(p), float(q)) for p, q, _, _ in asks],
            bid_text=[tuple(lv) for lv in bids],  # type: ignore[misc]
            ask_text=[tuple(lv) for lv in asks],  # type: ignore[misc]
            checksum=START_CRC if self.crc else 0,
        )
        stream.book.on_snapshot(snap, 0)


@pytest.mark.parametrize(("venue_name", "kind"), VARIANTS)
def test_decode_and_parse(benchmark: Any, venue_name: str, kind: str) -> None:
    variant = Variant(venue_name, kind)
    variant.reset()
    variant.run()  # warm up, and prove every frame is taken
    variant.check()
    benchmark.extra_info["messages_per_round"] = N
    benchmark.pedantic(variant.run, setup=variant.reset, rounds=30, iterations=1)


def test_the_checksums_are_verified() -> None:
    rules = OKX.book_rules
    before = rules.verified  # type: ignore[union-attr]
    variant = Variant("okx", "orderbook")
    variant.reset()
    variant.run()
    variant.check()
    # every update and the starting snapshot of each book
    assert rules.verified - before == N + SYMBOLS  # type: ignore[union-attr]
    variant = Variant("okx-nocrc", "orderbook")
    before = rules.verified  # type: ignore[union-attr]
    variant.reset()
    variant.run()
    variant.check()
    assert rules.verified == before  # type: ignore[union-attr]


def main() -> None:
    import argparse
    import statistics

    parser = argparse.ArgumentParser(description="interleaved rounds, ns per message")
    parser.add_argument("--rounds", type=int, default=21)
    rounds = parser.parse_args().rounds
    times = interleave({key: Variant(*key) for key in VARIANTS}, rounds)
    print("| kind | venue | median ns/msg | min-max | / Binance (medians) |")
    print("|---|---|---|---|---|")
    for venue_name, kind in VARIANTS:
        t = times[(venue_name, kind)]
        base = statistics.median(times[("binance", kind)])
        print(
            f"| {kind} | {venue_name} | {statistics.median(t):,.0f} | "
            f"{min(t):,.0f}-{max(t):,.0f} | {statistics.median(t) / base:.2f} |"
        )


if __name__ == "__main__":
    main()
