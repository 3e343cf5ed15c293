"""The API under load while the engine ingests at full rate:
`python -m bench.api_load [--seconds 8] [--concurrency 16] [--rounds 2] [--pin|--no-pin]`.

A simulator process blasts pre-encoded trade frames on three symbols as fast as the worker
takes them (`--paced --rate R` sends R market events per second instead); the engine (worker
process) ingests them and the API is served from the coordinator's process, as in `wsm run`.
A load generator *process* then hammers `GET /api/websocket/connections` and `GET /metrics`
with `--concurrency` connections for `--seconds` each. Rounds alternate: no load,
connections, no load, /metrics. Reported: API requests/s and latency percentiles, and the
engine's ingest rate (records/s into the ring) and worker CPU per record with and without
API load.

`--pin` (the default with 2 or more CPUs) is the deployment WSM is built for: the worker gets
a core of its own and everything else (coordinator and API, simulator, load generator, and the
Postgres backends serving this run's scratch database) shares the others. Unpinned, the API's
CPU is taken from the worker whenever the cores are short, and the figure says as much about
the machine's scheduler as about WSM.

The database: WSM_TEST_DATABASE_URL or WSM_DATABASE_URL (a scratch database is created there
and dropped), else an embedded server in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


async def load(url: str, token: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """The load generator (run in its own process): closed loop, `concurrency` clients."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as client:

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                async with client.get(url) as r:
                    await r.read()
                    latencies.append(time.perf_counter() - t0)
                    if r.status != 200:
                        errors += 1

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.monotonic() - t0
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000  # noqa: E731
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / took,
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
        "max_ms": latencies[-1] * 1000,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Pinning:
    """The worker alone on the last CPU (`exchanges.binance.cpus`), everything else this run
    starts on the others."""

    def __init__(self, enabled: bool) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.enabled = enabled and len(cpus) >= 2
        self.worker_cpus = {cpus[-1]}
        self.other_cpus = set(cpus[:-1]) if self.enabled else set(cpus)
        self.refused: list[str] = []
        if self.enabled:  # inherited by the simulator, the worker and the load generator
            os.sched_setaffinity(0, self.other_cpus)

    def pin(self, pids: list[int], cpus: set[int]) -> None:
        if not self.enabled:
            return
        for pid in pids:
            try:
                os.sched_setaffinity(pid, cpus)
            except ProcessLookupError:
                pass  # gone already (a pooled connection closed): nothing to pin
            except OSError as exc:
                self.refused.append(f"{pid}: {exc.strerror}")

    def describe(self) -> str:
        if not self.enabled:
            return "not pinned"
        out = f"worker on CPU {sorted(self.worker_cpus)}, the rest on {sorted(self.other_cpus)}"
        return out + (f" (could not pin {', '.join(self.refused)})" if self.refused else "")


