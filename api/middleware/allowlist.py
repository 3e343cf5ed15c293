"""403 when the user keeps an IP allow-list (`ip_whitelist`, read as the user) and the client
address is on none of its networks. A user without entries is not restricted."""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from api.audit import audit_refusal
from api.errors import ApiError
from engine.db.session import Connection, as_user

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state", {})
        principal = state.get("principal")
        if scope["type"] == "http" and principal is not None:
            api = scope["app"].state.api
            async with as_user(api.db, principal.user_id) as conn:
                networks = await user_networks(conn)
            client = state.get("client_ip")
            if not admitted(client, networks):
                err = ApiError(403, "forbidden", f"address {client} is not on the allow-list")
                audit_refusal(scope, err.status, err.code, err.message)
                await err.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def user_networks(conn: Connection) -> list[Network]:
    """The allow-list of the user `conn` acts as (RLS picks the rows)."""
    return [r[0] for r in await conn.fetch("SELECT cidr FROM ip_whitelist")]


def admitted(
    client: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    networks: list[Network],
) -> bool:
    """Whether `client` may call: a user without networks is not restricted."""
    return not networks or (
        client is not None
        and any(client.version == net.version and client in net for net in networks)
    )
