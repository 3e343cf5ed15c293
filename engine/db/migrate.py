"""`wsm db migrate`: apply the numbered SQL files in `sql/`, each once, in order.

Each applied file is recorded with its SHA-256 in `wsm_schema_migrations`. A run applies what
is missing and refuses to touch a database whose applied files changed or disappeared: a
migration is history, and editing it silently would leave databases that differ.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Final

import asyncpg
import msgspec

from engine.errors import DatabaseUnavailable, MigrationError, is_retryable

SQL_DIR: Final = Path(__file__).resolve().parents[2] / "sql"
_NAME: Final = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")
# Serializes concurrent runners (several engines starting at once): an arbitrary constant.
_LOCK_KEY: Final = 0x77736D5F6D6967  # "wsm_mig"

# The bookkeeping table follows the schema's own rules (RLS enabled and forced, a policy) so
# that a catalog audit finds nothing to flag. Only the role that runs migrations uses it.
_BOOTSTRAP: Final = """
CREATE TABLE IF NOT EXISTS wsm_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE wsm_schema_migrations ENABLE ROW LEVEL SECURITY;
ALTER TABLE wsm_schema_migrations FORCE ROW LEVEL SECURITY;
DO $$
DECLARE
    r text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_policies
                   WHERE schemaname = current_schema()
                     AND tablename = 'wsm_schema_migrations'
                     AND policyname = 'wsm_schema_migrations_migrator') THEN
        CREATE POLICY wsm_schema_migrations_migrator ON wsm_schema_migrations
            FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true);
    END IF;
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role', 'wsm_engine'] LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON wsm_schema_migrations FROM %I', r);
        END IF;
    END LOOP;
END
$$;
"""


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    checksum: str
    sql: str


def discover(directory: Path = SQL_DIR) -> list[Migration]:
    """The migration files of `directory`, in order. Other files (README.md) are ignored."""
    if not directory.is_dir():
        raise MigrationError(str(directory), "no such directory")
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if match is None:
            continue
        data = path.read_bytes()
        version = int(match.group(1))
        if version in found:
            raise MigrationError(path.name, f"same number as {found[version].name}")
        found[version] = Migration(
            version=version,
            name=path.name,
            checksum=hashlib.sha256(data).hexdigest(),
            sql=data.decode("utf-8"),
        )
    return [found[v] for v in sorted(found)]


async def migrate(url: str, *, directory: Path = SQL_DIR) -> list[str]:
    """Apply the pending migrations of `directory` to the database at `url`.

    Returns the names of the files applied now (empty when the database was up to date).
    Raises MigrationError when an applied file changed or is gone, naming the file.
    """
    migrations = discover(directory)
    try:
        conn = await asyncpg.connect(url)
    except Exception as exc:
        if is_retryable(exc):
            raise DatabaseUnavailable(f"cannot reach the database to migrate it: {exc}") from exc
        raise
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await conn.execute(_BOOTSTRAP)
        _verify(migrations, await _applied(conn))
        return [m.name for m in migrations if await _apply(conn, m)]
    finally:
        await conn.close()


async def _applied(conn: asyncpg.Connection) -> dict[int, tuple[str, str]]:
    rows = await conn.fetch("SELECT version, name, checksum FROM wsm_schema_migrations")
    return {r["version"]: (r["name"], r["checksum"]) for r in rows}


def _verify(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> None:
    by_version = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        m = by_version.get(version)
        if m is None:
            raise MigrationError(name, "was applied to this database but is missing from sql/")
        if m.name != name:
            raise MigrationError(m.name, f"was applied as {name}; applied files must not change")
        if m.checksum != checksum:
            raise MigrationError(
                name, "changed since it was applied (checksum differs); add a new migration instead"
            )


async def _apply(conn: asyncpg.Connection, m: Migration) -> bool:
    """Apply one file in its own transaction unless a concurrent runner already did."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        done = await conn.fetchval(
            "SELECT checksum FROM wsm_schema_migrations WHERE version = $1", m.version
        )
        if done is not None:
            _verify([m], {m.version: (m.name, done)})
            return False
        try:
            await conn.execute(m.sql)
        except asyncpg.PostgresError as exc:
            raise MigrationError(m.name, f"failed: {exc}") from exc
        await conn.execute(
            "INSERT INTO wsm_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            m.version,
            m.name,
            m.checksum,
        )
    return True
