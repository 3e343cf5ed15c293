"""Metrics rows per second into Postgres: `python -m bench.metrics_writer [--rows 200000]`.

Variants, interleaved round by round, each writing the same rows into an emptied table:
- `MetricsWriter`: rows submitted as fast as possible, written in the background
  (unnest batches as wsm_engine), timed from the first submit until nothing is buffered;
- baseline `executemany`: the same rows, the same batches, one INSERT ... VALUES ... ON
  CONFLICT DO NOTHING per row through asyncpg's executemany, as wsm_engine;
- ceiling `COPY`: asyncpg's copy_records_to_table as the admin (no RLS; Postgres refuses
  COPY FROM for a role that RLS applies to, so the engine cannot use it).
Also `submit()` alone (the coordinator's cost per row).

The database: `--database-url`, else WSM_TEST_DATABASE_URL or WSM_DATABASE_URL (a scratch
database `wsm_bench_<random>` is created there and dropped), else an embedded server in a
temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import msgspec

from engine.db import (
    DatabaseConfig,
    EmbeddedPostgres,
    MetricRow,
    MetricsWriter,
    MetricsWriterConfig,
    create_pool,
    engine_tx,
    migrate,
)
from engine.db.metrics import _ROW_SQL
from engine.db.session import Pool
from tests.db.helpers import create_database, drop_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_rows(n: int, connections: list[tuple[UUID, UUID]]) -> list[MetricRow]:
    per = n // len(connections)
    return [
        MetricRow(
            connection_id=cid,
            owner=owner,
            ts=T0 + timedelta(seconds=i),
            messages_in=1000 + i,
            bytes_in=250_000 + i,
            messages_out=2,
            bytes_out=120,
            errors=0,
            gaps=int(i % 7 == 0),
            latency_p50_us=85.0,
            latency_p99_us=410.5,
        )
        for cid, owner in connections
        for i in range(per)
    ]


async def run_writer(pool: Pool, rows: list[MetricRow], batch: int) -> float:
    cfg = MetricsWriterConfig(max_buffered_rows=len(rows), batch_size=batch, flush_interval=0.05)
    writer = MetricsWriter(pool, cfg)
    await writer.start()
    start = time.perf_counter()
    for r in rows:
        writer.submit(r)
    await writer.flush()  # joins the background task's drain and writes what is left
    elapsed = time.perf_counter() - start
    await writer.close()
    stats = writer.stats()
    assert stats.written == len(rows), stats
    return elapsed


async def run_executemany(pool: Pool, rows: list[MetricRow], batch: int) -> float:
    tuples = [msgspec.structs.astuple(r) for r in rows]
    start = time.perf_counter()
    for i in range(0, len(tuples), batch):
        async with engine_tx(pool) as conn:
            await conn.executemany(_ROW_SQL, tuples[i : i + batch])
    return time.perf_counter() - start


async def run_copy(pool: Pool, rows: list[MetricRow], batch: int) -> float:
    tuples = [msgspec.structs.astuple(r) for r in rows]
    columns = list(MetricRow.__struct_fields__)
    start = time.perf_counter()
    for i in range(0, len(tuples), batch):
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "websocket_connection_metrics", records=tuples[i : i + batch], columns=columns
            )
    return time.perf_counter() - start


def time_submit(rows: list[MetricRow]) -> float:
    # no pool and no loop: submit() alone
    writer = MetricsWriter(None, MetricsWriterConfig(max_buffered_rows=len(rows)))  # type: ignore[arg-type]
    start = time.perf_counter()
    for r in rows:
        writer.submit(r)
    return (time.perf_counter() - start) / len(rows)


Variant = Callable[[Pool, list[MetricRow], int], Awaitable[float]]
VARIANTS: dict[str, Variant] = {
    "MetricsWriter (unnest batches)": run_writer,
    "baseline: executemany": run_executemany,
    "ceiling: COPY as admin (no RLS)": run_copy,
}


async def bench(url: str, n: int, rounds: int, batch: int) -> None:
    await migrate(url)
    pool = await create_pool(url, DatabaseConfig(min_connections=2, max_connections=2))
    async with pool.acquire() as conn:
        connections = []
        for k in range(100):
            owner = uuid4()
            cid = await conn.fetchval(
                "INSERT INTO websocket_connections (owner, exchange, name)"
                " VALUES ($1, 'bench', $2) RETURNING id",
                owner,
                f"c{k}",
            )
            connections.append((cid, owner))
    rows = make_rows(n, connections)
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, variant in VARIANTS.items():
            async with pool.acquire() as conn:
                await conn.execute("TRUNCATE websocket_connection_metrics")
                await conn.execute("CHECKPOINT")
            elapsed = await variant(pool, rows, batch)
            results[name].append(len(rows) / elapsed)
    await pool.close()
    submit_ns = statistics.median(time_submit(rows) for _ in range(rounds)) * 1e9

    base = statistics.median(results["baseline: executemany"])
    print(f"{len(rows)} rows, batches of {batch}, {rounds} rounds; rows/s median (min-max)")
    for name, rates in results.items():
        med = statistics.median(rates)
        print(
            f"  {name:34} {med:>10,.0f}  ({min(rates):,.0f}-{max(rates):,.0f})"
            f"  x{med / base:.2f} vs executemany"
        )
    print(f"  submit() alone: {submit_ns:.0f} ns/row")
    print(f"  python {platform.python_version()}, asyncpg {asyncpg.__version__}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5_000)
    args = parser.parse_args()
    admin = (
        args.database_url
        or os.environ.get("WSM_TEST_DATABASE_URL")
        or os.environ.get("WSM_DATABASE_URL")
    )
    with tempfile.TemporaryDirectory(prefix="wsm-bench-pg-") as tmp:
        embedded = None if admin else EmbeddedPostgres(Path(tmp) / "pgdata")
        if embedded is not None:
            admin = embedded.start()
        assert admin is not None
        url = await create_database(admin)
        server = await asyncpg.connect(url)
        version = server.get_server_version()
        print(f"Postgres {version.major}.{version.micro} at {url.split('@')[-1]}")
        await server.close()
        try:
            await bench(url, args.rows, args.rounds, args.batch_size)
        finally:
            await drop_database(admin, url)
            if embedded is not None:
                embedded.stop()


if __name__ == "__main__":
    asyncio.run(main())
