"""`wsm bench` end to end in a tiny configuration, and the short soak: correctness only (the
figures of such short runs mean nothing; nothing here asserts a time or a rate)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def wsm(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bench_runs_end_to_end_and_emits_json() -> None:
    out = wsm("bench", "ceiling", "wsm", "latency", "fanout", "--tiny", "--json", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert set(report["sections"]) == {"ceiling", "wsm", "latency", "fanout"}
    assert report["env"]["machine"]["cores"] >= 1
    assert report["env"]["versions"]["picows"]
    assert report["env"]["command"].startswith("wsm bench")
    for name, section in report["sections"].items():
        assert "error" not in section, (name, section.get("error"))
        for row in section["rows"]:
            assert "error" not in row, (name, row["label"], row.get("error"))
            assert row["counts_ok"], (name, row["label"], row.get("shortfall"))
            if row["label"].startswith("baseline: ring alone"):  # latency only
                assert row["latency_us"]["p50"]["median"] > 0
                continue
            assert row["messages_per_s"]["median"] > 0
            assert row["cpu_us_per_msg"]["median"] > 0
    labels = [r["label"] for r in report["sections"]["wsm"]["rows"]]
    assert "wsm binance trade" in labels and "wsm binance book" in labels
    book = next(r for r in report["sections"]["wsm"]["rows"] if r["label"] == "wsm binance book")
    assert book["levels_per_s"]["median"] > 0
    lat = report["sections"]["latency"]["rows"][0]["latency_us"]
    assert lat["p50"]["median"] <= lat["p99"]["median"] <= lat["p99.9"]["median"]
    assert len(report["sections"]["latency"]["rows"]) == 2  # the engine and the ring alone
    assert len(report["sections"]["fanout"]["rows"]) == 2


def test_unknown_section_is_refused() -> None:
    out = wsm("bench", "nonsense", timeout=60)
    assert out.returncode == 2
    assert "unknown section" in out.stdout


def test_short_soak_detects_every_injected_gap_and_leaves_nothing() -> None:
    out = wsm("bench", "soak", "--minutes", "0.4", "--tiny", "--json", timeout=300)
    report = json.loads(out.stdout)["soak"]
    assert report["leftover_segments"] == []
    assert report["gaps"], "no venue ran"
    for venue, gaps in report["gaps"].items():
        assert gaps["injected"] > 0, venue
        assert gaps["reader_lost"] == 0, venue
        # every loss told to the readers: as a gap, or covered by a resync around it
        skips = report["skips"][venue]
        assert skips["missed"] <= gaps["healed"], (venue, skips)  # healed: nothing to see
        assert skips["detected"] + skips["absorbed"] == gaps["injected"], (venue, skips)
        assert skips["detected"] > 0, (venue, skips)
    assert set(report["fault_kinds"]) >= {"skip", "close", "malformed"}
    assert all(n > 0 for n in report["reconnects"].values())
    assert report["ok"]
    assert out.returncode == 0


def test_peers_section_measures_every_venue_cryptofeed_runs_on_and_reports_the_others() -> None:
    pytest.importorskip("cryptofeed", reason="the peers: pip install -e '.[peers]'")
    pytest.importorskip("ccxt", reason="the peers: pip install -e '.[peers]'")
    out = wsm("bench", "peers", "--tiny", "--json", timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    section = json.loads(out.stdout)["sections"]["peers"]
    rows = {r["label"]: r for r in section["rows"]}
    not_run = {label for label, r in rows.items() if "error" in r}
    assert not_run == {"cryptofeed coinbase", "cryptofeed kraken", "cryptofeed kucoin"}
    for label in not_run:
        assert rows[label]["error"] and rows[label]["rounds"] == 0
    for label, row in rows.items():
        if label not in not_run:
            assert row["counts_ok"], (label, row.get("shortfall"))
    for venue in ("binance-usdm", "bybit", "bybit-linear", "okx"):
        for what in ("trade", "book delta"):
            assert section["ratios"][f"wsm/cryptofeed CPU per {what}, {venue}"] > 0
    assert "wsm, trade" in rows and "cryptofeed, aggTrade" in rows  # Binance's rows stay
    assert set(section["targets"]) == {
        "wsm CPU per trade <= 1/6 of cryptofeed's",
        "wsm CPU per book delta <= 1/3 of cryptofeed's",
    }
