"""`StateStore`: connections, subscriptions and their history, as the engine keeps them.

Everything runs as `wsm_engine` (see sql/README.md). Desired state (what users asked for) is
durable and restored by `load_desired()` after a restart; current state (what the engine
sees) is written in batches, and every state change and error is one event row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import asyncpg
import msgspec
from msgspec import UNSET, UnsetType

from engine.backoff import ReconnectPolicy
from engine.db.batch import BatchOutcome, insert_batch
from engine.db.session import engine_tx
from engine.errors import AlreadyExists, DatabaseError, NotFound

if TYPE_CHECKING:
    from engine.db.session import Pool

DesiredState = Literal["connected", "disconnected"]
SubscriptionState = Literal["pending", "active", "rejected", "removed"]
EventKind = Literal["state", "error"]


class NewConnection(msgspec.Struct, kw_only=True, frozen=True):
    owner: UUID
    exchange: str
    name: str  # the user-facing connection id, unique per owner
    url: str | None = None
    reconnect: ReconnectPolicy = ReconnectPolicy()
    desired_state: DesiredState = "disconnected"


class ConnectionRow(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    owner: UUID
    exchange: str
    name: str
    url: str | None
    reconnect: ReconnectPolicy
    desired_state: DesiredState
    current_state: str
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    last_connected_at: datetime | None


class NewSubscription(msgspec.Struct, kw_only=True, frozen=True):
    connection_id: UUID
    channel: str
    symbols: tuple[str, ...]
    kinds: tuple[str, ...] | None = None
    state: SubscriptionState = "pending"


class SubscriptionRow(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    owner: UUID
    connection_id: UUID
    channel: str
    symbols: tuple[str, ...]
    kinds: tuple[str, ...] | None
    state: SubscriptionState
    reason: str | None
    created_at: datetime
    updated_at: datetime


class DesiredConnection(msgspec.Struct, frozen=True):
    """A connection and its live subscriptions (all but `removed`): what a restart restores."""

    connection: ConnectionRow
    subscriptions: tuple[SubscriptionRow, ...]


class StateUpdate(msgspec.Struct, kw_only=True, frozen=True):
    """A connection's new current state, as the coordinator saw it change."""

    connection_id: UUID
    state: str
    ts: datetime | None = None  # None: now
    reason: str | None = None
    code: str | None = None  # the venue's code, if the venue caused it
    error: str | None = None  # becomes last_error (None keeps the previous one)
    connected_at: datetime | None = None  # set when the connection went live


class ConnectionEvent(msgspec.Struct, kw_only=True, frozen=True):
    connection_id: UUID
    kind: EventKind
    ts: datetime | None = None  # None: now
    state: str | None = None
    code: str | None = None  # the venue's own code, as it sent it
    reason: str | None = None
    details: dict[str, Any] = {}


class EventRow(msgspec.Struct, kw_only=True, frozen=True):
    id: int
    connection_id: UUID
    owner: UUID
    ts: datetime
    kind: EventKind
    state: str | None
    code: str | None
    reason: str | None
    details: dict[str, Any]


_INSERT_EVENTS = """
INSERT INTO websocket_connection_events
    (connection_id, owner, ts, kind, state, code, reason, details)
SELECT e.connection_id, c.owner, coalesce(e.ts, now()), e.kind, e.state, e.code, e.reason,
       e.details::jsonb
FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[]) WITH ORDINALITY AS e(connection_id, ts, kind, state, code, reason,
                                             details, ord)
JOIN websocket_connections c ON c.id = e.connection_id
ORDER BY e.ord
"""
_INSERT_EVENT = """
INSERT INTO websocket_connection_events
    (connection_id, owner, ts, kind, state, code, reason, details)
SELECT c.id, c.owner, coalesce($2, now()), $3, $4, $5, $6, $7::jsonb
FROM websocket_connections c WHERE c.id = $1
"""
_UPDATE_STATES = """
UPDATE websocket_connections c
SET current_state = u.state,
    last_error = coalesce(u.last_error, c.last_error),
    last_connected_at = coalesce(u.connected_at, c.last_connected_at)
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[])
     AS u(id, state, last_error, connected_at)
WHERE c.id = u.id
"""
_CONNECTION_COLUMNS = ("exchange", "name", "url", "reconnect", "desired_state")
_SUBSCRIPTION_COLUMNS = ("symbols", "kinds", "state", "reason")