async def database_backends(url: str) -> list[int]:
    """Server processes serving the scratch database (the API's and the engine's pools)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


async def bench(args: argparse.Namespace) -> None:
    from api import ApiServer, create_app, issue_token
    from engine.config import ApiConfig, EngineConfig, ExchangeConfig
    from engine.db import DatabaseConfig, EmbeddedPostgres, migrate
    from engine.manager import WebSocketManager
    from tests.db.helpers import create_database, drop_database
    from tests.e2e.harness import SimProc

    admin = os.environ.get("WSM_TEST_DATABASE_URL") or os.environ.get("WSM_DATABASE_URL")
    tmp = embedded = None
    if admin is None:
        tmp = tempfile.TemporaryDirectory(prefix="wsm-bench-pg-")
        embedded = EmbeddedPostgres(Path(tmp.name) / "pgdata")
        admin = embedded.start()
    url = await create_database(admin)
    pinning = Pinning(args.pin)
    rate = args.rate if args.paced else 0.0
    sim = await SimProc("binance", rate=rate, args=["--symbols", str(args.symbols)]).start()
    secret = "bench-" + "s" * 60
    try:
        await migrate(url)
        config = EngineConfig(
            instance=f"bench-api-{os.getpid()}",
            exchanges={
                "binance": ExchangeConfig(
                    ws_url=sim.ws_url,
                    rest_url=sim.rest_url,
                    # as a deployment would: the engine pins its own worker
                    cpus=sorted(pinning.worker_cpus) if pinning.enabled else None,
                )
            },
            database=DatabaseConfig(url=url),
            api=ApiConfig(rate_limit_per_second=1e6, rate_limit_burst=1_000_000),
        )
        async with WebSocketManager(config) as manager:
            app = create_app(manager, secret=secret)
            async with ApiServer(app, port=0) as server:
                user = uuid.uuid4()
                token = issue_token(secret, user, ttl=3600)
                await setup(server.url, token, args.paced)
                if not args.paced:
                    await sim.control("blast", rate="max")
                await asyncio.sleep(3)  # warm-up: books synchronised, rates settled
                workers = [
                    e.worker_pid
                    for e in manager.coordinator.exchange_stats()
                    if e.worker_pid is not None
                ]
                results = []
                for rnd in range(args.rounds):
                    for target in (None, "/api/websocket/connections", None, "/metrics"):

                        async def pin_backends() -> None:  # the API's pool grows under load
                            pinning.pin(await database_backends(url), pinning.other_cpus)

                        results.append(
                            await round_(
                                manager, workers, server.url, token, target, args, pin_backends
                            )
                            | {"round": rnd}
                        )
                report(results, args, pinning)
    finally:
        if not args.paced:
            await sim.control("blast/stop")
        await sim.stop()
        await drop_database(admin, url)
        if embedded is not None:
            embedded.stop()
        if tmp is not None:
            tmp.cleanup()


async def setup(base: str, token: str, books: bool) -> None:
    import httpx

    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as c:
        r = await c.get("/api/websocket/exchanges")
        conn = (
            await c.post("/api/websocket/connections", json={"exchange": "binance", "name": "b"})
        ).json()
        for channel in ("trades", "orderbook") if books else ("trades",):
            r = await c.post(
                "/api/websocket/subscriptions",
                json={
                    "connection_id": conn["id"],
                    "channel": channel,
                    "symbols": ["BTC-USDT", "ETH-USDT", "SOL-USDT"],
                },
            )
            assert r.status_code == 201, r.text
        for _ in range(5):  # a few more connections, so that the list has rows to show
            await c.post(
                "/api/websocket/connections",
                json={"exchange": "binance", "name": f"idle-{uuid.uuid4().hex[:6]}"},
            )


async def round_(
    manager: Any,
    workers: list[int],
    base: str,
    token: str,
    target: str | None,
    args: argparse.Namespace,
    before_window: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    def counters() -> tuple[float, int, int, float]:
        msgs = sum(manager.metrics(c.id).messages_in for c in manager.connections())
        ring = sum(e.ring_records for e in manager.coordinator.exchange_stats())
        return time.monotonic(), msgs, ring, sum(cpu_seconds(pid) for pid in workers)

    proc = None
    if target is not None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.api_load",
            "--client",
            base + target,
            token,
            str(args.seconds),
            str(args.concurrency),
            stdout=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(1.0)  # the generator's start-up is not part of the window
    await before_window()
    t0, m0, r0, c0 = counters()
    await asyncio.sleep(args.seconds - (1.5 if proc else 0))
    t1, m1, r1, c1 = counters()
    out: dict[str, Any] = {
        "target": target or "(no API load)",
        "ingest_msgs_s": (m1 - m0) / (t1 - t0),
        "ring_records_s": (r1 - r0) / (t1 - t0),
        # the ring's tail is read live from shared memory; message counts arrive with the
        # worker's once-a-second stats, so over a few seconds they are off by up to a tick
        "worker_cpu_us_per_record": (c1 - c0) / max(1, r1 - r0) * 1e6,
        "worker_cpu_share": (c1 - c0) / (t1 - t0),
    }
    if proc is not None:
        stdout, _ = await proc.communicate()
        out |= json.loads(stdout)
    return out


def report(results: list[dict[str, Any]], args: argparse.Namespace, pinning: Pinning) -> None:
    load = f"sim rate {args.rate:g}/s" if args.paced else "full rate (blast, 3 trade streams)"
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {load}, "
        f"{args.concurrency} clients, {args.seconds}s windows; {pinning.describe()}"
    )
    for r in results:
        print(json.dumps(r))
    unloaded = [r for r in results if r["target"] == "(no API load)"]
    base = [r["ring_records_s"] for r in unloaded]
    for target in ("/api/websocket/connections", "/metrics"):
        rows = [r for r in results if r["target"] == target]
        ingest = statistics.median(r["ring_records_s"] for r in rows)
        print(
            f"{target}: {statistics.median(r['rps'] for r in rows):.0f} req/s, "
            f"p50 {statistics.median(r['p50_ms'] for r in rows):.2f} ms, "
            f"p99 {statistics.median(r['p99_ms'] for r in rows):.2f} ms, "
            f"errors {sum(r['errors'] for r in rows)}; ingest {ingest:.0f} records/s vs "
            f"{statistics.median(base):.0f} without load "
            f"({(ingest / statistics.median(base) - 1) * 100:+.1f}%); worker CPU "
            f"{statistics.median(r['worker_cpu_us_per_record'] for r in rows):.2f} us/record "
            f"vs {statistics.median(r['worker_cpu_us_per_record'] for r in unloaded):.2f}, "
            f"share of a core {statistics.median(r['worker_cpu_share'] for r in rows):.2f} vs "
            f"{statistics.median(r['worker_cpu_share'] for r in unloaded):.2f}"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, token, seconds, conc = sys.argv[2:6]
        import uvloop

        print(json.dumps(uvloop.run(load(url, token, float(seconds), int(conc)))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--paced", action="store_true", help="market events at --rate, not full rate")
    p.add_argument("--rate", type=float, default=3000.0, help="with --paced: market events/s")
    p.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the worker on a CPU of its own (needs 2 or more CPUs)",
    )
    p.add_argument("--symbols", type=int, default=0, help="extra synthetic symbols")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    import uvloop

    uvloop.run(bench(p.parse_args()))


if __name__ == "__main__":
    main()
