"""/api/websocket/subscriptions: what the caller's connections subscribe to.

Identical subscriptions of several connections (several users') share one upstream stream in
the engine; each user still has, sees and removes only their own subscription rows.
"""

from __future__ import annotations

from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from api.audit import audit_change
from api.errors import ApiError, invalid, not_found
from api.jsonio import decode_body, json_response
from api.params import created_cursor, encode_cursor, limit, uuid_path, uuid_query
from api.schemas import Deleted, NewSubscription, SubscriptionPage
from api.state import api_state, principal, user_tx
from api.views import live_connections, live_subscriptions, own_connection, subscription_view
from engine.errors import ConfigError, NotFound, UnknownChannel, UnknownSymbol, WSMError

_PAGE = (
    "SELECT s.*, c.exchange FROM websocket_subscriptions s"
    " JOIN websocket_connections c ON c.id = s.connection_id"
    " WHERE s.state <> 'removed' AND ($1::uuid IS NULL OR s.connection_id = $1)"
    " AND ($2::timestamptz IS NULL OR (s.created_at, s.id) > ($2, $3))"
    " ORDER BY s.created_at, s.id LIMIT $4"
)


async def list_subscriptions(request: Request) -> Response:
    api = api_state(request)
    conn_id = uuid_query(request, "connection_id", required=False)
    n = limit(request)
    after = created_cursor(request)
    async with user_tx(request) as conn:
        rows = await conn.fetch(_PAGE, conn_id, *(after or (None, None)), n + 1)
    live = live_subscriptions(api.manager)
    items = [subscription_view(r, live.get(str(r["id"]))) for r in rows[:n]]
    last = rows[n - 1] if len(rows) > n else None
    cursor = None if last is None else encode_cursor(last["created_at"], last["id"])
    return json_response(SubscriptionPage(items=items, next_cursor=cursor))


async def create_subscription(request: Request) -> Response:
    api = api_state(request)
    spec = decode_body(await request.body(), NewSubscription)
    try:
        conn_row_id = UUID(spec.connection_id)
    except ValueError:
        raise invalid("connection_id must be a UUID", "connection_id") from None
    async with user_tx(request) as conn:
        row = await own_connection(conn, conn_row_id)
    if row is None:
        raise not_found("connection", conn_row_id)
    info = live_connections(api.manager).get(str(conn_row_id))
    if info is None:
        raise ApiError(503, "engine_unavailable", "the engine does not run this connection")
    coord = api.manager.coordinator
    kinds: list[str] | None = None if spec.kinds is None else list(spec.kinds)
    try:
        channel, instruments = coord.validate(info.exchange, spec.channel, spec.symbols, kinds)
    except UnknownChannel as exc:
        raise invalid(str(exc), "channel") from None
    except UnknownSymbol as exc:
        raise invalid(str(exc), "symbols") from None
    except ConfigError as exc:
        raise invalid(exc.reason, exc.key if exc.key in ("symbols", "kinds") else None) from None
    except NotFound as exc:
        raise ApiError(503, "engine_unavailable", str(exc)) from None
    symbols = list(dict.fromkeys(i.symbol for i in instruments))
    async with user_tx(request) as conn:
        sub = await conn.fetchrow(
            "INSERT INTO websocket_subscriptions (owner, connection_id, channel, symbols, kinds)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING *, $6::text AS exchange",
            principal(request).user_id,
            conn_row_id,
            channel.name,
            symbols,
            kinds,
            info.exchange,
        )
        assert sub is not None
        await audit_change(
            conn,
            request.scope,
            "subscriptions.create",
            str(sub["id"]),
            {"connection_id": str(conn_row_id), "channel": channel.name, "symbols": symbols},
        )
    try:
        live = await coord.subscribe(info.id, channel.name, symbols, kinds, row_id=sub["id"])
    except WSMError as exc:
        async with user_tx(request) as conn:
            await conn.execute("DELETE FROM websocket_subscriptions WHERE id = $1", sub["id"])
        raise ApiError(503, "engine_unavailable", f"the engine refused it: {exc}") from None
    return json_response(subscription_view(sub, live), status=201)


async def delete_subscription(request: Request) -> Response:
    """Unsubscribe; the upstream stream stays while another subscription wants it."""
    api = api_state(request)
    if "id" in request.path_params:
        sub_id = uuid_path(request, "subscription")
    else:
        query_id = uuid_query(request, "id")
        assert query_id is not None
        sub_id = query_id
    async with user_tx(request) as conn:
        gone = await conn.fetchval(
            "DELETE FROM websocket_subscriptions WHERE id = $1 AND state <> 'removed' RETURNING id",
            sub_id,
        )
        if gone is None:
            raise not_found("subscription", sub_id)
        await audit_change(conn, request.scope, "subscriptions.delete", str(sub_id), {})
    info = live_subscriptions(api.manager).get(str(sub_id))
    if info is not None:
        await api.manager.coordinator.unsubscribe(info.id)
    return json_response(Deleted(id=str(sub_id), deleted=True))