class StateStore:
    """Durable connection state for the coordinator. All methods are safe to call concurrently."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create_connection(self, spec: NewConnection) -> ConnectionRow:
        """Raises AlreadyExists when the owner already has a connection of that name."""
        try:
            async with engine_tx(self._pool) as conn:
                row = await conn.fetchrow(
                    "INSERT INTO websocket_connections"
                    " (owner, exchange, name, url, reconnect, desired_state)"
                    " VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING *",
                    spec.owner,
                    spec.exchange,
                    spec.name,
                    spec.url,
                    msgspec.json.encode(spec.reconnect).decode(),
                    spec.desired_state,
                )
        except asyncpg.UniqueViolationError as exc:
            raise AlreadyExists("connection", f"{spec.owner}/{spec.name}") from exc
        assert row is not None
        return _connection(row)

    async def update_connection(
        self,
        connection_id: UUID,
        *,
        exchange: str | UnsetType = UNSET,
        name: str | UnsetType = UNSET,
        url: str | UnsetType | None = UNSET,
        reconnect: ReconnectPolicy | UnsetType = UNSET,
        desired_state: DesiredState | UnsetType = UNSET,
    ) -> ConnectionRow:
        """Change what was asked for; only the given fields change. Raises NotFound."""
        values: dict[str, object] = {
            "exchange": exchange,
            "name": name,
            "url": url,
            "reconnect": reconnect
            if isinstance(reconnect, UnsetType)
            else msgspec.json.encode(reconnect).decode(),
            "desired_state": desired_state,
        }
        try:
            row = await self._update(
                "websocket_connections", _CONNECTION_COLUMNS, connection_id, values
            )
        except asyncpg.UniqueViolationError as exc:
            raise AlreadyExists("connection name", name) from exc
        if row is None:
            raise NotFound("connection", connection_id)
        return _connection(row)

    async def delete_connection(self, connection_id: UUID) -> bool:
        """Delete a connection with its subscriptions, metrics and events."""
        async with engine_tx(self._pool) as conn:
            status = await conn.execute(
                "DELETE FROM websocket_connections WHERE id = $1", connection_id
            )
        return status != "DELETE 0"

    async def get_connection(self, connection_id: UUID) -> ConnectionRow | None:
        async with engine_tx(self._pool) as conn:
            row = await conn.fetchrow(
                "SELECT * FROM websocket_connections WHERE id = $1", connection_id
            )
        return None if row is None else _connection(row)

    async def create_subscription(self, spec: NewSubscription) -> SubscriptionRow:
        """Subscribe on a connection (the row's owner is the connection's). Raises NotFound."""
        async with engine_tx(self._pool) as conn:
            row = await conn.fetchrow(
                "INSERT INTO websocket_subscriptions"
                " (owner, connection_id, channel, symbols, kinds, state)"
                " SELECT c.owner, c.id, $2, $3, $4, $5 FROM websocket_connections c"
                " WHERE c.id = $1 RETURNING *",
                spec.connection_id,
                spec.channel,
                list(spec.symbols),
                None if spec.kinds is None else list(spec.kinds),
                spec.state,
            )
        if row is None:
            raise NotFound("connection", spec.connection_id)
        return _subscription(row)

    async def update_subscription(
        self,
        subscription_id: UUID,
        *,
        symbols: Sequence[str] | UnsetType = UNSET,
        kinds: Sequence[str] | UnsetType | None = UNSET,
        state: SubscriptionState | UnsetType = UNSET,
        reason: str | UnsetType | None = UNSET,
    ) -> SubscriptionRow:
        """Change a subscription (the engine sets `state` and `reason`). Raises NotFound."""
        values: dict[str, object] = {
            "symbols": symbols if isinstance(symbols, UnsetType) else list(symbols),
            "kinds": kinds if isinstance(kinds, UnsetType) or kinds is None else list(kinds),
            "state": state,
            "reason": reason,
        }
        row = await self._update(
            "websocket_subscriptions", _SUBSCRIPTION_COLUMNS, subscription_id, values
        )
        if row is None:
            raise NotFound("subscription", subscription_id)
        return _subscription(row)

    async def delete_subscription(self, subscription_id: UUID) -> bool:
        async with engine_tx(self._pool) as conn:
            status = await conn.execute(
                "DELETE FROM websocket_subscriptions WHERE id = $1", subscription_id
            )
        return status != "DELETE 0"

    async def load_desired(self) -> list[DesiredConnection]:
        """Every connection with its subscriptions (but removed ones), from one snapshot."""
        async with engine_tx(self._pool, isolation="repeatable_read", readonly=True) as conn:
            conns = await conn.fetch("SELECT * FROM websocket_connections ORDER BY created_at, id")
            subs = await conn.fetch(
                "SELECT * FROM websocket_subscriptions WHERE state <> 'removed'"
                " ORDER BY created_at, id"
            )
        by_connection: dict[UUID, list[SubscriptionRow]] = {r["id"]: [] for r in conns}
        for s in subs:
            by_connection[s["connection_id"]].append(_subscription(s))
        return [DesiredConnection(_connection(r), tuple(by_connection[r["id"]])) for r in conns]

    async def update_current_states(
        self, batch: Sequence[StateUpdate], *, record_events: bool = True
    ) -> int:
        """Write the latest state of each connection in `batch` in one statement.

        With `record_events` (the default), every update in `batch` is also one `state` event,
        in the same transaction. Returns how many connections were updated (unknown ids are
        skipped: the connection was deleted meanwhile).
        """
        if not batch:
            return 0
        latest = {u.connection_id: u for u in batch}
        async with engine_tx(self._pool) as conn:
            status = await conn.execute(
                _UPDATE_STATES,
                list(latest),
                [u.state for u in latest.values()],
                [u.error for u in latest.values()],
                [u.connected_at for u in latest.values()],
            )
            if record_events:
                events = [_state_event(u) for u in batch]
                await conn.execute(_INSERT_EVENTS, *_event_columns(events))
        return int(status.rsplit(" ", 1)[1])

    async def record_events(self, batch: Sequence[ConnectionEvent]) -> BatchOutcome:
        """Append events (state changes, errors with the venue's code and reason).

        Events of unknown connections are skipped; a refused event (bad kind) is counted in
        `rejected` and does not lose the others.
        """
        if not batch:
            return BatchOutcome(inserted=0)
        rows = [_event_row(e) for e in batch]
        return await insert_batch(
            self._pool, _INSERT_EVENTS, _event_columns(batch), _INSERT_EVENT, rows
        )

    async def events(
        self,
        connection_id: UUID,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        limit: int = 1000,
    ) -> list[EventRow]:
        """A connection's events with `since <= ts < until`, oldest first."""
        async with engine_tx(self._pool, readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT * FROM websocket_connection_events WHERE connection_id = $1"
                " AND ($2::timestamptz IS NULL OR ts >= $2)"
                " AND ($3::timestamptz IS NULL OR ts < $3)"
                " ORDER BY ts, id LIMIT $4",
                connection_id,
                since,
                until,
                limit,
            )
        return [
            EventRow(
                id=r["id"],
                connection_id=r["connection_id"],
                owner=r["owner"],
                ts=r["ts"],
                kind=r["kind"],
                state=r["state"],
                code=r["code"],
                reason=r["reason"],
                details=msgspec.json.decode(r["details"]),
            )
            for r in rows
        ]

    async def _update(
        self, table: str, allowed: tuple[str, ...], key: UUID, values: dict[str, object]
    ) -> asyncpg.Record | None:
        # Column names come from `allowed` (constants), never from the caller.
        changes = [(c, values[c]) for c in allowed if not isinstance(values[c], UnsetType)]
        if not changes:
            sets, args = "id = id", []
        else:
            sets = ", ".join(
                f"{c} = ${i}{'::jsonb' if c == 'reconnect' else ''}"
                for i, (c, _) in enumerate(changes, start=2)
            )
            args = [v for _, v in changes]
        async with engine_tx(self._pool) as conn:
            return await conn.fetchrow(
                f"UPDATE {table} SET {sets} WHERE id = $1 RETURNING *", key, *args
            )


def _connection(r: asyncpg.Record) -> ConnectionRow:
    try:
        reconnect = msgspec.json.decode(r["reconnect"], type=ReconnectPolicy)
    except msgspec.ValidationError as exc:
        raise DatabaseError(f"connection {r['id']}: bad reconnect policy: {exc}") from exc
    return ConnectionRow(
        id=r["id"],
        owner=r["owner"],
        exchange=r["exchange"],
        name=r["name"],
        url=r["url"],
        reconnect=reconnect,
        desired_state=r["desired_state"],
        current_state=r["current_state"],
        last_error=r["last_error"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        last_connected_at=r["last_connected_at"],
    )


def _subscription(r: asyncpg.Record) -> SubscriptionRow:
    kinds = r["kinds"]
    return SubscriptionRow(
        id=r["id"],
        owner=r["owner"],
        connection_id=r["connection_id"],
        channel=r["channel"],
        symbols=tuple(r["symbols"]),
        kinds=None if kinds is None else tuple(kinds),
        state=r["state"],
        reason=r["reason"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _state_event(u: StateUpdate) -> ConnectionEvent:
    return ConnectionEvent(
        connection_id=u.connection_id,
        kind="state",
        ts=u.ts,
        state=u.state,
        code=u.code,
        reason=u.reason if u.reason is not None else u.error,
    )


def _event_row(e: ConnectionEvent) -> tuple[object, ...]:
    details = msgspec.json.encode(e.details).decode()
    return (e.connection_id, e.ts, e.kind, e.state, e.code, e.reason, details)


def _event_columns(events: Sequence[ConnectionEvent]) -> list[list[object]]:
    return [list(col) for col in zip(*(_event_row(e) for e in events), strict=True)]
