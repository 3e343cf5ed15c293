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
                "size": rand_qty(rng),
                "price": rand_px(rng, 10000, 10400),
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
                "bestAsk": rand_px(rng, 10201, 10400),
                "size": rand_qty(rng),
                "bestBidSize": rand_qty(rng),
                "price": rand_px(rng, 10000, 10400),
                "time": 1619378326323 + i,
                "bestAskSize": rand_qty(rng),
                "bestBid": rand_px(rng, 10000, 10200),
            }
            topic, subject = f"/market/ticker:{sym}", "trade.ticker"
        else:
            side = rng.choice(("asks", "bids"))
            price = rand_px(rng, 10201, 10400) if side == "asks" else rand_px(rng, 10000, 10200)
            size = "0" if rng.random() < 0.2 else rand_qty(rng)
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


VENUES: dict[str, tuple[Venue, Callable[[str, list[str]], list[bytes]], list[str]]] = {
    "kucoin": (KUCOIN, kucoin_frames, [f"S{i}-USDT" for i in range(SYMBOLS)]),
    "binance": (BINANCE, binance_frames, [f"S{i}USDT" for i in range(SYMBOLS)]),
}


KINDS = ("trades", "ticker", "orderbook")


class Variant(SessionRounds):
    def __init__(self, venue_name: str, kind: str) -> None:
        venue, make, symbols = VENUES[venue_name]
        super().__init__(venue, kind, symbols, make(kind, symbols))


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

    parser = argparse.ArgumentParser(description="interleaved rounds, ns per message")
    parser.add_argument("--rounds", type=int, default=21)
    rounds = parser.parse_args().rounds
    times = interleave({(v, k): Variant(v, k) for k in KINDS for v in VENUES}, rounds)
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
