"""`wsm bench peers` beyond Binance spot: cryptofeed's feeds for the other blast-capable venues
run against those venues' simulators and hand every blasted frame to their callbacks, and every
other registered venue is reported with the reason cryptofeed cannot run there. Correctness
only: nothing here asserts a time or a rate."""

from __future__ import annotations

import pytest

from bench.harness import Simulator, run_client
from bench.suite import peer_venues
from engine.registry import venues

pytestmark = pytest.mark.slow


def test_every_registered_venue_but_binance_is_measured_or_has_a_reason() -> None:
    got = peer_venues()
    assert set(got) == set(venues()) - {"binance"}
    assert got["bybit"] == ["trade", "book"]
    assert got["bybit-linear"] == ["trade", "book"]
    assert got["okx"] == ["trade", "book"]
    assert got["binance-usdm"] == ["aggTrade", "book"]
    no_blast = "no blast-capable simulator (no blast_stream)"
    assert got["coinbase"] == no_blast
    assert got["kucoin"] == no_blast
    assert got["kraken"] == (
        "cryptofeed 2.4.1's Kraken feed speaks WebSocket v1 (array frames), the simulator v2 "
        f"only; {no_blast}"
    )


@pytest.mark.parametrize(
    ("venue", "kind"),
    [
        ("bybit", "trade"),
        ("bybit", "book"),
        ("bybit-linear", "trade"),
        ("bybit-linear", "book"),
        ("okx", "trade"),
        ("okx", "book"),
        ("binance-usdm", "aggTrade"),
        ("binance-usdm", "book"),
    ],
)
def test_cryptofeed_handles_every_blasted_frame(venue: str, kind: str) -> None:
    pytest.importorskip("cryptofeed", reason="the peers: pip install -e '.[peers]'")
    count = 50 if kind == "book" else 200
    sim = Simulator(venue, symbols=2)
    try:
        job = {
            "variant": "cryptofeed",
            "kind": kind,
            "exchange": venue,
            "symbols": ["BTCUSDT", "ETHUSDT"],
            "warmup": int(kind == "book"),
            "expect": 2 * count,
        }
        result = run_client(sim, job, rate=None, count=count)
    finally:
        sim.stop()
        if sim.proc.stdout is not None:  # Simulator.stop leaves its pipe to the caller
            sim.proc.stdout.close()
    assert result["sim_sent"] == 2 * count
    assert result["messages"] == 2 * count
    assert result["callbacks"] == 2 * count  # each one parsed into a trade or a book
