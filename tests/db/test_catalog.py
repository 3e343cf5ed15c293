"""RELIABILITY row 20: the catalog audit finds nothing, and finds what is planted."""

from __future__ import annotations

import asyncpg
import pytest

from tests.db.catalog import audit


async def test_schema_passes_the_audit(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await audit(conn) == []
    finally:
        await conn.close()


PLANTED = [
    ("CREATE TABLE planted_open (id int)", "table planted_open: row-level security not enabled"),
    ("", "table planted_open: no policy"),
    (
        "CREATE TABLE planted_lax (id int); ALTER TABLE planted_lax ENABLE ROW LEVEL SECURITY;"
        " CREATE POLICY lax ON planted_lax FOR ALL TO authenticated USING (true) WITH CHECK (true)",
        "policy lax on planted_lax: always true for authenticated",
    ),
    ("", "table planted_lax: row-level security not forced"),
    (
        "CREATE POLICY lax_insert ON websocket_connections FOR INSERT TO authenticated"
        " WITH CHECK (owner IS NOT NULL)",
        "policy lax_insert on websocket_connections: WITH CHECK does not compare with auth.uid()",
    ),
    (
        "CREATE FUNCTION planted_definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'",
        "function planted_definer(): SECURITY DEFINER, executable by authenticated",
    ),
    (
        "CREATE VIEW planted_view AS SELECT * FROM websocket_connections",
        "view planted_view: runs as its owner",
    ),
    ("GRANT UPDATE ON audit_log TO wsm_engine", "wsm_engine has UPDATE on audit_log"),
    ("GRANT DELETE ON audit_log TO wsm_api", "wsm_api has DELETE on audit_log"),
    (
        "GRANT TRUNCATE ON ip_whitelist TO authenticated",
        "authenticated has TRUNCATE on ip_whitelist",
    ),
    ("GRANT SELECT ON api_key_versions TO anon", "anon has SELECT on api_key_versions"),
    (
        "ALTER TABLE websocket_connection_events OWNER TO wsm_engine",
        "table websocket_connection_events: owned by application role wsm_engine",
    ),
]


async def test_audit_flags_planted_bypasses(database_url: str) -> None:
    """Each kind of bypass, planted in a transaction that is rolled back, is reported."""
    conn = await asyncpg.connect(database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            for sql, _ in PLANTED:
                if sql:
                    await conn.execute(sql)
            findings = await audit(conn)
        finally:
            await tx.rollback()
        for _, expected in PLANTED:
            assert any(f.startswith(expected) for f in findings), (expected, findings)
        assert await audit(conn) == []
    finally:
        await conn.close()


@pytest.mark.parametrize("role", ["anon", "authenticated", "service_role", "wsm_engine", "wsm_api"])
async def test_application_roles_cannot_log_in_or_bypass(database_url: str, role: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT rolcanlogin, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", role
        )
    finally:
        await conn.close()
    assert row is not None
    assert tuple(row) == (False, False, False)
