"""What the decode + parse benchmarks (`bench/test_parse_*.py`) share: the frame counts, a sink
that keeps nothing, Binance's frames as the in-run baseline, one venue session fed N frames of
one kind (`SessionRounds`), and the interleaved timing of several of them (`interleave`)."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

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


def rand_px(rng: random.Random, lo: int, hi: int) -> str:
    return f"{rng.randint(lo, hi) / 100:.2f}"


def rand_qty(rng: random.Random) -> str:
    return f"{rng.randint(1, 10**8) / 10**8:.8f}".rstrip("0").rstrip(".")


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
                "p": f"{rand_px(rng, 10000, 10400)}000000",
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
                "b": f"{rand_px(rng, 10000, 10200)}000000",
                "B": f"{rng.randint(1, 10**8) / 10**8:.8f}",
                "a": f"{rand_px(rng, 10201, 10400)}000000",
                "A": f"{rng.randint(1, 10**8) / 10**8:.8f}",
            }
        else:
            stream = f"{low}@depth@100ms"
            side = rng.choice(("a", "b"))
            price = rand_px(rng, 10201, 10400) if side == "a" else rand_px(rng, 10000, 10200)
            size = "0.00000000" if rng.random() < 0.2 else f"{rng.randint(1, 10**8) / 10**8:.8f}"
            data = {"e": "depthUpdate", "E": 1633998512068 + i, "s": sym, "U": seq, "u": seq}
            data |= {"b": [], "a": []}
            data[side].append([f"{price}000000", size])
        out.append(orjson.dumps({"stream": stream, "data": data}))
    return out


class SessionRounds:
    """One venue's session over N frames of one kind (its `channel`), reset before every
    round: every stream forgets its last id and count, every book starts again from a small
    snapshot (`start_book`, which a venue with its own snapshots overrides)."""

    def __init__(self, venue: Venue, channel: str, symbols: list[str], frames: list[bytes]) -> None:
        ch = venue.spec.channel(channel)
        assert ch is not None
        self.sink, self.events, routes = NullSink(), Events(), RouteTable()
        self.streams: list[Stream] = []
        for sid, sym in enumerate(symbols, 1):
            stream = make_stream(venue, ch, sym, sid, self.sink, lambda s: None)
            routes.add(stream)
            self.streams.append(stream)
        self.on_message = venue.session(routes, self.sink, self.events).on_message
        self.frames = frames

    def start_book(self, stream: Stream) -> None:
        assert stream.book is not None
        stream.book.start()
        stream.book.on_snapshot(BookSnapshot(SEQ0, [(100.0, 1.0)], [(103.0, 1.0)]), 0)

    def reset(self) -> None:
        for stream in self.streams:
            stream.last_id = 0
            stream.count = 0
            if stream.book is not None:
                self.start_book(stream)
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


def interleave(variants: dict[Any, SessionRounds], rounds: int) -> dict[Any, list[float]]:
    """Warm every variant up (and check it took every frame), then time `rounds` rounds of
    each, interleaved so that the machine's drift hits them alike: ns per message."""
    for variant in variants.values():
        variant.reset()
        variant.run()
        variant.check()
    times: dict[Any, list[float]] = {key: [] for key in variants}
    for _ in range(rounds):
        for key, variant in variants.items():
            variant.reset()
            start = time.perf_counter_ns()
            variant.run()
            times[key].append((time.perf_counter_ns() - start) / N)
    return times
