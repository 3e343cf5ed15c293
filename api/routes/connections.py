"""/api/websocket/connections: the caller's connections, with what the engine sees now."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api.audit import audit_change
from api.errors import ApiError, invalid, not_found
from api.jsonio import decode_body, json_response
from api.params import created_cursor, encode_cursor, limit, uuid_path, uuid_query
from api.schemas import ConnectionPage, Deleted, NewConnection
from api.state import api_state, one_at_a_time, principal, user_tx
from api.views import connection_view, live_connections, own_connection
from engine.errors import WSMError

_PAGE = (
    "SELECT * FROM websocket_connections"
    " WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2))"
    " ORDER BY created_at, id LIMIT $3"
)


async def list_connections(request: Request) -> Response:
    api = api_state(request)
    n = limit(request)
    after = created_cursor(request)
    async with user_tx(request) as conn:
        rows = await conn.fetch(_PAGE, *(after or (None, None)), n + 1)
    live = live_connections(api.manager)
    items = [connection_view(r, live.get(str(r["id"])), api.manager) for r in rows[:n]]
    last = rows[n - 1] if len(rows) > n else None
    cursor = None if last is None else encode_cursor(last["created_at"], last["id"])
    return json_response(ConnectionPage(items=items, next_cursor=cursor))


async def get_connection(request: Request) -> Response:
    api = api_state(request)
    row_id = uuid_path(request, "connection")
    async with user_tx(request) as conn:
        row = await own_connection(conn, row_id)
    if row is None:
        raise not_found("connection", row_id)
    info = live_connections(api.manager).get(str(row_id))
    return json_response(connection_view(row, info, api.manager))


async def create_connection(request: Request) -> Response:
    api = api_state(request)
    spec = decode_body(await request.body(), NewConnection)
    if spec.exchange not in api.exchanges:
        known = ", ".join(api.exchanges)
        raise invalid(f"unknown exchange {spec.exchange!r} (known: {known})", "exchange")
    if spec.url is not None and not api.url_allowed(spec.exchange, spec.url):
        raise invalid("the URL must be on the exchange's own host or an allowed one", "url")
    user = principal(request).user_id
    try:
        async with user_tx(request) as conn:
            await one_at_a_time(conn, "wsm.connections", user)  # else all see room
            count = await conn.fetchval("SELECT count(*) FROM websocket_connections")
            if count >= api.config.max_connections_per_user:
                raise ApiError(
                    409,
                    "limit_reached",
                    f"at most {api.config.max_connections_per_user} connections per user",
                )
            row = await conn.fetchrow(
                "INSERT INTO websocket_connections"
                " (owner, exchange, name, url, reconnect, desired_state)"
                " VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING *",
                user,
                spec.exchange,
                spec.name,
                spec.url,
                msgspec.json.encode(spec.reconnect).decode(),
                "connected" if spec.connect else "disconnected",
            )
            assert row is not None
            await audit_change(
                conn,
                request.scope,
                "connections.create",
                str(row["id"]),
                {"exchange": spec.exchange, "name": spec.name, "connect": spec.connect},
            )
    except asyncpg.UniqueViolationError:
        raise ApiError(
            409, "conflict", f"a connection named {spec.name!r} exists", field="name"
        ) from None
    try:
        info = await api.manager.coordinator.connect(
            spec.exchange,
            str(row["id"]),
            url=spec.url,
            policy=spec.reconnect,
            owner=str(user),
            name=spec.name,
            row_id=row["id"],
            paused=not spec.connect,
        )
    except WSMError as exc:
        await _undo_create(request, row["id"], exc)
        raise ApiError(503, "engine_unavailable", f"the engine could not open it: {exc}") from None
    return json_response(connection_view(row, info, api.manager), status=201)


async def _undo_create(request: Request, row_id: UUID, exc: Exception) -> None:
    async with user_tx(request) as conn:
        await conn.execute("DELETE FROM websocket_connections WHERE id = $1", row_id)
        await audit_change(
            conn, request.scope, "connections.create_undone", str(row_id), {"error": str(exc)}
        )


async def delete_connection(request: Request) -> Response:
    """Disconnect and forget: the row (with its subscriptions, metrics and events) goes."""
    api = api_state(request)
    if "id" in request.path_params:
        row_id = uuid_path(request, "connection")
    else:
        query_id = uuid_query(request, "id")
        assert query_id is not None
        row_id = query_id
    async with user_tx(request) as conn:
        gone = await conn.fetchval(
            "DELETE FROM websocket_connections WHERE id = $1 RETURNING id", row_id
        )
        if gone is None:
            raise not_found("connection", row_id)
        await audit_change(conn, request.scope, "connections.delete", str(row_id), {})
    info = live_connections(api.manager).get(str(row_id))
    if info is not None:
        await api.manager.coordinator.disconnect(info.id)
    return json_response(Deleted(id=str(row_id), deleted=True))


async def connect(request: Request) -> Response:
    """Connect a disconnected connection (its subscriptions come back with it)."""
    return await _action(request, "connect")


async def disconnect(request: Request) -> Response:
    """Disconnect, keeping the connection and its subscriptions."""
    return await _action(request, "disconnect")


async def reconnect(request: Request) -> Response:
    """Drop the venue connection and connect again now."""
    return await _action(request, "reconnect")


async def _action(request: Request, action: str) -> Response:
    api = api_state(request)
    row_id = uuid_path(request, "connection")
    desired = {"connect": "connected", "disconnect": "disconnected"}.get(action)
    async with user_tx(request) as conn:
        if desired is None:
            row = await own_connection(conn, row_id)
        else:
            row = await conn.fetchrow(
                "UPDATE websocket_connections SET desired_state = $2 WHERE id = $1 RETURNING *",
                row_id,
                desired,
            )
        if row is None:
            raise not_found("connection", row_id)
        if action == "reconnect" and row["desired_state"] != "connected":
            raise ApiError(409, "not_connected", "connect it first: it is disconnected")
        await audit_change(conn, request.scope, f"connections.{action}", str(row_id), {})
    coord = api.manager.coordinator
    info = live_connections(api.manager).get(str(row_id))
    if info is None:
        raise ApiError(503, "engine_unavailable", "the engine does not run this connection")
    if action == "connect":
        info = await coord.resume(info.id)
    elif action == "disconnect":
        info = await coord.pause(info.id)
    else:
        await coord.reconnect(info.id)
    return json_response(connection_view(row, info, api.manager))
