"""End to end per venue: simulator -> worker -> ring, every registered exchange, same traffic.

Run: `python -m bench.venues --rounds 3 --seconds 5 --rate 2000` (add `--venues a,b` for a
subset, `--json` for the raw figures).

Each venue's own simulator (its real protocol, frames built per message, not blasted) produces
a random-walk market at `--rate` events/s over the demo symbols; one connection subscribes
trades, best bid/offer and the order book; an in-process reader drains the ring. Over a window
of `--seconds` after a warm-up the figure is the worker's CPU (its own process time, from its
stats reports) per message received, the message and record rates, and the gaps and parse
errors seen (both must be zero: the market is clean). `capacity` is 1 s / CPU per message: the
rate one core would take at this message mix. Rounds interleave the venues, each round with
fresh processes, so the machine's drift hits them alike; Binance, measured in the same run, is
the baseline of the ratio column. Message mixes differ by venue (a Coinbase `l2_data` frame can
carry several levels, a KuCoin `level2` one), so records per message are shown beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

import orjson

from bench.clients import _fresh_stats, _msgs_in
from bench.harness import Simulator
from bench.report import environment
from engine.records import Kind


async def one_round(venue: str, rate: float, seconds: float) -> dict[str, Any]:
    from engine.config import EngineConfig, ExchangeConfig
    from engine.db import DatabaseConfig
    from engine.demo import DEMO_SYMBOLS
    from engine.manager import WebSocketManager

    sim = Simulator(venue)
    try:
        config = EngineConfig(
            database=DatabaseConfig(enabled=False),
            instance=f"bv{os.getpid()}",
            stats_interval=0.5,
            exchanges={venue: ExchangeConfig(ws_url=sim.ws_url, rest_url=sim.rest_url)},
        )
        async with WebSocketManager(config) as manager:
            await manager.connect_to_exchange(venue, "c0")
            for channel in ("trades", "ticker", "orderbook"):
                await manager.subscribe(venue, "c0", channel=channel, symbols=DEMO_SYMBOLS[venue])
            await manager.wait_for("c0", timeout=30)
            reader = manager.reader(venue, start="newest")
            ex = manager.coordinator.exchanges[venue]
            records = gaps = 0
            sim.control("rate", value=rate)
            await asyncio.sleep(1.0)  # warm-up: book snapshots in, the market flowing
            reader.read_batch()  # drop the warm-up's records
            before = await _fresh_stats(ex)
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                batch = reader.read_batch()
                records += len(batch)
                gaps += int((batch["kind"] == Kind.GAP).sum())
                await asyncio.sleep(0.05)
            after = await _fresh_stats(ex)
            records += len(reader.read_batch())
            sim.control("rate", value=0)
            span = (after.at_ns - before.at_ns) / 1e9
            msgs = _msgs_in(after) - _msgs_in(before)
            cpu = (after.cpu_ns - before.cpu_ns) / 1e9
            reader.close()
            return {
                "venue": venue,
                "messages": msgs,
                "seconds": span,
                "messages_per_s": msgs / span,
                "records_per_message": records / msgs if msgs else None,
                "cpu_us_per_message": cpu / msgs * 1e6 if msgs else None,
                "cpu_share": cpu / span,
                "gaps": gaps,
                "parse_errors": sum(sum(c.parse_errors.values()) for c in after.conns),
                "lost": reader.lost,
            }
    finally:
        sim.stop()


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None]
        return statistics.median(vals) if vals else None

    cpu = [r["cpu_us_per_message"] for r in rows if r["cpu_us_per_message"]]
    return {
        "venue": rows[0]["venue"],
        "rounds": len(rows),
        "messages_per_s": med("messages_per_s"),
        "records_per_message": med("records_per_message"),
        "cpu_us_per_message": med("cpu_us_per_message"),
        "cpu_us_min_max": (min(cpu), max(cpu)) if cpu else None,
        "cpu_share": med("cpu_share"),
        "capacity_per_core": 1e6 / med("cpu_us_per_message") if cpu else None,  # type: ignore[operator]
        "gaps": sum(r["gaps"] for r in rows),
        "parse_errors": max(r["parse_errors"] for r in rows),
        "lost": sum(r["lost"] for r in rows),
    }


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"Command: `{env['command']}` ({env['started']}; load average before "
        f"{', '.join(f'{x:.2f}' for x in env['load_before'])}, after "
        f"{', '.join(f'{x:.2f}' for x in report['load_after'])}).",
        "",
        "| venue | msg/s | records/msg | worker CPU us/msg, median (min-max) | vs Binance | "
        "capacity msg/s per core | gaps | parse errors | reader lost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = next((s for s in report["venues"] if s["venue"] == "binance"), None)
    for s in report["venues"]:
        cpu, mm = s["cpu_us_per_message"], s["cpu_us_min_max"]
        ratio = (
            f"{cpu / base['cpu_us_per_message']:.2f}"
            if base and cpu and base["cpu_us_per_message"]
            else "-"
        )
        lines.append(
            f"| {s['venue']} | {s['messages_per_s']:,.0f} | {s['records_per_message']:.2f} | "
            f"{cpu:.1f} ({mm[0]:.1f}-{mm[1]:.1f}) | {ratio} | {s['capacity_per_core']:,.0f} | "
            f"{s['gaps']} | {s['parse_errors']} | {s['lost']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from engine.registry import venues as registered

    p = argparse.ArgumentParser(prog="python -m bench.venues", description=__doc__.split("\n")[0])
    p.add_argument("--venues", help="comma-separated (default: every registered venue)")
    p.add_argument("--rate", type=float, default=2000.0, help="market events/s (default 2000)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured window per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from engine.demo import DEMO_SYMBOLS

    names = args.venues.split(",") if args.venues else sorted(registered())
    names = [n for n in names if n in DEMO_SYMBOLS]  # venues with a simulator and demo symbols
    if "binance" in names:  # the baseline first
        names.remove("binance")
        names.insert(0, "binance")
    given = argv if argv is not None else sys.argv[1:]
    env = environment(given)
    env["command"] = " ".join(["python -m bench.venues", *given])
    rows: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for i in range(args.rounds):
        for name in names:
            print(f"round {i + 1}/{args.rounds}: {name}", file=sys.stderr)
            rows[name].append(asyncio.run(one_round(name, args.rate, args.seconds)))
    report = {
        "environment": env,
        "rate": args.rate,
        "seconds": args.seconds,
        "venues": [summarize(rows[n]) for n in names],
        "rounds": rows,
        "load_after": os.getloadavg(),
    }
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
