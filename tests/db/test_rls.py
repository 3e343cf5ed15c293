"""RELIABILITY row 19: every table x every actor x every verb, against one expected matrix.

Users A and B each own one seeded row per table. Each probe runs in its own transaction, as
its actor, and is rolled back. Outcomes:
  A, B, AB, -   which seeded owners' rows a SELECT sees
  ok / none     the statement changed a row / changed nothing (the row is invisible)
  rls           refused by a policy's WITH CHECK ("new row violates row-level security")
  deny          refused by privileges ("permission denied")
  fk            refused by the (connection_id, owner) foreign keys
Columns: select; insert a row owned by A / by B; update A's row / B's row; give A's row to B
(UPDATE ... SET owner = B); delete A's row / B's row.
Actors: anon; users A and B (authenticated with their claims); `noclaims` (authenticated, no
claims in the transaction); `stale` (claims set with is_local=true *outside* a transaction,
then a transaction as authenticated: the claims must be gone); service_role; wsm_engine;
`api` (wsm_api, the REST API's own role, which only appends audit rows).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from engine.db import as_user, engine_tx
from engine.db.session import Connection, Pool

EXPECTED = """
websocket_connections
    anon      deny deny deny deny deny deny deny deny
    A         A    ok   rls  ok   none deny ok   none
    B         B    rls  ok   none ok   deny none ok
    noclaims  -    rls  rls  none none deny none none
    stale     -    rls  rls  none none deny none none
    service   AB   ok   ok   ok   ok   fk   ok   ok
    engine    AB   ok   ok   ok   ok   fk   ok   ok
    api       deny deny deny deny deny deny deny deny
websocket_subscriptions
    anon      deny deny deny deny deny deny deny deny
    A         A    ok   rls  ok   none deny ok   none
    B         B    rls  ok   none ok   deny none ok
    noclaims  -    rls  rls  none none deny none none
    stale     -    rls  rls  none none deny none none
    service   AB   ok   ok   ok   ok   fk   ok   ok
    engine    AB   ok   ok   ok   ok   fk   ok   ok
    api       deny deny deny deny deny deny deny deny
websocket_connection_metrics
    anon      deny deny deny deny deny deny deny deny
    A         A    deny deny deny deny deny deny deny
    B         B    deny deny deny deny deny deny deny
    noclaims  -    deny deny deny deny deny deny deny
    stale     -    deny deny deny deny deny deny deny
    service   AB   ok   ok   ok   ok   fk   ok   ok
    engine    AB   ok   ok   deny deny deny deny deny
    api       deny deny deny deny deny deny deny deny
websocket_connection_events
    anon      deny deny deny deny deny deny deny deny
    A         A    deny deny deny deny deny deny deny
    B         B    deny deny deny deny deny deny deny
    noclaims  -    deny deny deny deny deny deny deny
    stale     -    deny deny deny deny deny deny deny
    service   AB   ok   ok   ok   ok   fk   ok   ok
    engine    AB   ok   ok   deny deny deny deny deny
    api       deny deny deny deny deny deny deny deny
ip_whitelist
    anon      deny deny deny deny deny deny deny deny
    A         A    ok   rls  ok   none deny ok   none
    B         B    rls  ok   none ok   deny none ok
    noclaims  -    rls  rls  none none deny none none
    stale     -    rls  rls  none none deny none none
    service   AB   ok   ok   ok   ok   ok   ok   ok
    engine    AB   deny deny deny deny deny deny deny
    api       deny deny deny deny deny deny deny deny
api_key_versions
    anon      deny deny deny deny deny deny deny deny
    A         A    deny deny deny deny deny deny deny
    B         B    deny deny deny deny deny deny deny
    noclaims  -    deny deny deny deny deny deny deny
    stale     -    deny deny deny deny deny deny deny
    service   AB   ok   ok   ok   ok   ok   ok   ok
    engine    AB   ok   ok   ok   ok   deny deny deny
    api       deny deny deny deny deny deny deny deny
