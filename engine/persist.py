"""The coordinator's link to Postgres. All database work of the engine happens here, in the
coordinator's process, never in a worker and never on the hot path.

- Desired state (connections and subscriptions people create) is written when it changes and
  restored at start.
- Current state changes and errors become connection events, written in batches.
- Every stats period's counters go to the `MetricsWriter` (bounded buffer, batched, retried).
A database outage never stops the engine: state batches are retried, metrics wait in the
writer's buffer, and what could not be kept is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from engine.backoff import ReconnectPolicy
from engine.db.embedded import EmbeddedPostgres, resolve_database_url
from engine.db.metrics import MetricRow, MetricsWriter, MetricsWriterConfig
from engine.db.migrate import migrate
from engine.db.session import DatabaseConfig, Pool, create_pool
from engine.db.store import (
    ConnectionEvent,
    DesiredConnection,
    NewConnection,
    NewSubscription,
    StateStore,
    StateUpdate,
)
from engine.errors import DatabaseError, NotFound, is_retryable
from engine.protocol import Event, Failure, StateChanged, Stats
from engine.records import ConnState

MAX_PENDING = 50_000  # state updates and events waiting for the database


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


class Persistence:
    def __init__(
        self,
        pool: Pool,
        *,
        owner: UUID,
        url: str = "",
        embedded: EmbeddedPostgres | None = None,
        flush_interval: float = 0.5,
        metrics: MetricsWriterConfig | None = None,
    ) -> None:
        self.pool = pool
        self.store = StateStore(pool)
        self.metrics = MetricsWriter(pool, metrics)
        self.owner = owner
        self.url = url  # where the database is (the API opens its own pool there)
        self._embedded = embedded
        self._flush_interval = flush_interval
        self._updates: deque[StateUpdate] = deque(maxlen=MAX_PENDING)
        self._events: deque[ConnectionEvent] = deque(maxlen=MAX_PENDING)
        self._sub_states: dict[UUID, tuple[str, str | None]] = {}
        self._removed: set[UUID] = set()
        self.db_ids: dict[str, UUID] = {}  # engine connection id -> row id
        self.owners: dict[str, UUID] = {}  # engine connection id -> its row's owner
        self.sub_ids: dict[str, UUID] = {}  # engine subscription id -> row id
        self.dropped = 0
        self.failed_flushes = 0
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, config: DatabaseConfig, *, owner: UUID, metrics: MetricsWriterConfig | None = None
    ) -> Persistence:
        """Connect (starting the embedded server when no URL is configured) and migrate."""
        embedded = None if config.url else EmbeddedPostgres()
        url = await asyncio.get_running_loop().run_in_executor(
            None, lambda: resolve_database_url(config.url, embedded=embedded)
        )
        await migrate(url)
        pool = await create_pool(url, config)
        self = cls(pool, owner=owner, url=url, embedded=embedded, metrics=metrics)
        await self.metrics.start()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._flush()
        await self.metrics.close()
        await self.pool.close()
        if self._embedded is not None:
            self._embedded.stop()

    # -- desired state --------------------------------------------------------------------

    async def connection_created(
        self,
        conn_id: str,
        *,
        exchange: str,
        name: str,
        url: str | None,
        policy: ReconnectPolicy,
        owner: UUID | None,
    ) -> UUID:
        row = await self.store.create_connection(
            NewConnection(
                owner=owner or self.owner,
                exchange=exchange,
                name=name,
                url=url,
                reconnect=policy,
                desired_state="connected",
            )
        )
        self.db_ids[conn_id] = row.id
        self.owners[conn_id] = row.owner
        return row.id

    def adopt(self, conn_id: str, row_id: UUID, owner: UUID | None = None) -> None:
        """A connection restored from the database (or created by its user) keeps its row."""
        self.db_ids[conn_id] = row_id
        self.owners[conn_id] = owner or self.owner

    async def connection_deleted(self, conn_id: str) -> None:
        row_id = self.db_ids.pop(conn_id, None)
        self.owners.pop(conn_id, None)
        if row_id is not None:
            await self.store.delete_connection(row_id)

    async def set_desired(self, conn_id: str, desired: str) -> None:
        row_id = self.db_ids.get(conn_id)
        if row_id is not None:
            await self.store.update_connection(row_id, desired_state=desired)  # type: ignore[arg-type]

    async def subscription_created(
        self,
        conn_id: str,
        sub_id: str,
        *,
        channel: str,
        symbols: list[str],
        kinds: list[str] | None,
    ) -> UUID | None:
        row_id = self.db_ids.get(conn_id)
        if row_id is None:
            return None
        row = await self.store.create_subscription(
            NewSubscription(
                connection_id=row_id,
                channel=channel,
                symbols=tuple(symbols),
                kinds=None if kinds is None else tuple(kinds),
            )
        )
        self.sub_ids[sub_id] = row.id
        return row.id

    def adopt_subscription(self, sub_id: str, row_id: UUID) -> None:
        self.sub_ids[sub_id] = row_id

    async def subscription_removed(self, sub_id: str) -> None:
        row_id = self.sub_ids.pop(sub_id, None)
        if row_id is not None:
            self._removed.add(row_id)  # a state update still queued must not revive it
            self._sub_states.pop(row_id, None)
            with contextlib.suppress(NotFound):  # its user deleted the row already
                await self.store.update_subscription(row_id, state="removed")

    async def restore(self) -> list[DesiredConnection]:
        """Every stored connection (a `disconnected` one comes back paused)."""
        return await self.store.load_desired()

    # -- current state, events, metrics ---------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Called for every worker event (synchronously; queues, never waits)."""
        if isinstance(event, StateChanged):
            row_id = self.db_ids.get(event.conn)
            if row_id is not None:
                state = ConnState(event.state).name.lower()
                failing = event.state in (
                    ConnState.BACKOFF,
                    ConnState.STALE,
                    ConnState.FAILED,
                    ConnState.CLOSED,
                )
                self._queue(
                    self._updates,
                    StateUpdate(
                        connection_id=row_id,
                        state=state,
                        ts=_ts(event.at_ns),
                        reason=event.reason,
                        code=event.code,
                        error=event.reason if failing else None,
                        connected_at=_ts(event.at_ns) if event.state == ConnState.LIVE else None,
                    ),
                )
        elif isinstance(event, Failure):
            row_id = self.db_ids.get(event.conn)
            if row_id is not None:
                self._queue(
                    self._events,
                    ConnectionEvent(
                        connection_id=row_id,
                        kind="error",
                        ts=_ts(event.at_ns),
                        code=event.code,
                        reason=event.message,
                    ),
                )
        elif isinstance(event, Stats):
            self._on_stats(event)

    def subscription_state(self, sub_id: str, state: str, reason: str) -> None:
        row_id = self.sub_ids.get(sub_id)
        if row_id is not None and state in ("pending", "active", "rejected"):
            self._sub_states[row_id] = (state, reason or None)

    def _on_stats(self, stats: Stats) -> None:
        ts = _ts(stats.at_ns)
        for st in stats.conns:
            row_id = self.db_ids.get(st.conn)
            if row_id is None:
                continue
            self.metrics.submit(
                MetricRow(
                    connection_id=row_id,
                    owner=self.owners.get(st.conn, self.owner),  # the row's, or the FK refuses
                    ts=ts,
                    messages_in=st.msgs_in,
                    bytes_in=st.bytes_in,
                    messages_out=st.msgs_out,
                    bytes_out=st.bytes_out,
                    errors=sum(st.parse_errors.values()),
                    gaps=st.gaps,
                    resyncs=st.resyncs,
                    reconnects=st.reconnects,
                    latency_p50_us=st.latency_p50_us,
                    latency_p99_us=st.latency_p99_us,
                )
            )

    def _queue(self, queue: deque[Any], item: Any) -> None:
        if len(queue) == queue.maxlen:
            self.dropped += 1
        queue.append(item)

    async def _run(self) -> None:
        delay = self._flush_interval
        while True:
            await asyncio.sleep(delay)
            delay = self._flush_interval if await self._flush() else min(delay * 2, 30.0)

    async def _flush(self) -> bool:
        """Write what is queued; on failure keep it for the next try (within the bounds)."""
        updates, events = list(self._updates), list(self._events)
        sub_states, self._sub_states = self._sub_states, {}
        try:
            if updates:
                await self.store.update_current_states(updates)
                for _ in updates:
                    self._updates.popleft()
            if events:
                await self.store.record_events(events)
                for _ in events:
                    self._events.popleft()
            for row_id, (state, reason) in sub_states.items():
                if row_id not in self._removed:
                    with contextlib.suppress(NotFound):  # deleted meanwhile (with its connection)
                        await self.store.update_subscription(row_id, state=state, reason=reason)  # type: ignore[arg-type]
        except (DatabaseError, OSError, TimeoutError) as exc:
            return self._failed(exc, sub_states)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return self._failed(exc, sub_states)
        return True

    def _failed(self, exc: BaseException, sub_states: dict[UUID, tuple[str, str | None]]) -> bool:
        self.failed_flushes += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        for row_id, value in sub_states.items():
            self._sub_states.setdefault(row_id, value)
        return False

    def stats(self) -> dict[str, Any]:
        m = self.metrics.stats()
        return {
            "pending_updates": len(self._updates),
            "pending_events": len(self._events),
            "dropped": self.dropped,
            "failed_flushes": self.failed_flushes,
            "last_error": self.last_error,
            "metrics": {
                "buffered": m.buffered,
                "written": m.written,
                "duplicates": m.duplicates,
                "dropped": m.dropped,
                "rejected": m.rejected,
                "failed_flushes": m.failed_flushes,
            },
            "at": time.time(),
        }
