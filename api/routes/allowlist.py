"""/api/websocket/ip-whitelist: the caller's IP allow-list (table `ip_whitelist`, enforced by
`api.middleware.allowlist`). A change that would refuse the very address making it is
refused with 409, so nobody locks themselves out by accident."""

from __future__ import annotations

import ipaddress
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from api.audit import audit_change
from api.errors import ApiError, invalid, not_found
from api.jsonio import decode_body, json_response
from api.middleware.allowlist import Network, admitted, user_networks
from api.params import created_cursor, encode_cursor, limit, uuid_path
from api.schemas import AllowedNetwork, AllowedNetworkPage, Deleted, NewAllowedNetwork
from api.state import api_state, one_at_a_time, principal, user_tx

_PAGE = (
    "SELECT * FROM ip_whitelist"
    " WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2))"
    " ORDER BY created_at, id LIMIT $3"
)


def _view(row: Any) -> AllowedNetwork:
    return AllowedNetwork(
        id=str(row["id"]), cidr=str(row["cidr"]), label=row["label"], created_at=row["created_at"]
    )


def _guard(request: Request, networks: list[Network]) -> None:
    client = request.state.client_ip
    if not admitted(client, networks):
        raise ApiError(
            409,
            "would_lock_out",
            f"your address {client} would not be on the allow-list: allow it first",
            field="cidr",
        )


async def list_networks(request: Request) -> Response:
    n = limit(request)
    after = created_cursor(request)
    async with user_tx(request) as conn:
        rows = await conn.fetch(_PAGE, *(after or (None, None)), n + 1)
    last = rows[n - 1] if len(rows) > n else None
    cursor = None if last is None else encode_cursor(last["created_at"], last["id"])
    return json_response(AllowedNetworkPage(items=[_view(r) for r in rows[:n]], next_cursor=cursor))


async def add_network(request: Request) -> Response:
    api = api_state(request)
    spec = decode_body(await request.body(), NewAllowedNetwork)
    try:
        network = ipaddress.ip_network(spec.cidr.strip(), strict=True)
    except ValueError as exc:
        raise invalid(f"not a network: {exc}", "cidr") from None
    user = principal(request).user_id
    cap = api.config.max_ip_whitelist_per_user
    try:
        async with user_tx(request) as conn:
            await one_at_a_time(conn, "wsm.ip_whitelist", user)
            networks = await user_networks(conn)
            if len(networks) >= cap:
                raise ApiError(409, "limit_reached", f"at most {cap} networks per user")
            _guard(request, [*networks, network])
            row = await conn.fetchrow(
                "INSERT INTO ip_whitelist (owner, cidr, label) VALUES ($1, $2, $3) RETURNING *",
                user,
                network,
                spec.label,
            )
            assert row is not None
            await audit_change(
                conn,
                request.scope,
                "ip_whitelist.add",
                str(row["id"]),
                {"cidr": str(network), "label": spec.label},
            )
    except asyncpg.UniqueViolationError:
        raise ApiError(
            409, "conflict", f"{network} is on the allow-list already", field="cidr"
        ) from None
    return json_response(_view(row), status=201)


async def delete_network(request: Request) -> Response:
    row_id = uuid_path(request, "allow-list entry")
    user = principal(request).user_id
    async with user_tx(request) as conn:
        await one_at_a_time(conn, "wsm.ip_whitelist", user)
        gone = await conn.fetchrow("DELETE FROM ip_whitelist WHERE id = $1 RETURNING cidr", row_id)
        if gone is None:
            raise not_found("allow-list entry", row_id)
        _guard(request, await user_networks(conn))
        await audit_change(
            conn, request.scope, "ip_whitelist.delete", str(row_id), {"cidr": str(gone[0])}
        )
    return json_response(Deleted(id=str(row_id), deleted=True))