audit_log
    anon      deny deny deny deny deny deny deny deny
    A         A    deny deny deny deny deny deny deny
    B         B    deny deny deny deny deny deny deny
    noclaims  -    deny deny deny deny deny deny deny
    stale     -    deny deny deny deny deny deny deny
    service   AB   ok   ok   deny deny deny deny deny
    engine    AB   ok   ok   deny deny deny deny deny
    api       deny ok   ok   deny deny deny deny deny
"""
COLUMNS = ("select", "ins_A", "ins_B", "upd_A", "upd_B", "A->B", "del_A", "del_B")
ACTORS = ("anon", "A", "B", "noclaims", "stale", "service", "engine", "api")
T0 = datetime(2026, 1, 1, tzinfo=UTC)

Matrix = dict[tuple[str, str], tuple[str, ...]]


def parse(text: str) -> Matrix:
    matrix: Matrix = {}
    table = ""
    for line in text.strip().splitlines():
        if not line.startswith(" "):
            table = line.strip()
            continue
        actor, *cells = line.split()
        assert len(cells) == len(COLUMNS), line
        matrix[table, actor] = tuple(cells)
    return matrix


class Seed:
    """One row per table for each of users A and B, written as the admin (no RLS)."""

    def __init__(self) -> None:
        self.users = {"A": uuid.uuid4(), "B": uuid.uuid4()}
        self.rows: dict[tuple[str, str], Any] = {}

    async def write(self, conn: asyncpg.Connection) -> None:
        for n, (who, uid) in enumerate(self.users.items()):
            c = await conn.fetchval(
                "INSERT INTO websocket_connections (owner, exchange, name)"
                " VALUES ($1, 'binance', $2) RETURNING id",
                uid,
                f"main-{who}",
            )
            self.rows["websocket_connections", who] = c
            self.rows["websocket_subscriptions", who] = await conn.fetchval(
                "INSERT INTO websocket_subscriptions (owner, connection_id, channel, symbols)"
                " VALUES ($1, $2, 'trades', '{BTC-USDT}') RETURNING id",
                uid,
                c,
            )
            await conn.execute(
                "INSERT INTO websocket_connection_metrics (connection_id, owner, ts)"
                " VALUES ($1, $2, $3)",
                c,
                uid,
                T0,
            )
            self.rows["websocket_connection_metrics", who] = c
            self.rows["websocket_connection_events", who] = await conn.fetchval(
                "INSERT INTO websocket_connection_events (connection_id, owner, kind, state)"
                " VALUES ($1, $2, 'state', 'live') RETURNING id",
                c,
                uid,
            )
            self.rows["ip_whitelist", who] = await conn.fetchval(
                "INSERT INTO ip_whitelist (owner, cidr) VALUES ($1, $2) RETURNING id",
                uid,
                f"10.{n}.0.0/16",
            )
            self.rows["api_key_versions", who] = await conn.fetchval(
                "INSERT INTO api_key_versions"
                " (owner, exchange, version, key_id, secret_ciphertext, nonce)"
                " VALUES ($1, $2, 1, 'k', '\\x00', $3) RETURNING id",
                uid,
                ("binance", "okx")[n],
                bytes(12),
            )
            self.rows["audit_log", who] = await conn.fetchval(
                "INSERT INTO audit_log (actor, action, target, outcome)"
                " VALUES ($1, 'seed', 'seed', 'ok') RETURNING id",
                uid,
            )


Statement = tuple[str, tuple[Any, ...]]


def statements(table: str, seed: Seed) -> dict[str, Statement]:
    """The SQL of each probe column for one table."""
    u, row = seed.users, seed.rows
    owner_col = "actor" if table == "audit_log" else "owner"
    key = "connection_id = $1 AND ts = $2" if table.endswith("metrics") else "id = $1"

    def key_args(who: str) -> tuple[Any, ...]:
        return (row[table, who], T0) if table.endswith("metrics") else (row[table, who],)

    inserts: dict[str, Callable[[str], Statement]] = {
        "websocket_connections": lambda w: (
            "INSERT INTO websocket_connections (owner, exchange, name) VALUES ($1, 'okx', 'new')",
            (u[w],),
        ),
        "websocket_subscriptions": lambda w: (
            "INSERT INTO websocket_subscriptions (owner, connection_id, channel, symbols)"
            " VALUES ($1, $2, 'book', '{ETH-USDT}')",
            (u[w], row["websocket_connections", w]),
        ),
        "websocket_connection_metrics": lambda w: (
            "INSERT INTO websocket_connection_metrics (connection_id, owner, ts)"
            " VALUES ($2, $1, $3)",
            (u[w], row["websocket_connections", w], T0 + timedelta(seconds=1)),
        ),
        "websocket_connection_events": lambda w: (
            "INSERT INTO websocket_connection_events (connection_id, owner, kind)"
            " VALUES ($2, $1, 'error')",
            (u[w], row["websocket_connections", w]),
        ),
        "ip_whitelist": lambda w: (
            "INSERT INTO ip_whitelist (owner, cidr, label) VALUES ($1, '192.0.2.0/24', 'x')",
            (u[w],),
        ),
        "api_key_versions": lambda w: (
            "INSERT INTO api_key_versions"
            " (owner, exchange, version, key_id, secret_ciphertext, nonce, state)"
            " VALUES ($1, 'kraken', 1, 'k', '\\x00', $2, 'revoked')",
            (u[w], bytes(12)),
        ),
        "audit_log": lambda w: (
            "INSERT INTO audit_log (actor, action, target, outcome)"
            " VALUES ($1, 'probe', 'probe', 'ok')",
            (u[w],),
        ),
    }
    harmless = {
        "websocket_connections": "url = 'wss://probe'",
        "websocket_subscriptions": "symbols = '{SOL-USDT}'",
        "websocket_connection_metrics": "errors = errors + 1",
        "websocket_connection_events": "reason = 'probe'",
        "ip_whitelist": "label = 'probe'",
        "api_key_versions": "state = 'revoked'",
        "audit_log": "outcome = 'probe'",
    }[table]
    n = len(key_args("A")) + 1
    return {
        "select": (
            f"SELECT {owner_col} FROM {table} WHERE {owner_col} = ANY($1)",
            ([u["A"], u["B"]],),
        ),
        "ins_A": inserts[table]("A"),
        "ins_B": inserts[table]("B"),
        "upd_A": (f"UPDATE {table} SET {harmless} WHERE {key}", key_args("A")),
        "upd_B": (f"UPDATE {table} SET {harmless} WHERE {key}", key_args("B")),
        "A->B": (
            f"UPDATE {table} SET {owner_col} = ${n} WHERE {key}",
            (*key_args("A"), u["B"]),
        ),
        "del_A": (f"DELETE FROM {table} WHERE {key}", key_args("A")),
        "del_B": (f"DELETE FROM {table} WHERE {key}", key_args("B")),
    }


class _Rollback(Exception):
    pass


@asynccontextmanager
async def acting(pool: Pool, actor: str, seed: Seed) -> AsyncIterator[Connection]:
    """A transaction as `actor` that is always rolled back."""
    try:
        async with _identity(pool, actor, seed) as conn:
            yield conn
            raise _Rollback
    except _Rollback:
        pass


@asynccontextmanager
async def _identity(pool: Pool, actor: str, seed: Seed) -> AsyncIterator[Connection]:
    if actor in ("A", "B"):
        async with as_user(pool, seed.users[actor]) as conn:
            yield conn
    elif actor in ("anon", "service"):
        role = "anon" if actor == "anon" else "service_role"
        async with as_user(pool, None, role=role) as conn:
            yield conn
    elif actor == "engine":
        async with engine_tx(pool) as conn:
            yield conn
    elif actor == "api":  # the REST API's own role (sql/004_api.sql): audit rows only
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('role', 'wsm_api', true)")
            yield conn
    else:
        async with pool.acquire() as conn:
            if actor == "stale":  # is_local=true outside a transaction: gone at once
                claims = f'{{"sub": "{seed.users["A"]}", "role": "authenticated"}}'
                await conn.execute("SELECT set_config('request.jwt.claims', $1, true)", claims)
            async with conn.transaction():
                await conn.execute("SELECT set_config('role', 'authenticated', true)")
                yield conn


async def observe(conn: Connection, column: str, stmt: Statement, seed: Seed) -> str:
    sql, args = stmt
    try:
        if column == "select":
            owners = {r[0] for r in await conn.fetch(sql, *args)}
            return "".join(w for w in ("A", "B") if seed.users[w] in owners) or "-"
        status = await conn.execute(sql, *args)
    except asyncpg.InsufficientPrivilegeError as exc:
        return "rls" if "row-level security" in str(exc) else "deny"
    except asyncpg.ForeignKeyViolationError:
        return "fk"
    return "ok" if int(status.rsplit(" ", 1)[1]) else "none"


@pytest.fixture
async def seed(pool: Pool) -> AsyncIterator[Seed]:
    s = Seed()
    async with pool.acquire() as conn:
        await s.write(conn)
    yield s
    async with pool.acquire() as conn:
        for uid in s.users.values():
            await conn.execute("DELETE FROM websocket_connections WHERE owner = $1", uid)
            await conn.execute("DELETE FROM ip_whitelist WHERE owner = $1", uid)
            await conn.execute("DELETE FROM api_key_versions WHERE owner = $1", uid)
            await conn.execute("DELETE FROM audit_log WHERE actor = $1", uid)


async def test_rls_matrix(pool: Pool, seed: Seed) -> None:
    expected = parse(EXPECTED)
    observed: Matrix = {}
    for table, actor in expected:
        cells = []
        for column, stmt in statements(table, seed).items():
            async with acting(pool, actor, seed) as conn:
                cells.append(await observe(conn, column, stmt, seed))
        observed[table, actor] = tuple(cells)
    wrong = [
        f"{t} / {a} / {c}: expected {e}, observed {o}"
        for (t, a), cells in expected.items()
        for c, e, o in zip(COLUMNS, cells, observed[t, a], strict=True)
        if e != o
    ]
    assert not wrong, "\n".join(wrong)
    assert {t for t, _ in expected} == set(TABLES)
    assert {a for _, a in expected} == set(ACTORS)


TABLES = (
    "websocket_connections",
    "websocket_subscriptions",
    "websocket_connection_metrics",
    "websocket_connection_events",
    "ip_whitelist",
    "api_key_versions",
    "audit_log",
)


async def test_matrix_covers_every_table(pool: Pool) -> None:
    async with pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'wsm_schema_migrations'"
        )
    assert {r[0] for r in tables} == set(TABLES)


async def test_a_cannot_attach_to_b_connection(pool: Pool, seed: Seed) -> None:
    """A row of A's pointing at B's connection breaks the (connection_id, owner) key."""
    async with acting(pool, "A", seed) as conn:
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                "INSERT INTO websocket_subscriptions (owner, connection_id, channel, symbols)"
                " VALUES ($1, $2, 'trades', '{BTC-USDT}')",
                seed.users["A"],
                seed.rows["websocket_connections", "B"],
            )


async def test_users_cannot_write_engine_columns(pool: Pool, seed: Seed) -> None:
    """Mass assignment: a user cannot set what only the engine reports."""
    conn_a = seed.rows["websocket_connections", "A"]
    for sql in (
        "UPDATE websocket_connections SET current_state = 'live' WHERE id = $1",
        "UPDATE websocket_connections SET last_error = 'x' WHERE id = $1",
        "UPDATE websocket_subscriptions SET state = 'active' WHERE connection_id = $1",
    ):
        async with acting(pool, "A", seed) as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await conn.execute(sql, conn_a)


async def test_users_never_read_key_secrets(pool: Pool, seed: Seed) -> None:
    for column in ("secret_ciphertext", "nonce", "*"):
        async with acting(pool, "A", seed) as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await conn.fetch(f"SELECT {column} FROM api_key_versions")
