"""What every request handler needs, built once per app: `request.app.state.api`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request

from api.audit import AuditWriter
from api.auth import Principal, TokenVerifier
from api.clientip import ClientAddress
from api.ratelimit import RateLimiter
from engine.config import ApiConfig
from engine.db.session import Connection, Pool, as_user
from engine.manager import WebSocketManager


@dataclass
class ApiState:
    manager: WebSocketManager
    config: ApiConfig
    verifier: TokenVerifier
    clients: ClientAddress
    limiter: RateLimiter
    failures: RateLimiter  # failed authentications per client address
    pool: Pool | None = None
    audit: AuditWriter = field(init=False)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = field(default_factory=time.time)
    requests: dict[int, int] = field(default_factory=dict)  # responses by status

    @property
    def db(self) -> Pool:
        if self.pool is None:
            raise RuntimeError("the API's database pool is not open")
        return self.pool

    @property
    def exchanges(self) -> list[str]:
        """Exchanges users may open connections to."""
        installed = self.manager.exchanges_available()
        return [e for e in installed if not self.config.exchanges or e in self.config.exchanges]

    def url_allowed(self, exchange: str, url: str) -> bool:
        """A connection's URL override must stay on the exchange's own host or a listed one
        (the engine must not become a way to reach arbitrary hosts)."""
        host = urlsplit(url).hostname
        if host is None:
            return False
        ex_cfg = self.manager.config.exchanges.get(exchange)
        own = {urlsplit(ex_cfg.ws_url).hostname} if ex_cfg and ex_cfg.ws_url else set()
        from engine.registry import venues

        venue = venues().get(exchange)
        if venue is not None:
            own.add(urlsplit(venue.spec.ws_url).hostname)
        return host in own or host in self.config.allowed_url_hosts


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def principal(request: Request) -> Principal:
    p: Principal = request.state.principal
    return p


@asynccontextmanager
async def user_tx(request: Request) -> AsyncIterator[Connection]:
    """A transaction as the caller (`authenticated`, their claims): RLS decides."""
    p = principal(request)
    async with as_user(api_state(request).db, p.user_id) as conn:
        yield conn


async def one_at_a_time(conn: Connection, what: str, user: object) -> None:
    """Serialise one kind of change per user until the transaction ends (a check-then-write,
    such as a limit or the allow-list's lock-out guard, must not interleave with another)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))", what, str(user)
    )
