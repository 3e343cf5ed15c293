"""`wsm tail` as a real subprocess reading a ring this test writes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest

from engine.records import Flag, GapReason, Kind, Side
from engine.ring import Ring, RingWriter
from engine.symbols import SymbolRegistry


@pytest.fixture
def engine(instance: str) -> Iterator[RingWriter]:
    reg = SymbolRegistry.create(instance)
    reg.register_exchange(2, "coinbase")
    for venue, sym in (("BTC-USD", "BTC-USD"), ("ETH-USD", "ETH-USD")):
        reg.add(
            exchange_id=2,
            symbol=sym,
            venue_symbol=venue,
            price_decimals=2,
            size_decimals=8,
            base=sym[:3],
            quote="USD",
        )
    ring = Ring.create(instance=instance, exchange="coinbase", exchange_id=2, capacity=1024)
    w = RingWriter(instance=instance, exchange="coinbase")
    yield w
    w.close()
    ring.close()
    reg.close()


def run_tail(instance: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "tail", "--instance", instance, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_tail_prints_json_lines_with_exact_decimals(engine: RingWriter, instance: str) -> None:
    engine.append(Kind.TRADE, Side.SELL, Flag.LAST, 1, 1_000, 2_000, 65000.1, 0.00012, 9, 0)
    engine.append_bbo(Flag.LAST, 2, 3_000, 4_000, 3400.5, 1.5, 3400.75, 2.25)
    engine.append(Kind.BOOK_LEVEL, Side.BUY, Flag.SNAPSHOT | Flag.LAST, 2, 0, 5, 3400.0, 0.0, 77, 0)
    engine.append(Kind.GAP, 0, Flag.LAST, 1, 0, 6, 0.0, 0.0, 76, GapReason.SEQUENCE_GAP)
    engine.commit()
    done = run_tail(instance, "coinbase", "--json", "--start", "oldest", "--count", "4")
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert lines == [
        {
            "seq": 0,
            "kind": "trade",
            "exchange": "coinbase",
            "symbol": "BTC-USD",
            "exch_ts": 1000,
            "recv_ts": 2000,
            "side": "sell",
            "price": "65000.10",
            "size": "0.00012000",
            "trade_id": 9,
            "last": True,
        },
        {
            "seq": 1,
            "kind": "bbo",
            "exchange": "coinbase",
            "symbol": "ETH-USD",
            "exch_ts": 3000,
            "recv_ts": 4000,
            "bid_price": "3400.50",
            "bid_size": "1.50000000",
            "ask_price": "3400.75",
            "ask_size": "2.25000000",
            "last": True,
        },
        {
            "seq": 2,
            "kind": "book_level",
            "exchange": "coinbase",
            "symbol": "ETH-USD",
            "exch_ts": 0,
            "recv_ts": 5,
            "side": "bid",
            "price": "3400.00",
            "size": "0.00000000",
            "update_id": 77,
            "snapshot": True,
            "last": True,
        },
        {
            "seq": 3,
            "kind": "gap",
            "exchange": "coinbase",
            "symbol": "BTC-USD",
            "exch_ts": 0,
            "recv_ts": 6,
            "reason": "sequence_gap",
            "update_id": 76,
            "exchange_wide": False,
            "last": True,
        },
    ]


def test_tail_filters_by_symbol_in_any_spelling(engine: RingWriter, instance: str) -> None:
    for i in range(6):
        engine.append(Kind.TRADE, Side.BUY, Flag.LAST, 1 + i % 2, i, i, 100.0 + i, 1.0, i, 0)
    engine.commit()
    done = run_tail(
        instance,
        "coinbase",
        "--json",
        "--start",
        "oldest",
        "--symbol",
        "eth/usd",
        "--timeout",
        "0.2",
    )
    assert done.returncode == 0, done.stderr
    assert [orjson.loads(x)["trade_id"] for x in done.stdout.splitlines()] == [1, 3, 5]


def test_tail_of_an_unknown_exchange_or_symbol_fails_clearly(
    engine: RingWriter, instance: str
) -> None:
    done = run_tail(instance, "nowhere", "--count", "1")
    assert done.returncode == 2
    assert "no ring for exchange 'nowhere'" in done.stderr
    done = run_tail(instance, "coinbase", "--symbol", "DOGE-USD", "--count", "1")
    assert done.returncode == 2
    assert "unknown symbol 'DOGE-USD' on coinbase" in done.stderr


def test_tail_text_output(engine: RingWriter, instance: str) -> None:
    engine.write(Kind.TRADE, Side.BUY, Flag.LAST, 1, 0, 0, 1.5, 2.0, 3, 0)
    done = run_tail(instance, "coinbase", "--start", "oldest", "--count", "1")
    assert done.returncode == 0, done.stderr
    assert "trade" in done.stdout
    assert "BTC-USD" in done.stdout
    assert "price=1.50" in done.stdout
