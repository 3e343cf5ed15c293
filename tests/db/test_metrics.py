"""MetricsWriter against a real Postgres, through a fault-injecting proxy (RELIABILITY 26)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from engine.db import (
    DatabaseConfig,
    MetricRow,
    MetricsWriter,
    MetricsWriterConfig,
    NewConnection,
    StateStore,
    create_pool,
)
from engine.db.metrics import read_metrics
from engine.db.session import Pool
from tests.db.helpers import eventually, via_proxy
from tests.db.proxy import FaultProxy, upstream_of

T0 = datetime(2026, 5, 1, tzinfo=UTC)
FAST = MetricsWriterConfig(
    max_buffered_rows=200,
    batch_size=50,
    flush_interval=0.05,
    retry_initial=0.02,
    retry_max=0.2,
    flush_timeout=5.0,
)


@pytest.fixture
async def connection_id(pool: Pool, owner: UUID) -> UUID:
    c = await StateStore(pool).create_connection(
        NewConnection(owner=owner, exchange="binance", name="metrics")
    )
    return c.id


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(upstream_of(database_url))
    await p.start()
    yield p
    await p.close()


@pytest.fixture
async def proxied_pool(database_url: str, proxy: FaultProxy) -> AsyncIterator[Pool]:
    cfg = DatabaseConfig(
        min_connections=0, max_connections=2, connect_timeout=2.0, command_timeout=5.0
    )
    p = await create_pool(via_proxy(database_url, proxy.port), cfg)
    yield p
    p.terminate()


class Producer:
    """Rows one second apart, numbered from 0; remembers what it produced."""

    def __init__(self, writer: MetricsWriter, connection_id: UUID, owner: UUID) -> None:
        self.writer, self.connection_id, self.owner = writer, connection_id, owner
        self.count = 0

    def row(self, i: int, **changes: object) -> MetricRow:
        fields: dict[str, object] = {
            "connection_id": self.connection_id,
            "owner": self.owner,
            "ts": T0 + timedelta(seconds=i),
            "messages_in": i,
            "bytes_in": 100 * i,
            "latency_p50_us": 12.5,
            "latency_p99_us": None,
        }
        return MetricRow(**(fields | changes))  # type: ignore[arg-type]

    def produce(self, n: int) -> None:
        for _ in range(n):
            self.writer.submit(self.row(self.count))
            self.count += 1


async def stored(pool: Pool, connection_id: UUID) -> list[int]:
    """The row numbers in the table (messages_in), in time order."""
    return [r.messages_in for r in await read_metrics(pool, connection_id)]


async def test_batches_are_written_once(pool: Pool, connection_id: UUID, owner: UUID) -> None:
    writer = MetricsWriter(pool, MetricsWriterConfig(batch_size=10))
    producer = Producer(writer, connection_id, owner)
    producer.produce(25)
    await writer.flush()
    for i in range(25):  # the same rows again: a retry must not duplicate them
        writer.submit(producer.row(i))
    await writer.flush()
    stats = writer.stats()
    assert (stats.written, stats.duplicates, stats.buffered) == (25, 25, 0)
    assert await stored(pool, connection_id) == list(range(25))
    first = (await read_metrics(pool, connection_id, since=T0, until=T0 + timedelta(seconds=1)))[0]
    assert first == producer.row(0)


async def test_outage_buffers_within_the_bound_then_writes_once(
    pool: Pool, proxied_pool: Pool, proxy: FaultProxy, connection_id: UUID, owner: UUID
) -> None:
    writer = MetricsWriter(proxied_pool, FAST, rng=random.Random(7))
    producer = Producer(writer, connection_id, owner)
    async with writer:
        producer.produce(100)
        await eventually(lambda: writer.stats().written == 100, what="the first rows")

        proxy.refuse()  # Postgres is down
        producer.produce(150)
        await eventually(lambda: writer.stats().failed_flushes >= 3, what="failed retries")
        producer.produce(250)  # 400 waiting for a bound of 200: the oldest 200 go
        stats = writer.stats()
        assert (stats.buffered, stats.dropped, stats.written) == (200, 200, 100)
        assert stats.last_error is not None

        proxy.allow()  # Postgres is back
        await eventually(lambda: writer.stats().buffered == 0, what="the backlog")

    stats = writer.stats()
    assert stats.written == producer.count - stats.dropped == 300
    assert (stats.duplicates, stats.rejected) == (0, 0)
    assert proxy.refused >= 1
    assert await stored(pool, connection_id) == list(range(100)) + list(range(300, 500))


async def test_a_batch_retried_after_a_cut_mid_commit_is_not_duplicated(
    pool: Pool, proxied_pool: Pool, proxy: FaultProxy, connection_id: UUID, owner: UUID
) -> None:
    writer = MetricsWriter(proxied_pool, FAST, rng=random.Random(3))
    producer = Producer(writer, connection_id, owner)
    async with writer:
        proxy.cut_after_commit()
        producer.produce(50)
        await eventually(lambda: writer.stats().buffered == 0, what="the retried batch")
    stats = writer.stats()
    assert proxy.cut_commits == 1
    assert stats.failed_flushes >= 1
    # the first attempt committed unseen; the retry found every row already there
    assert (stats.written, stats.duplicates, stats.dropped) == (0, 50, 0)
    assert await stored(pool, connection_id) == list(range(50))


async def test_bad_rows_do_not_lose_their_batch(
    pool: Pool, connection_id: UUID, owner: UUID
) -> None:
    writer = MetricsWriter(pool, MetricsWriterConfig(batch_size=100))
    producer = Producer(writer, connection_id, owner)
    for i in range(10):
        if i == 3:
            writer.submit(producer.row(i, bytes_in=2**70))  # the driver cannot encode it
        elif i == 5:
            writer.submit(producer.row(i, errors=-1))  # a CHECK constraint refuses it
        elif i == 7:
            writer.submit(producer.row(i, connection_id=uuid4()))  # no such connection
        else:
            writer.submit(producer.row(i))
    await writer.flush()
    stats = writer.stats()
    assert (stats.written, stats.rejected, stats.buffered) == (7, 3, 0)
    assert stats.last_error is not None
    assert await stored(pool, connection_id) == [0, 1, 2, 4, 6, 8, 9]


async def test_close_counts_what_it_could_not_write(
    proxied_pool: Pool, proxy: FaultProxy, connection_id: UUID, owner: UUID
) -> None:
    proxy.refuse()
    cfg = MetricsWriterConfig(max_buffered_rows=100, batch_size=10, retry_initial=0.01)
    writer = MetricsWriter(proxied_pool, cfg)
    producer = Producer(writer, connection_id, owner)
    await writer.start()
    producer.produce(1000)
    assert writer.stats().dropped == 900
    await writer.close(drain_seconds=0.5)
    stats = writer.stats()
    assert (stats.buffered, stats.dropped, stats.written) == (0, 1000, 0)


async def test_backoff_is_capped_with_full_jitter(pool: Pool) -> None:
    cfg = MetricsWriterConfig(retry_initial=0.5, retry_max=4.0)
    writer = MetricsWriter(pool, cfg, rng=random.Random(1))
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 4.0), (500, 4.0)]:
        delays = [writer._backoff(failures) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling
        assert min(delays) < 0.2 * ceiling
