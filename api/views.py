"""Database rows joined with what the engine sees now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from api.schemas import Connection, Subscription
from engine.backoff import ReconnectPolicy
from engine.coordinator import ConnectionInfo, SubscriptionInfo
from engine.db.session import Connection as DbConnection
from engine.manager import WebSocketManager


def live_connections(manager: WebSocketManager) -> dict[str, ConnectionInfo]:
    """The engine's connections by their database row id."""
    return {c.row_id: c for c in manager.connections() if c.row_id is not None}


def live_subscriptions(manager: WebSocketManager) -> dict[str, SubscriptionInfo]:
    return {s.row_id: s for s in manager.subscriptions() if s.row_id is not None}


def connection_view(
    row: asyncpg.Record, info: ConnectionInfo | None, manager: WebSocketManager
) -> Connection:
    metrics = None
    if info is not None:
        metrics = manager.metrics(info.id)
    return Connection(
        id=str(row["id"]),
        name=row["name"],
        exchange=row["exchange"],
        url=row["url"],
        reconnect=msgspec.json.decode(row["reconnect"], type=ReconnectPolicy),
        desired_state=row["desired_state"],
        state=info.state if info is not None else "unknown",
        live_since=None
        if info is None or info.live_since is None
        else datetime.fromtimestamp(info.live_since, tz=UTC),
        last_error=(info.last_error or None) if info is not None else row["last_error"],
        created_at=row["created_at"],
        metrics=metrics,
    )


def subscription_view(row: asyncpg.Record, info: SubscriptionInfo | None) -> Subscription:
    return Subscription(
        id=str(row["id"]),
        connection_id=str(row["connection_id"]),
        exchange=row["exchange"],
        channel=row["channel"],
        symbols=list(row["symbols"]),
        kinds=None if row["kinds"] is None else list(row["kinds"]),
        state=info.status if info is not None else row["state"],
        reason=(info.reason or None) if info is not None else row["reason"],
        created_at=row["created_at"],
    )


async def own_connection(conn: DbConnection, row_id: UUID, *, lock: bool = False) -> Any:
    """The caller's connection row (RLS hides everyone else's), or None."""
    sql = "SELECT * FROM websocket_connections WHERE id = $1"
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), row_id)


async def visible_connection_ids(conn: DbConnection) -> set[str]:
    return {str(r[0]) for r in await conn.fetch("SELECT id FROM websocket_connections")}
