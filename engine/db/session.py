"""Pools and per-transaction identities: the engine's own role, or a platform user's.

Identity is always set inside a transaction with `set_config(..., true)`, so it ends with the
transaction and never leaks to the next user of a pooled connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Final, Literal, TypeAlias
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy
from msgspec import Meta

if TYPE_CHECKING:
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]
else:  # the same names at run time, for annotations in tests and callers
    Pool = asyncpg.Pool
    Connection = PoolConnectionProxy

IsolationLevel = Literal["read_committed", "repeatable_read", "serializable"]
ENGINE_ROLE: Final = "wsm_engine"
USER_ROLES: Final = frozenset({"anon", "authenticated", "service_role"})

# One round trip: the claims and the role, both local to the transaction. `role` set through
# set_config is SET LOCAL ROLE (PostgREST does the same), checked against membership.
_SET_IDENTITY: Final = (
    "SELECT set_config('request.jwt.claims', $1, true), set_config('role', $2, true)"
)


class DatabaseConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Where Postgres is and how the pool uses it."""

    # False: no persistence at all (nothing stored, nothing restored)
    enabled: bool = True
    # None: WSM_DATABASE_URL, else the embedded server (engine.db.embedded)
    url: str | None = None
    min_connections: Annotated[int, Meta(ge=0)] = 1
    max_connections: Annotated[int, Meta(gt=0)] = 4
    connect_timeout: Annotated[float, Meta(gt=0)] = 10.0
    command_timeout: Annotated[float, Meta(gt=0)] = 30.0
    # 0 behind a transaction-mode pooler (Supabase's port 6543, PgBouncer), which cannot
    # keep prepared statements across transactions
    statement_cache_size: Annotated[int, Meta(ge=0)] = 100

    def __repr__(self) -> str:  # the URL may carry a password
        url = None if self.url is None else redact_url(self.url)
        return (
            f"DatabaseConfig(enabled={self.enabled}, url={url!r}, "
            f"min_connections={self.min_connections}, "
            f"max_connections={self.max_connections}, connect_timeout={self.connect_timeout}, "
            f"command_timeout={self.command_timeout}, "
            f"statement_cache_size={self.statement_cache_size})"
        )


def redact_url(url: str) -> str:
    """`url` with its password (in the netloc or a `password=` parameter) replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = "&".join(
        "password=***" if item.startswith("password=") else item for item in parts.query.split("&")
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


async def create_pool(url: str, config: DatabaseConfig | None = None) -> Pool:
    """The process's one pool. Connections log in as the URL's user; rights come per transaction."""
    cfg = config or DatabaseConfig()
    return await asyncpg.create_pool(
        url,
        min_size=min(cfg.min_connections, cfg.max_connections),
        max_size=cfg.max_connections,
        timeout=cfg.connect_timeout,
        command_timeout=cfg.command_timeout,
        statement_cache_size=cfg.statement_cache_size,
        server_settings={"application_name": "wsm"},
    )


@asynccontextmanager
async def engine_tx(
    pool: Pool, *, isolation: IsolationLevel | None = None, readonly: bool = False
) -> AsyncIterator[Connection]:
    """A transaction as `wsm_engine`, the engine's writer role (rights in sql/README.md)."""
    async with pool.acquire() as conn, conn.transaction(isolation=isolation, readonly=readonly):
        await conn.execute(_SET_IDENTITY, "", ENGINE_ROLE)
        yield conn


@asynccontextmanager
async def as_user(
    pool: Pool,
    user_id: UUID | str | None,
    *,
    role: str = "authenticated",
    claims: Mapping[str, object] | None = None,
) -> AsyncIterator[Connection]:
    """A transaction as a platform user: what they may see and change is what RLS allows.

    `user_id` becomes the JWT `sub` that `auth.uid()` returns (None: no user, as for `anon`);
    `claims` adds other JWT claims. `role` is one of anon, authenticated, service_role.
    """
    if role not in USER_ROLES:
        raise ValueError(f"role must be one of {sorted(USER_ROLES)}, not {role!r}")
    payload: dict[str, object] = dict(claims or {})
    payload["role"] = role
    if user_id is not None:
        payload["sub"] = str(UUID(str(user_id)))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_SET_IDENTITY, msgspec.json.encode(payload).decode(), role)
        yield conn
