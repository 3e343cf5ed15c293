"""KuCoin decode+parse per message kind, with Binance's equivalent as the in-run baseline.

Run: `pytest bench/test_parse_kucoin.py --benchmark-columns=min,median,max`.

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


@pytest.mark.parametrize("kind", ["trades", "ticker", "orderbook"])
@pytest.mark.parametrize("venue_name", ["kucoin", "binance"])
def test_decode_and_parse(benchmark: Any, venue_name: str, kind: str) -> None:
    venue, make, symbols = VENUES[venue_name]
    channel = venue.spec.channel(kind)
    assert channel is not None
    sink, events, routes = NullSink(), Events(), RouteTable()
    streams: list[Stream] = []
    for sid, sym in enumerate(symbols, 1):
        stream = make_stream(venue, channel, sym, sid, sink, lambda s: None)
        routes.add(stream)
        streams.append(stream)
    session = venue.session(routes, sink, events)
    frames = make(kind, symbols)
    on_message = session.on_message

    def reset() -> None:
        for stream in streams:
            stream.last_id = 0
            if stream.book is not None:
                snap = BookSnapshot(SEQ0, [(100.0, 1.0)], [(103.0, 1.0)])
                stream.book.start()
                stream.book.on_snapshot(snap, 0)

    def run() -> None:
        for i, frame in enumerate(frames):
            on_message(frame, i)

    reset()
    run()  # warm up, and prove every frame is taken
    assert events.errors == [], events.errors[:3]
    assert all(s.count == N // SYMBOLS for s in streams)
    for stream in streams:
        if stream.book is not None:
            assert stream.book.counters.deltas == N // SYMBOLS, "every change was applied"
            assert stream.book.counters.gaps == 0
    benchmark.extra_info["messages_per_round"] = N
    benchmark.pedantic(run, setup=reset, rounds=30, iterations=1)
