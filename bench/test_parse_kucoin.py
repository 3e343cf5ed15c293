"""KuCoin decode+parse per message kind, with Binance's equivalent as the in-run baseline.

Run: `pytest bench/test_parse_kucoin.py --benchmark-columns=min,median,max`, or, with the
rounds of all six variants interleaved so that the machine's drift hits them alike (the figures
in bench/RESULTS.md): `python -m bench.test_parse_kucoin --rounds 21`.

Each round feeds N distinct frames (prices, sizes and ids vary) of one kind through the venue's
`Session.on_message`, the whole hot path but the ring: one typed decode, one route lookup, the
duplicate check and, for books, the engine's book sync applying the change to a live book. The
sink does nothing, so the figure is the adapter's (and book sync's) cost, not the ring's
(bench/test_ring.py). Frames are laid out as each venue sends them: KuCoin's as recorded in
2021 (`data` first, `topic` after), one change per level2 update as in the recording; the
Binance depth frames carry one level too, so the two book kinds compare like for like.
Per-message figure: the round's time / `messages_per_round` (in `extra_info`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from adapters.binance import VENUE as BINANCE
from adapters.kucoin import VENUE as KUCOIN
from engine.streams import RouteTable, Stream, make_stream
from engine.venue import BookSnapshot, Venue
from tests.support import Events

N = 10_000
SYMBOLS = 10
SEQ0 = 1_613_277_183_892


class NullSink:
    def append(self, *args: Any) -> None:
        pass

    def append_bbo(self, *args: Any) -> None:
        pass


def _px(rng: random.Random, lo: int, hi: int) -> str:
    return f"{rng.randint(lo, hi) / 100:.2f}"


def _qty(rng: random.Random) -> str:
    return f"{rng.randint(1, 10**8) / 10**8:.8f}".rstrip("0").rstrip(".")


def kucoin_frames(kind: str, symbols: list[str]) -> list[bytes]:
    rng = random.Random(1)
    out = []
    for i in range(N):
        sym, seq = symbols[i % SYMBOLS], SEQ0 + 1 + i // SYMBOLS
        if kind == "trades":
            data: dict[str, Any] = {
                "symbol": sym,
                "sequence": str(seq),
                "side": rng.choice(("buy", "sell")),
                "size": _qty(rng),
                "price": _px(rng, 10000, 10400),
                "takerOrderId": f"{rng.getrandbits(96):024x}",
                "time": str(1619378327739050725 + i),
                "type": "match",
                "makerOrderId": f"{rng.getrandbits(96):024x}",
                "tradeId": f"{rng.getrandbits(96):024x}",
            }
            topic, subject = f"/market/match:{sym}", "trade.l3match"
        elif kind == "ticker":
            data = {
                "sequence": str(seq),
                "bestAsk": _px(rng, 10201, 10400),
                "size": _qty(rng),
                "bestBidSize": _qty(rng),
                "price": _px(rng, 10000, 10400),
                "time": 1619378326323 + i,
                "bestAskSize": _qty(rng),
                "bestBid": _px(rng, 10000, 10200),
            }
            topic, subject = f"/market/ticker:{sym}", "trade.ticker"
        else:
            side = rng.choice(("asks", "bids"))
            price = _px(rng, 10201, 10400) if side == "asks" else _px(rng, 10000, 10200)
            size = "0" if rng.random() < 0.2 else _qty(rng)
            changes: dict[str, list[list[str]]] = {"asks": [], "bids": []}
            changes[side].append([price, size, str(seq)])
            data = {
                "sequenceStart": seq,
                "symbol": sym,
                "changes": changes,
                "sequenceEnd": seq,
            }
            topic, subject = f"/market/level2:{sym}", "trade.l2update"
        frame = {"data": data, "subject": subject, "topic": topic, "type": "message"}
        out.append(orjson.dumps(frame))
    return out


def binance_frames(kind: str, symbols: list[str]) -> list[bytes]:
    rng = random.Random(1)
    out = []
    for i in range(N):
        sym, seq = symbols[i % SYMBOLS], SEQ0 + 1 + i // SYMBOLS
        low = sym.lower()
        if kind == "trades":
            stream = f"{low}@trade"
            data: dict[str, Any] = {
                "e": "trade",
                "E": 1790649901913 + i,
                "s": sym,
                "t": seq,
                "p": f"{_px(rng, 10000, 10400)}000000",
                "q": f"{rng.randint(1, 10**8) / 10**8:.8f}",
                "T": 1790649901913 + i,
                "m": rng.random() < 0.5,
                "M": True,
            }
        elif kind == "ticker":
            stream = f"{low}@bookTicker"
            data = {
                "u": seq,
                "s": sym,
                "b": f"{_px(rng, 10000, 10200)}000000",
                "B": f"{rng.randint(1, 10**8) / 10**8:.8f}",
                "a": f"{_px(rng, 10201, 10400)}000000",
                "A": f"{rng.randint(1, 10**8) / 10**8:.8f}",
            }
        else:
            stream = f"{low}@depth@100ms"
            side = rng.choice(("a", "b"))
            price = _px(rng, 10201, 10400) if side == "a" else _px(rng, 10000, 10200)
            size = "0.00000000" if rng.random() < 0.2 else f"{rng.randint(1, 10**8) / 10**8:.8f}"
            data = {"e": "depthUpdate", "E": 1633998512068 + i, "s": sym, "U": seq, "u": seq}
            data |= {"b": [], "a": []}
            data[side].append([f"{price}000000", size])
        out.append(orjson.dumps({"stream": stream, "data": data}))
    return out


VENUES: dict[str, tuple[Venue, Callable[[str, list[str]], list[bytes]], list[str]]] = {
    "kucoin": (KUCOIN, kucoin_frames, [f"S{i}-USDT" for i in range(SYMBOLS)]),
    "binance": (BINANCE, binance_frames, [f"S{i}USDT" for i in range(SYMBOLS)]),
}


KINDS = ("trades", "ticker", "orderbook")


class Variant:
    """One venue's session over N frames of one kind, reset before every round."""

    def __init__(self, venue_name: str, kind: str) -> None:
        venue, make, symbols = VENUES[venue_name]
        channel = venue.spec.channel(kind)
        assert channel is not None
        self.sink, self.events, routes = NullSink(), Events(), RouteTable()
        self.streams: list[Stream] = []
        for sid, sym in enumerate(symbols, 1):
            stream = make_stream(venue, channel, sym, sid, self.sink, lambda s: None)
            routes.add(stream)
            self.streams.append(stream)
        self.on_message = venue.session(routes, self.sink, self.events).on_message
        self.frames = make(kind, symbols)

    def reset(self) -> None:
        for stream in self.streams:
            stream.last_id = 0
            stream.count = 0
            if stream.book is not None:
                stream.book.start()
                stream.book.on_snapshot(BookSnapshot(SEQ0, [(100.0, 1.0)], [(103.0, 1.0)]), 0)
                stream.book.counters.deltas = 0

    def run(self) -> None:
        on_message = self.on_message
        for i, frame in enumerate(self.frames):
            on_message(frame, i)

    def check(self) -> None:
        """Every frame was taken: no error, no duplicate dropped, every book change applied."""
        assert self.events.errors == [], self.events.errors[:3]
        assert all(s.count == N // SYMBOLS for s in self.streams)
        for stream in self.streams:
            if stream.book is not None:
                assert stream.book.counters.deltas == N // SYMBOLS
                assert stream.book.counters.gaps == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("venue_name", ["kucoin", "binance"])
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
    import time

    parser = argparse.ArgumentParser(description="interleaved rounds, ns per message")
    parser.add_argument("--rounds", type=int, default=21)
    rounds = parser.parse_args().rounds
    variants = {(v, k): Variant(v, k) for k in KINDS for v in VENUES}
    for variant in variants.values():
        variant.reset()
        variant.run()
        variant.check()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in variants}
    for _ in range(rounds):
        for key, variant in variants.items():
            variant.reset()
            start = time.perf_counter_ns()
            variant.run()
            times[key].append((time.perf_counter_ns() - start) / N)
    print("| kind | venue | median ns/msg | min-max | KuCoin / Binance (medians) |")
    print("|---|---|---|---|---|")
    for kind in KINDS:
        for venue_name in VENUES:
            t = times[(venue_name, kind)]
            ratio = statistics.median(times[("kucoin", kind)]) / statistics.median(
                times[("binance", kind)]
            )
            print(
                f"| {kind} | {venue_name} | {statistics.median(t):,.0f} | "
                f"{min(t):,.0f}-{max(t):,.0f} | {ratio:.2f} |"
            )


if __name__ == "__main__":
    main()
