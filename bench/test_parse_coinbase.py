"""Decode + parse cost per message kind, Coinbase Advanced Trade against Binance in the same run.
Run: `pytest bench/test_parse_coinbase.py --benchmark-columns=min,median,max`.

Each round feeds N real frames (renumbered so that every one is new: increasing sequence
numbers, trade and update ids) through the venue's session into a sink that keeps nothing, so
the figures are the adapter's and the book's cost, not the ring's. Divide a round by N
(`extra_info["messages_per_round"]`) for ns per message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from adapters.binance import VENUE as BINANCE
from adapters.coinbase import VENUE as COINBASE
from engine.streams import RouteTable, make_stream
from engine.venue import Venue
from tests.support import FIXTURES, Events, frames

N = 1_000
AT = FIXTURES / "coinbase" / "advanced_trade"
SPOT = FIXTURES / "binance" / "spot"


class NullSink:
    def append(self, *record: Any) -> None:
        pass

    def append_bbo(self, *record: Any) -> None:
        pass


def session(venue: Venue, channel: str, venue_symbol: str) -> tuple[Any, Any]:
    routes, sink = RouteTable(), NullSink()
    ch = venue.spec.channel(channel)
    assert ch is not None
    stream = make_stream(venue, ch, venue_symbol, 1, sink, lambda _s: None)
    routes.add(stream)
    return venue.session(routes, sink, Events()), stream


def coinbase_frames(path: str, index: int, field: str | None = None) -> list[bytes]:
    """N copies of one real frame, `sequence_num` 1..N (and `field`, an id, increasing)."""
    text = frames(AT / path)[index].decode()
    out = []
    for i in range(1, N + 1):
        frame = re.sub(r'"sequence_num":\d+', f'"sequence_num":{i}', text, count=1)
        if field is not None:
            frame = re.sub(rf'"{field}":"?(\d+)"?', lambda m, i=i: _bump(m, i), frame, count=1)
        out.append(frame.encode())
    return out


def _bump(m: re.Match[str], i: int) -> str:
    quoted = m.group(0).endswith('"')
    value = int(m.group(1)) + i
    name = m.group(0).split(":")[0]
    return f'{name}:"{value}"' if quoted else f"{name}:{value}"


def binance_frames(
    path: str, index: int, ids: Callable[[dict[str, Any], int], None]
) -> list[bytes]:
    msg = json.loads(frames(SPOT / path)[index])
    out = []
    for i in range(1, N + 1):
        ids(msg["data"], i)
        out.append(json.dumps(msg, separators=(",", ":")).encode())
    return out


def _depth_ids(data: dict[str, Any], i: int) -> None:
    data["U"], data["u"] = 998 + 3 * i, 1000 + 3 * i  # contiguous from 1001


def _snapshot_book(stream: Any, venue: Venue) -> None:
    """Make the stream's book live, so that deltas are applied (and written)."""
    from engine.venue import BookSnapshot

    stream.book.on_snapshot(BookSnapshot(1000 if venue is BINANCE else 0, [], []), 0)


CASES: dict[str, Callable[[], tuple[Any, Any, list[bytes], Callable[[], None]]]] = {}


def case(name: str) -> Callable[[Any], Any]:
    def register(fn: Any) -> Any:
        CASES[name] = fn
        return fn

    return register


@case("coinbase-trade")
def _cb_trade() -> Any:
    s, stream = session(COINBASE, "trades", "BTC-USD")
    msgs = coinbase_frames("market_trades_update_real.jsonl", 0, "trade_id")
    return s, stream, msgs, lambda: _reset(s, stream)


@case("binance-trade")
def _bn_trade() -> Any:
    s, stream = session(BINANCE, "trades", "BTCUSDT")
    msgs = binance_frames("trade_observed.jsonl", 0, lambda d, i: d.update(t=i))
    return s, stream, msgs, lambda: _reset(s, stream)


@case("coinbase-bbo")
def _cb_bbo() -> Any:
    s, stream = session(COINBASE, "ticker", "BTC-USD")
    msgs = coinbase_frames("ticker_real.jsonl", 3)
    return s, stream, msgs, lambda: _reset(s, stream)


@case("binance-bbo")
def _bn_bbo() -> Any:
    s, stream = session(BINANCE, "ticker", "NKNUSDT")
    msgs = binance_frames("book_ticker_real.jsonl", 0, lambda d, i: d.update(u=i))
    return s, stream, msgs, lambda: _reset(s, stream)


@case("coinbase-book-delta-3-levels")
def _cb_delta() -> Any:
    s, stream = session(COINBASE, "orderbook", "ETH-USD")
    msgs = coinbase_frames("l2_data_update_real.jsonl", 6)  # ETH-USD, 3 levels
    _snapshot_book(stream, COINBASE)
    return s, stream, msgs, lambda: _reset(s, stream)


@case("binance-book-delta-3-levels")
def _bn_delta() -> Any:
    s, stream = session(BINANCE, "orderbook", "NKNUSDT")
    msgs = binance_frames("depth_update_real.jsonl", 0, _depth_ids)  # 3 levels
    _snapshot_book(stream, BINANCE)
    return s, stream, msgs, lambda: _reset(s, stream, book_id=1000)


@case("coinbase-heartbeat")
def _cb_heartbeat() -> Any:
    s, stream = session(COINBASE, "trades", "BTC-USD")
    msgs = coinbase_frames("heartbeats_real.jsonl", 0, "heartbeat_counter")
    return s, stream, msgs, lambda: _reset(s, stream)


def _reset(s: Any, stream: Any, book_id: int = 0) -> None:
    stream.last_id = 0
    if stream.book is not None:
        stream.book.last_id = book_id
    if hasattr(s, "next_seq"):
        s.next_seq, s.heartbeat = 1, -1


@pytest.mark.parametrize("kind", list(CASES))
def test_decode_and_parse(benchmark: Any, kind: str) -> None:
    s, stream, msgs, reset = CASES[kind]()
    on_message = s.on_message
    events = s.events

    def run() -> None:
        for m in msgs:
            on_message(m, 1)

    benchmark.extra_info["messages_per_round"] = N
    benchmark.extra_info["bytes_per_message"] = len(msgs[0])
    benchmark.pedantic(run, setup=reset, rounds=100, iterations=1, warmup_rounds=2)
    assert events.errors == [] and events.gaps == []
    if stream.book is not None:
        assert stream.book.counters.gaps == 0 and stream.book.counters.deltas >= N
