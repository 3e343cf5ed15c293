"""/api/websocket/connections/{id}/events: state changes and errors, by time."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.errors import bad_request, not_found
from api.jsonio import json_response
from api.params import choice, decode_cursor, encode_cursor, limit, timestamp, uuid_path
from api.schemas import Event, EventPage
from api.state import user_tx
from api.views import own_connection

_PAGE = (
    "SELECT id, connection_id, ts, kind, state, code, reason FROM websocket_connection_events"
    " WHERE connection_id = $1 AND ($2::timestamptz IS NULL OR ts >= $2)"
    " AND ($3::timestamptz IS NULL OR ts < $3) AND ($4::text IS NULL OR kind = $4)"
    " AND id > $5 ORDER BY id LIMIT $6"
)


async def list_events(request: Request) -> Response:
    row_id = uuid_path(request, "connection")
    start, end = timestamp(request, "from"), timestamp(request, "to")
    kind = choice(request, "kind", ("state", "error"))
    n = limit(request)
    cursor = decode_cursor(request, 1)
    after = 0
    if cursor is not None:
        if not cursor[0].isdigit() or len(cursor[0]) > 18:
            raise bad_request("cursor is not one this API gave", "cursor")
        after = int(cursor[0])
    async with user_tx(request) as conn:
        if await own_connection(conn, row_id) is None:
            raise not_found("connection", row_id)
        rows = await conn.fetch(_PAGE, row_id, start, end, kind, after, n + 1)
    items = [
        Event(
            id=r["id"],
            connection_id=str(r["connection_id"]),
            ts=r["ts"],
            kind=r["kind"],
            state=r["state"],
            code=r["code"],
            reason=r["reason"],
        )
        for r in rows[:n]
    ]
    next_cursor = encode_cursor(rows[n - 1]["id"]) if len(rows) > n else None
    return json_response(EventPage(items=items, next_cursor=next_cursor))
