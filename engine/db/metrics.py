"""`MetricsWriter`: per-connection metrics into Postgres, in batches, surviving outages.

Rows wait in a bounded buffer (the oldest is dropped first when it is full, and counted); a
background task writes them every `flush_interval` seconds, or sooner once a batch is full.
When Postgres is unreachable the rows stay and the writer retries with capped exponential
backoff and full jitter. Writes are idempotent (`ON CONFLICT (connection_id, ts) DO
NOTHING`), so a batch retried after a cut that hid its commit writes nothing twice. A row that
Postgres refuses is counted in `rejected` and never costs the rest of its batch.

Accounting: submitted = written + duplicates + rejected + dropped + buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from datetime import datetime
from itertools import islice
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Final
from uuid import UUID

import msgspec
from msgspec import Meta

from engine.db.batch import BatchOutcome, insert_batch
from engine.db.session import engine_tx

if TYPE_CHECKING:
    from engine.db.session import Pool


class MetricRow(msgspec.Struct, kw_only=True, frozen=True):
    """One connection's counters over one stats period, stamped with the period's end."""

    connection_id: UUID
    owner: UUID
    ts: datetime
    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    errors: int = 0
    gaps: int = 0
    resyncs: int = 0
    reconnects: int = 0
    latency_p50_us: float | None = None
    latency_p99_us: float | None = None


class MetricsWriterConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    max_buffered_rows: Annotated[int, Meta(gt=0)] = 100_000
    batch_size: Annotated[int, Meta(gt=0)] = 5_000
    flush_interval: Annotated[float, Meta(gt=0)] = 2.0  # seconds
    retry_initial: Annotated[float, Meta(gt=0)] = 0.5  # seconds, before jitter
    retry_max: Annotated[float, Meta(gt=0)] = 30.0  # seconds, the backoff cap
    flush_timeout: Annotated[float, Meta(gt=0)] = 30.0  # seconds for one batch


class MetricsWriterStats(msgspec.Struct, kw_only=True, frozen=True):
    buffered: int  # waiting in memory, including a batch being written
    written: int  # inserted
    duplicates: int  # already in the table (a retried batch whose first try committed)
    dropped: int  # pushed out of a full buffer, or still buffered at close
    rejected: int  # refused by Postgres for their data
    failed_flushes: int  # batch attempts that failed (unreachable, timeout, ...)
    last_error: str | None


_COLUMNS: Final = (
    "connection_id, owner, ts, messages_in, bytes_in, messages_out, bytes_out,"
    " errors, gaps, resyncs, reconnects, latency_p50_us, latency_p99_us"
)
# One array of composite rows rather than one array per column: asyncpg checks every element
# of a scalar array against collections.abc (about 0.5 us each, 13 per row), which made the
# column form 2x slower end to end (bench/RESULTS.md).
_BATCH_SQL: Final = f"""
INSERT INTO websocket_connection_metrics ({_COLUMNS})
SELECT {_COLUMNS} FROM unnest($1::wsm_metric_row[])
ON CONFLICT (connection_id, ts) DO NOTHING
"""
_ROW_SQL: Final = f"""
INSERT INTO websocket_connection_metrics ({_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (connection_id, ts) DO NOTHING
"""


class MetricsWriter:
    """Buffers `MetricRow`s and writes them in the background. Use from one event loop."""

    def __init__(
        self,
        pool: Pool,
        config: MetricsWriterConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._cfg = config or MetricsWriterConfig()
        self._rng = rng or random.Random()
        self._buffer: deque[MetricRow] = deque()
        # The batch being written stays at the head of the buffer until Postgres took it, so
        # the bound covers it; rows of it pushed out meanwhile are counted here.
        self._in_flight = 0
        self._dropped_in_flight = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._written = self._duplicates = self._dropped = self._rejected = 0
        self._failed_flushes = 0
        self._last_error: str | None = None

    def submit(self, row: MetricRow) -> None:
        """Queue a row; never blocks. When the buffer is full the oldest row is dropped."""
        if len(self._buffer) >= self._cfg.max_buffered_rows:
            self._buffer.popleft()
            self._dropped += 1
            if self._in_flight:
                self._in_flight -= 1
                self._dropped_in_flight += 1
        self._buffer.append(row)
        if len(self._buffer) - self._in_flight >= self._cfg.batch_size:
            self._wake.set()

    def stats(self) -> MetricsWriterStats:
        return MetricsWriterStats(
            buffered=len(self._buffer),
            written=self._written,
            duplicates=self._duplicates,
            dropped=self._dropped,
            rejected=self._rejected,
            failed_flushes=self._failed_flushes,
            last_error=self._last_error,
        )

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wsm-metrics-writer")

    async def flush(self) -> None:
        """Write everything buffered now. Raises what made a batch fail (the rows stay)."""
        async with self._lock:
            while self._buffer:
                await self._write_batch()

    async def close(self, drain_seconds: float = 5.0) -> None:
        """Stop the background task and try, for up to `drain_seconds`, to write what is left.

        Rows that could not be written by then are counted as dropped.
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(drain_seconds):
                await self.flush()
        self._dropped += len(self._buffer)
        self._buffer.clear()

    async def __aenter__(self) -> MetricsWriter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self) -> None:
        failures = 0
        while True:
            if failures:
                await asyncio.sleep(self._backoff(failures))
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._cfg.flush_interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                failures += 1  # counted and kept by _write_batch
            else:
                failures = 0

    def _backoff(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(cap, initial * 2^(failures-1))]."""
        ceiling = self._cfg.retry_initial * 2.0 ** min(failures - 1, 30)
        return self._rng.uniform(0.0, min(self._cfg.retry_max, ceiling))

    async def _write_batch(self) -> None:
        batch = list(islice(self._buffer, self._cfg.batch_size))
        self._in_flight, self._dropped_in_flight = len(batch), 0
        try:
            async with asyncio.timeout(self._cfg.flush_timeout):
                outcome = await _insert(self._pool, batch)
        except Exception as exc:
            self._failed_flushes += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            taken, self._in_flight = self._in_flight, 0
        # Postgres has every row of the batch, including those pushed out meanwhile.
        for _ in range(taken):
            self._buffer.popleft()
        self._dropped -= self._dropped_in_flight
        self._written += outcome.inserted
        self._rejected += outcome.rejected
        self._duplicates += len(batch) - outcome.inserted - outcome.rejected
        if outcome.first_error is not None:
            self._last_error = outcome.first_error


async def _insert(pool: Pool, batch: list[MetricRow]) -> BatchOutcome:
    rows = [msgspec.structs.astuple(r) for r in batch]
    return await insert_batch(pool, _BATCH_SQL, [rows], _ROW_SQL, rows)


async def read_metrics(
    pool: Pool,
    connection_id: UUID,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    limit: int = 10_000,
) -> list[MetricRow]:
    """A connection's metrics with `since <= ts < until`, oldest first (as `wsm_engine`)."""
    async with engine_tx(pool, readonly=True) as conn:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM websocket_connection_metrics WHERE connection_id = $1"
            " AND ($2::timestamptz IS NULL OR ts >= $2)"
            " AND ($3::timestamptz IS NULL OR ts < $3)"
            " ORDER BY ts LIMIT $4",
            connection_id,
            since,
            until,
            limit,
        )
    return [MetricRow(**dict(r.items())) for r in rows]
