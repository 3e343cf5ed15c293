"""Identities are per transaction and never outlive it on a pooled connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg
import pytest

from engine.db import DatabaseConfig, as_user, create_pool, engine_tx
from engine.db.session import Pool


@pytest.fixture
async def one_connection(database_url: str) -> AsyncIterator[Pool]:
    """A pool of exactly one connection, so every acquire gets the same session."""
    p = await create_pool(database_url, DatabaseConfig(min_connections=1, max_connections=1))
    yield p
    await p.close()


async def identity(conn: asyncpg.Connection) -> tuple[str, UUID | None, str]:
    row = await conn.fetchrow(
        "SELECT current_user, auth.uid(), coalesce(current_setting('request.jwt.claims', true), '')"
    )
    assert row is not None
    return row[0], row[1], row[2]


async def test_as_user_sets_role_and_uid_for_the_transaction_only(
    one_connection: Pool, owner: UUID
) -> None:
    async with one_connection.acquire() as conn:
        admin = (await identity(conn))[0]
    async with as_user(one_connection, owner) as conn:
        user, uid, claims = await identity(conn)
        assert (user, uid) == ("authenticated", owner)
        assert '"role":"authenticated"' in claims
    async with one_connection.acquire() as conn:
        assert await identity(conn) == (admin, None, "")


async def test_identity_is_cleared_when_the_transaction_fails(
    one_connection: Pool, owner: UUID
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with as_user(one_connection, owner) as conn:
            await conn.execute("DELETE FROM audit_log")
    async with one_connection.acquire() as conn:
        user, uid, _ = await identity(conn)
        assert user != "authenticated"
        assert uid is None


async def test_claims_set_outside_a_transaction_are_gone_at_the_next_statement(
    one_connection: Pool, owner: UUID
) -> None:
    """set_config(..., is_local=true) in autocommit lasts one statement: fail closed."""
    async with one_connection.acquire() as conn:
        await conn.execute(
            "SELECT set_config('request.jwt.claims', $1, true)", f'{{"sub": "{owner}"}}'
        )
        assert await conn.fetchval("SELECT auth.uid()") is None
        async with conn.transaction():
            await conn.execute("SELECT set_config('role', 'authenticated', true)")
            assert await conn.fetchval("SELECT auth.uid()") is None


@pytest.mark.parametrize("claims", ["", "{}", '{"role": "authenticated"}', '{"sub": ""}'])
async def test_uid_is_null_without_a_sub(pool: Pool, claims: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('request.jwt.claims', $1, true)", claims)
        assert await conn.fetchval("SELECT auth.uid()") is None


async def test_engine_tx_runs_as_wsm_engine(one_connection: Pool) -> None:
    async with engine_tx(one_connection) as conn:
        assert await conn.fetchval("SELECT current_user") == "wsm_engine"
        assert await conn.fetchval("SELECT auth.uid()") is None
    async with one_connection.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") != "wsm_engine"


async def test_as_user_refuses_other_roles(pool: Pool, owner: UUID) -> None:
    for role in ("wsm_engine", "postgres", "authenticated; DROP TABLE audit_log"):
        with pytest.raises(ValueError, match="role must be one of"):
            async with as_user(pool, owner, role=role):
                pass


async def test_as_user_rejects_a_user_id_that_is_not_a_uuid(pool: Pool) -> None:
    with pytest.raises(ValueError, match="badly formed"):
        async with as_user(pool, "' OR 1=1 --"):
            pass
