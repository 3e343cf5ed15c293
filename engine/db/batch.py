"""Batched inserts where one bad row never loses the batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from engine.db.session import engine_tx
from engine.errors import is_data_error

if TYPE_CHECKING:
    from engine.db.session import Pool


class BatchOutcome(msgspec.Struct, frozen=True):
    """What Postgres did with a batch: rows inserted, rows refused (bad data), and why."""

    inserted: int
    rejected: int = 0
    first_error: str | None = None


def inserted_count(status: str) -> int:
    """The row count of an `INSERT 0 n` command status."""
    return int(status.rsplit(" ", 1)[1])


async def insert_batch(
    pool: Pool,
    batch_sql: str,
    batch_args: Sequence[object],
    row_sql: str,
    rows: Sequence[Sequence[object]],
) -> BatchOutcome:
    """Insert `rows` as `wsm_engine` with one statement (`batch_sql` over `batch_args`,
    typically arrays that it unnests).

    When Postgres refuses the batch for its data (a bad value, a broken constraint), insert
    the rows one by one with `row_sql`, each under a savepoint, and count the refused ones.
    Any other failure (unreachable, timeout) propagates: the caller keeps the rows.
    """
    try:
        async with engine_tx(pool) as conn:
            return BatchOutcome(inserted=inserted_count(await conn.execute(batch_sql, *batch_args)))
    except Exception as exc:
        if not is_data_error(exc):
            raise
    inserted = rejected = 0
    first_error: str | None = None
    async with engine_tx(pool) as conn:
        for row in rows:
            try:
                async with conn.transaction():
                    inserted += inserted_count(await conn.execute(row_sql, *row))
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                rejected += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
    return BatchOutcome(inserted=inserted, rejected=rejected, first_error=first_error)
