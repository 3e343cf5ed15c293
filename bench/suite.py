"""`wsm bench`: the end-to-end benchmark suite, against the project's own simulators.

Every section runs its variants in interleaved rounds (round 1 of every variant, then round 2,
...), each variant in a fresh client process, the simulator in another process, and reports
medians, min-max and ratios against baselines measured in the same run. Message counts are
checked against what the simulator sent; a variant that cannot run is reported with the reason.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.harness import BenchError, Simulator, run_client

SECTIONS = ("ceiling", "wsm", "peers", "paced", "latency", "scaling", "fanout")
PEERS = ("websockets", "cryptofeed", "ccxt")


@dataclass
class Options:
    rounds: int = 3
    trades: int = 300_000  # messages per burst: the engine and the ceiling
    book: int = 30_000  # depth messages per burst (10 levels each)
    peer_trades: int = 40_000  # bursts for the (much slower) peers
    peer_book: int = 10_000
    paced_streams: int = 8
    paced_rate: float = 125.0  # per stream: 1,000 msg/s in all, one frame per write
    paced_seconds: float = 8.0
    latency_rate: float = 10_000.0
    latency_seconds: float = 10.0
    fanout_readers: tuple[int, ...] = (1, 4, 16)
    fanout_rate: float = 50_000.0
    fanout_seconds: float = 4.0
    peers: tuple[str, ...] = PEERS

    @classmethod
    def tiny(cls) -> Options:
        """A configuration that only checks that everything runs (tests)."""
        return cls(
            rounds=1,
            trades=3_000,
            book=300,
            peer_trades=500,
            peer_book=100,
            paced_streams=2,
            paced_rate=100.0,
            paced_seconds=1.0,
            latency_rate=1_000.0,
            latency_seconds=1.0,
            fanout_readers=(1, 2),
            fanout_rate=2_000.0,
            fanout_seconds=1.0,
        )


@dataclass
class Variant:
    label: str
    job: dict[str, Any]
    count: int  # frames per stream and connection
    rate: float | None = None  # per stream; None: as fast as the client drains
    sim: str = "binance"
    expect: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def __post_init__(self) -> None:
        streams = len(self.job.get("symbols", [])) or 1
        self.expect = self.count * streams
        self.job.setdefault("expect", self.expect)


Progress = Callable[[str], None]


def _median(values: list[float | None]) -> dict[str, float] | None:
    xs = [x for x in values if x is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def summarize(v: Variant) -> dict[str, Any]:
    """Median (min-max) of each figure over the rounds, and the count check."""
    ok = [r for r in v.results if "error" not in r]
    out: dict[str, Any] = {"label": v.label, "rounds": len(ok), "expected": v.expect}
    if v.error and not ok:
        out["error"] = v.error
        return out
    out["messages_per_s"] = _median([r["rate"] for r in ok])
    out["cpu_us_per_msg"] = _median(
        [r["cpu_s"] / max(r["messages"], 1) * 1e6 for r in ok if r["cpu_s"] is not None]
    )
    if any(r.get("levels") for r in ok):
        out["levels_per_s"] = _median([r["levels"] / r["seconds"] for r in ok if r.get("seconds")])
    lat = [r["latency_us"] for r in ok if r.get("latency_us")]
    if lat:
        out["latency_us"] = {k: _median([x[k] for x in lat]) for k in ("p50", "p99", "p99.9")}
    if any("frames_per_read" in r for r in ok):
        out["frames_per_read"] = _median([r["frames_per_read"] for r in ok])
    shortfalls = [
        f"got {r['messages']} of {v.expect} (simulator sent {r.get('sim_sent')})"
        for r in ok
        if r["messages"] != v.expect or r.get("sim_sent") not in (None, v.expect)
    ]
    out["counts_ok"] = not shortfalls
    if shortfalls:
        out["shortfall"] = shortfalls
    for key in ("lost", "gaps", "parse_errors"):
        if any(r.get(key) for r in ok):
            out[key] = sum(r.get(key) or 0 for r in ok)
    if v.error:
        out["error"] = v.error
    out["raw"] = ok
    return out


def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    x, y = a.get(key), b.get(key)
    if not x or not y or not y["median"]:
        return None
    return float(x["median"] / y["median"])


class Suite:
    def __init__(self, options: Options, progress: Progress | None = None) -> None:
        self.o = options
        self.progress = progress or (lambda msg: None)
        self.sims: dict[str, Simulator] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def sim(self, exchange: str) -> Simulator:
        if exchange not in self.sims:
            self.sims[exchange] = Simulator(exchange, symbols=max(self.o.paced_streams, 10))
        return self.sims[exchange]

    def close(self) -> None:
        for s in self.sims.values():
            s.stop()
        self.sims.clear()

    def interleave(self, section: str, variants: list[Variant]) -> list[dict[str, Any]]:
        for r in range(self.o.rounds):
            for v in variants:
                if v.error and not v.results:
                    continue  # it could not run in round 1: the reason is reported
                self.progress(f"{section}: {v.label} (round {r + 1}/{self.o.rounds})")
                try:
                    res = run_client(self.sim(v.sim), dict(v.job), rate=v.rate, count=v.count)
                    v.results.append(res)
                except BenchError as exc:
                    v.error = str(exc)[:500]
        return [summarize(v) for v in variants]

    def steps(self, sections: list[str]) -> int:
        """How many client runs the sections take (for the progress bar)."""
        n = {
            "ceiling": 2,
            "wsm": sum(len(k) for k in blast_kinds().values()) + 1,
            "peers": 4
            + 2 * len(self.o.peers)
            + 1
            + (
                sum(2 * len(k) for k in peer_venues().values() if not isinstance(k, str))
                if "cryptofeed" in self.o.peers
                else 0
            ),
            "paced": 2 + len(self.o.peers),
            "latency": 2,
            "scaling": min(3, len(blast_venues())),
            "fanout": len(self.o.fanout_readers),
        }
        return sum(n[s] for s in sections) * self.o.rounds

    # -- sections ---------------------------------------------------------------------------

    def ceiling(self) -> dict[str, Any]:
        n = self.o.trades
        rows = self.interleave(
            "ceiling",
            [
                Variant("simulator -> raw socket reader", _job("raw", "trade", 1), n),
                Variant("picows client, frames discarded", _job("ceiling", "trade", 1), n),
            ],
        )
        return {
            "title": "Receive ceiling (Binance trade frames, one connection, bursts)",
            "rows": rows,
            "ratios": {
                "simulator alone / picows ceiling": ratio(rows[0], rows[1], "messages_per_s")
            },
        }

    def wsm(self) -> dict[str, Any]:
        variants = [
            Variant("ceiling (picows, discard), trades", _job("ceiling", "trade", 1), self.o.trades)
        ]
        kinds = blast_kinds()
        for venue in blast_venues():
            for kind, n in (
                ("trade", self.o.trades),
                ("bbo", self.o.trades),
                ("book", self.o.book),
            ):
                if kind not in kinds[venue]:
                    continue
                v = Variant(f"wsm {venue} {kind}", _job("wsm", kind, 1), n, sim=venue)
                v.job["exchange"] = venue
                v.job["symbols"] = [BLAST_SYMBOLS[0]]  # resolved by the engine for any venue
                variants.append(v)
        rows = self.interleave("wsm", variants)
        ceil = rows[0]
        ratios = {
            f"{r['label']} rate / ceiling rate": ratio(r, ceil, "messages_per_s")
            for r in rows[1:]
            if "trade" in r["label"]
        }
        return {
            "title": "Full path: simulator -> worker -> ring -> one sleeping reader (bursts)",
            "rows": rows,
            "ratios": ratios,
            "targets": _wsm_targets(rows, ceil),
        }

    def peers(self) -> dict[str, Any]:
        t, b = self.o.peer_trades, self.o.peer_book
        variants = [
            Variant("ceiling (picows, discard), trade", _job("ceiling", "trade", 1), t),
            Variant("wsm, trade", _job("wsm", "trade", 1), t),
            Variant("wsm, aggTrade", _job("wsm", "aggTrade", 1), t),
        ]
        # cryptofeed's Binance TRADES channel is aggTrade; the others read @trade
        trade_kind = {"cryptofeed": "aggTrade"}
        for peer in self.o.peers:
            kind = trade_kind.get(peer, "trade")
            variants.append(Variant(f"{peer}, {kind}", _job(peer, kind, 1), t))
        variants.append(Variant("wsm, book", _job("wsm", "book", 1), b))
        for peer in self.o.peers:
            variants.append(Variant(f"{peer}, book", _job(peer, "book", 1, warmup=1), b))
        venues = peer_venues() if "cryptofeed" in self.o.peers else {}
        for venue, kinds in venues.items():
            if isinstance(kinds, str):  # cryptofeed cannot run there: the reason is the row
                variants.append(Variant(f"cryptofeed {venue}", {}, 0, error=kinds))
                continue
            for kind in kinds:
                n = b if kind == "book" else t
                wsm = _job("wsm", kind, 1, exchange=venue, symbols=[BLAST_SYMBOLS[0]])
                feed = _job("cryptofeed", kind, 1, exchange=venue, warmup=int(kind == "book"))
                variants.append(Variant(f"wsm {venue} {kind}", wsm, n, sim=venue))
                variants.append(Variant(f"cryptofeed {venue} {kind}", feed, n, sim=venue))
        rows = self.interleave("peers", variants)
        by = {r["label"]: r for r in rows}
        ratios: dict[str, Any] = {}
        for peer in self.o.peers:
            kind = trade_kind.get(peer, "trade")
            base = "wsm, aggTrade" if kind == "aggTrade" else "wsm, trade"
            ratios[f"wsm/{peer} CPU per trade"] = ratio(
                by[base], by[f"{peer}, {kind}"], "cpu_us_per_msg"
            )
            ratios[f"wsm/{peer} CPU per book delta"] = ratio(
                by["wsm, book"], by[f"{peer}, book"], "cpu_us_per_msg"
            )
        ratios["wsm/ceiling CPU per trade"] = ratio(by["wsm, trade"], rows[0], "cpu_us_per_msg")
        for venue, kinds in venues.items():
            for kind in kinds if not isinstance(kinds, str) else ():
                what = "book delta" if kind == "book" else "trade"
                ratios[f"wsm/cryptofeed CPU per {what}, {venue}"] = ratio(
                    by[f"wsm {venue} {kind}"], by[f"cryptofeed {venue} {kind}"], "cpu_us_per_msg"
                )
        targets = {}
        if "cryptofeed" in self.o.peers:
            targets = {
                "wsm CPU per trade <= 1/6 of cryptofeed's": _le(
                    ratios["wsm/cryptofeed CPU per trade"], 1 / 6
                ),
                "wsm CPU per book delta <= 1/3 of cryptofeed's": _le(
                    ratios["wsm/cryptofeed CPU per book delta"], 1 / 3
                ),
            }
        return {
            "title": "Peers on the same simulator and frames (bursts): CPU per message",
            "rows": rows,
            "ratios": ratios,
            "targets": targets,
        }

    def paced(self) -> dict[str, Any]:
        o = self.o
        count = int(o.paced_rate * o.paced_seconds)
        symbols = paced_symbols(o.paced_streams)
        conns = max(1, o.paced_streams // 2)
        variants = [
            Variant(
                f"{name}, {'aggTrade' if name == 'cryptofeed' else 'trade'}",
                _job(
                    name,
                    "aggTrade" if name == "cryptofeed" else "trade",
                    1,
                    symbols=symbols,
                    connections=conns,
                ),
                count,
                rate=o.paced_rate,
            )
            for name in ("ceiling", "wsm", *o.peers)
        ]
        rows = self.interleave("paced", variants)
        by = {r["label"].split(",")[0]: r for r in rows}
        ratios = {
            f"wsm/{p} CPU per message": ratio(by["wsm"], by[p], "cpu_us_per_msg") for p in o.peers
        }
        ratios["wsm/ceiling CPU per message"] = ratio(by["wsm"], by["ceiling"], "cpu_us_per_msg")
        targets = {}
        if "cryptofeed" in o.peers:
            targets["paced CPU per message <= 1/2 of cryptofeed's"] = _le(
                ratios["wsm/cryptofeed CPU per message"], 0.5
            )
        return {
            "title": (
                f"Paced: {o.paced_streams} streams x {o.paced_rate:g} msg/s on {conns} connections "
                f"({o.paced_streams * o.paced_rate:g} msg/s, one frame per write)"
            ),
            "rows": rows,
            "ratios": ratios,
            "targets": targets,
        }

    def latency(self) -> dict[str, Any]:
        o = self.o
        streams = 10
        per = o.latency_rate / streams
        v = Variant(
            f"wsm, trade, {o.latency_rate:g} msg/s",
            _job("wsm", "trade", 1, symbols=paced_symbols(streams)),
            int(per * o.latency_seconds),
            rate=per,
        )
        ring = Variant(
            f"baseline: ring alone (a writer process sleeping {1e6 / o.latency_rate:g} us "
            "per record)",
            {},
            int(o.latency_rate * min(o.latency_seconds, 5.0)),
        )
        for r in range(o.rounds):  # interleaved with the engine's rounds
            self.progress(f"latency: {v.label} (round {r + 1}/{o.rounds})")
            try:
                v.results.append(
                    run_client(self.sim(v.sim), dict(v.job), rate=v.rate, count=v.count)
                )
            except BenchError as exc:
                v.error = str(exc)[:500]
            self.progress(f"latency: {ring.label} (round {r + 1}/{o.rounds})")
            ring.results.append(_ring_alone(ring.count, 1.0 / o.latency_rate))
        rows = [summarize(v), summarize(ring)]
        p99 = (rows[0].get("latency_us") or {}).get("p99")
        return {
            "title": (
                f"Receive -> subscriber read latency, sleeping reader, {o.latency_rate:g} msg/s"
            ),
            "rows": rows,
            "targets": {"p99 <= 250 us at 10k msg/s": _le(p99["median"] if p99 else None, 250.0)},
        }

    def scaling(self) -> dict[str, Any]:
        venues = blast_venues()
        variants = []
        for k in range(1, min(3, len(venues)) + 1):
            job = _job("wsm", "trade", 1, symbols=[BLAST_SYMBOLS[0]])
            job["venues"] = [{"exchange": name} for name in venues[:k]]
            variants.append(
                Variant(f"{k} exchange(s): {', '.join(venues[:k])}", job, self.o.trades)
            )
        rows = self.interleave_multi("scaling", variants)
        note = None
        if len(venues) < 3:
            note = (
                f"only {len(venues)} venue(s) with a blast-capable simulator: {', '.join(venues)}"
            )
        return {
            "title": "Scaling: exchanges at once, one worker process each (bursts, trades)",
            "rows": rows,
            "note": note,
        }

    def interleave_multi(self, section: str, variants: list[Variant]) -> list[dict[str, Any]]:
        """Variants that span several simulators: blast all of them at once."""
        from bench.harness import Client

        for r in range(self.o.rounds):
            for v in variants:
                self.progress(f"{section}: {v.label} (round {r + 1}/{self.o.rounds})")
                sims = [self.sim(x["exchange"]) for x in v.job["venues"]]
                job = dict(v.job, idle=3.0, ws_url=sims[0].ws_url, rest_url=sims[0].rest_url)
                job["venues"] = [
                    {"exchange": x["exchange"], "ws_url": s.ws_url, "rest_url": s.rest_url}
                    for x, s in zip(v.job["venues"], sims)
                ]
                job["expect"] = v.count
                client = Client(job)
                try:
                    client.expect("ready", 120)
                    for s in sims:
                        s.control("blast", rate="max", count=v.count)
                    res = client.expect("result", 300)
                    res["sim_sent"] = sum(s.control("blast/stats")["sent"] for s in sims)
                    v.results.append(res)
                except BenchError as exc:
                    v.error = str(exc)[:500]
                finally:
                    client.stop()
                v.expect = v.count * len(sims)
        return [summarize(v) for v in variants]

    def fanout(self) -> dict[str, Any]:
        o = self.o
        streams = 10
        per = o.fanout_rate / streams
        count = int(per * o.fanout_seconds)
        variants = []
        for n in o.fanout_readers:
            job = _job("wsm", "trade", 1, symbols=paced_symbols(streams), readers=n)
            variants.append(Variant(f"{n} reader(s)", job, count, rate=per))
        rows = self.interleave("fanout", variants)
        base = rows[0]
        ratios = {
            f"writer CPU per message, {r['label']} / {base['label']}": ratio(
                r, base, "cpu_us_per_msg"
            )
            for r in rows[1:]
        }
        most = rows[-1]
        cost = ratio(most, base, "cpu_us_per_msg")
        return {
            "title": f"Fan-out: readers on one ring, writer at {o.fanout_rate:g} msg/s (trades)",
            "rows": rows,
            "ratios": ratios,
            "targets": {
                f"{most['label']} cost the writer < 5% CPU per message": _le(
                    None if cost is None else cost - 1.0, 0.05
                )
            },
        }


def _ring_alone(samples: int, interval: float) -> dict[str, Any]:
    """The floor of the latency figure on this machine at this moment: bench.wakeup's writer
    process (one record per `interval`, time.sleep between) and a sleeping reader process."""
    from bench.wakeup import percentiles, run_variant

    t0 = time.monotonic()
    lat = run_variant("sleep", samples, interval)
    seconds = time.monotonic() - t0
    return {
        "messages": len(lat),
        "rate": None,  # paced by time.sleep; its rate is not the point
        "seconds": seconds,
        "cpu_s": None,
        "latency_us": percentiles(lat),
        "sim_sent": None,
    }


def _le(value: float | None, limit: float) -> dict[str, Any]:
    return {"value": value, "limit": limit, "met": None if value is None else value <= limit}


def _ge(value: float | None, limit: float) -> dict[str, Any]:
    return {"value": value, "limit": limit, "met": None if value is None else value >= limit}


def _wsm_targets(rows: list[dict[str, Any]], ceil: dict[str, Any]) -> dict[str, Any]:
    trade = next((r for r in rows if r["label"] == "wsm binance trade"), None)
    if trade is None:
        return {}
    cpu = trade.get("cpu_us_per_msg")
    return {
        "full path >= 45% of the ceiling's rate": _ge(ratio(trade, ceil, "messages_per_s"), 0.45),
        "<= 1.2 us worker CPU per trade (issue 3, measured on a ~2x faster machine)": _le(
            cpu["median"] if cpu else None, 1.2
        ),
    }


def _job(variant: str, kind: str, _n: int, **extra: Any) -> dict[str, Any]:
    return {"variant": variant, "kind": kind, "symbols": ["BTCUSDT"]} | extra


def paced_symbols(n: int) -> list[str]:
    from adapters.simkit.market import DEFAULT_SYMBOLS

    usdt = [s[0] for s in DEFAULT_SYMBOLS if s[0].endswith("USDT")]
    return (usdt + [f"S{i:04d}USDT" for i in range(n)])[:n]


BLAST_SYMBOLS = ("BTC/USDT", "BTCUSDT", "BTC-USDT")  # as users write it, then venue spellings


def blast_venues() -> list[str]:
    """Registered venues whose simulator can blast trades (taken from the registry, so an
    adapter joins when its simulator grows a `blast_stream`): one per exchange first
    (`binance`, `bybit`, `okx`), then their other markets (`binance-usdm`, ...)."""
    out = sorted(blast_kinds())
    return [v for v in out if "-" not in v] + [v for v in out if "-" in v]


def blast_kinds() -> dict[str, list[str]]:
    """venue -> the message kinds (`trade`, `bbo`, `book`) its simulator can blast."""
    from engine.registry import venues

    channels = {"trade": "trades", "bbo": "ticker", "book": "orderbook"}
    out: dict[str, list[str]] = {}
    for name, venue in sorted(venues().items()):
        try:
            sim = venue.simulator()
        except NotImplementedError:
            continue
        if getattr(sim, "blast_stream", None) is None:
            continue
        kinds = []
        for kind, channel in channels.items():
            ch = venue.spec.channel(channel)
            if ch is not None and any(
                sim.blast_stream(venue.stream_name(ch, vs)) is not None for vs in BLAST_SYMBOLS
            ):
                kinds.append(kind)
        if "trade" in kinds:
            out[name] = kinds
    return out


# Why cryptofeed cannot run against a registered venue's simulator (checked with cryptofeed
# 2.4.1); a venue without a blast-capable simulator is reported as such in any case.
CRYPTOFEED_MISMATCH = {
    "kraken": "cryptofeed 2.4.1's Kraken feed speaks WebSocket v1 (array frames), "
    "the simulator v2 only",
}


def peer_venues() -> dict[str, list[str] | str]:
    """Registered venues other than Binance spot (whose rows are the section's own) -> the
    kinds (`trade` or `aggTrade`, `book`) cryptofeed's feed is measured on against that
    venue's simulator, or the reason it cannot be (a row, never skipped silently)."""
    from bench.clients import CRYPTOFEED_VENUES
    from engine.registry import venues

    kinds = blast_kinds()
    out: dict[str, list[str] | str] = {}
    for name in sorted(venues()):
        if name == "binance":
            continue
        reasons = []
        if name in CRYPTOFEED_MISMATCH:
            reasons.append(CRYPTOFEED_MISMATCH[name])
        if name not in kinds:
            reasons.append("no blast-capable simulator (no blast_stream)")
        elif name not in CRYPTOFEED_VENUES:
            reasons.append("cryptofeed's feed for this market is not wired to the simulator")
        if reasons:
            out[name] = "; ".join(reasons)
        else:  # cryptofeed's Binance TRADES channel is aggTrade, on every Binance market
            trade = "aggTrade" if name.startswith("binance") else "trade"
            out[name] = [trade] + (["book"] if "book" in kinds[name] else [])
    return out


def run(sections: list[str], options: Options, progress: Progress | None = None) -> dict[str, Any]:
    suite = Suite(options, progress)
    out: dict[str, Any] = {}
    try:
        for name in sections:
            t0 = time.monotonic()
            try:
                out[name] = getattr(suite, name)()
            except BenchError as exc:
                out[name] = {"title": name, "error": str(exc), "rows": []}
            out[name]["seconds"] = round(time.monotonic() - t0, 1)
    finally:
        suite.close()
    return out


def progress_bar(total: int) -> Progress:
    """A one-line progress bar on stderr."""
    done = [0]
    width = 30

    def update(msg: str) -> None:
        done[0] += 1
        filled = min(width, width * done[0] // max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r[{bar}] {done[0]}/{total} {msg[:70]:<70}")
        sys.stderr.flush()

    return update
