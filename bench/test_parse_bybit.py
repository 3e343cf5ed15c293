"""Bybit (spot) decode+parse per message kind, with Binance's equivalent as the in-run baseline.

Run: `pytest bench/test_parse_bybit.py --benchmark-columns=min,median,max`, or, with the
rounds of all six variants interleaved so that the machine's drift hits them alike:
`python -m bench.test_parse_bybit --rounds 21`.

Each round feeds N distinct frames (prices, sizes and ids vary) of one kind through the venue's
`Session.on_message`: one typed decode, one route lookup, the duplicate check and, for books,
the engine's book sync applying the change to a live book. The sink does nothing, so the figure
is the adapter's (and book sync's) cost. Frames are laid out as Bybit's spot endpoint sends
them (as captured: `ts` before `type`, `cts` last): `publicTrade` with one trade, `orderbook.1`
(the `ticker` channel: one level a side) and `orderbook.200` deltas with one level change, like
the Binance depth frames of bench/test_parse_kucoin.py, so the book kinds compare like for like.
Per-message figure: the round's time / `messages_per_round` (in `extra_info`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from adapters.binance import VENUE as BINANCE
from adapters.bybit import VENUE as BYBIT
from bench.parse_rounds import (
    SEQ0,
    SYMBOLS,
    N,
    SessionRounds,
    binance_frames,
    interleave,
    rand_px,
    rand_qty,
)
from engine.venue import Venue

TRADE0 = 2290000001189048101


def bybit_frames(kind: str, symbols: list[str]) -> list[bytes]:
    rng = random.Random(1)
    out = []
    for i in range(N):
        sym, seq = symbols[i % SYMBOLS], SEQ0 + 1 + i // SYMBOLS
        ms = 1786310816618 + i
        if kind == "trades":
            trade = {
                "i": str(TRADE0 + i // SYMBOLS),
                "T": ms,
                "p": rand_px(rng, 10000, 10400),
                "v": rand_qty(rng),
                "S": rng.choice(("Buy", "Sell")),
                "seq": 112488545865 + i,
                "s": sym,
                "BT": False,
                "RPI": False,
            }
            frame: dict[str, Any] = {
                "topic": f"publicTrade.{sym}",
                "ts": ms,
                "type": "snapshot",
                "data": [trade],
            }
        elif kind == "ticker":
            data = {
                "s": sym,
                "b": [[rand_px(rng, 10000, 10200), rand_qty(rng)]],
                "a": [[rand_px(rng, 10201, 10400), rand_qty(rng)]],
                "u": seq,
                "seq": 112488545865 + i,
            }
            frame = {"topic": f"orderbook.1.{sym}", "ts": ms, "type": "snapshot", "data": data}
            frame["cts"] = ms - 1
        else:
            side = rng.choice(("a", "b"))
            price = rand_px(rng, 10201, 10400) if side == "a" else rand_px(rng, 10000, 10200)
            size = "0" if rng.random() < 0.2 else rand_qty(rng)
            data = {"s": sym, "b": [], "a": [], "u": seq, "seq": 112488545865 + i}
            data[side].append([price, size])
            frame = {"topic": f"orderbook.200.{sym}", "ts": ms, "type": "delta", "data": data}
            frame["cts"] = ms - 1
        out.append(orjson.dumps(frame))
    return out


VENUES: dict[str, tuple[Venue, Callable[[str, list[str]], list[bytes]], list[str]]] = {
    "bybit": (BYBIT, bybit_frames, [f"S{i}USDT" for i in range(SYMBOLS)]),
    "binance": (BINANCE, binance_frames, [f"S{i}USDT" for i in range(SYMBOLS)]),
}
KINDS = ("trades", "ticker", "orderbook")


class Variant(SessionRounds):
    def __init__(self, venue_name: str, kind: str) -> None:
        venue, make, symbols = VENUES[venue_name]
        super().__init__(venue, kind, symbols, make(kind, symbols))

    def check(self) -> None:
        super().check()
        assert all(s.last_id > 0 for s in self.streams if s.book is None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("venue_name", ["bybit", "binance"])
def test_decode_and_parse(benchmark: Any, venue_name: str, kind: str) -> None:
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
    times = interleave({(v, k): Variant(v, k) for k in KINDS for v in VENUES}, rounds)
    print("| kind | venue | median ns/msg | min-max | Bybit / Binance (medians) |")
    print("|---|---|---|---|---|")
    for kind in KINDS:
        for venue_name in VENUES:
            t = times[(venue_name, kind)]
            ratio = statistics.median(times[("bybit", kind)]) / statistics.median(
                times[("binance", kind)]
            )
            print(
                f"| {kind} | {venue_name} | {statistics.median(t):,.0f} | "
                f"{min(t):,.0f}-{max(t):,.0f} | {ratio:.2f} |"
            )


if __name__ == "__main__":
    main()
