"""The catalog audit of RELIABILITY row 20: what would let a user around row-level security.

Run against a schema, it returns one finding per problem (an empty list is a pass):
tables without RLS enabled and forced, tables without a policy, tables owned by an application
role, always-true policies that apply to anon/authenticated, user policies that do not compare
with auth.uid(), SECURITY DEFINER functions that anon/authenticated can execute, views that do
not run as the invoker, rights that bypass RLS (TRUNCATE) or break the append-only audit log.
"""

from __future__ import annotations

from typing import Final

import asyncpg

APP_ROLES: Final = ("anon", "authenticated", "service_role", "wsm_engine", "wsm_api")
USER_ROLES: Final = frozenset({"anon", "authenticated", "public"})


async def audit(conn: asyncpg.Connection, schema: str = "public") -> list[str]:
    return [
        *await _tables(conn, schema),
        *await _policies(conn, schema),
        *await _definer_functions(conn, (schema, "auth")),
        *await _views(conn, schema),
        *await _rights(conn, schema),
    ]


async def _tables(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
               pg_get_userbyid(c.relowner) AS owner,
               (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
        """,
        schema,
    )
    found = []
    for r in rows:
        if not r["relrowsecurity"]:
            found.append(f"table {r['relname']}: row-level security not enabled")
        if not r["relforcerowsecurity"]:
            found.append(f"table {r['relname']}: row-level security not forced")
        if r["policies"] == 0:
            found.append(f"table {r['relname']}: no policy")
        if r["owner"] in APP_ROLES:
            found.append(f"table {r['relname']}: owned by application role {r['owner']}")
    return found


async def _policies(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT tablename, policyname, roles::text[] AS roles, cmd, qual, with_check"
        " FROM pg_policies WHERE schemaname = $1",
        schema,
    )
    found = []
    for r in rows:
        if not USER_ROLES & set(r["roles"]):
            continue
        name = f"policy {r['policyname']} on {r['tablename']}"
        if r["qual"] == "true" or r["with_check"] == "true":
            found.append(f"{name}: always true for {', '.join(r['roles'])}")
        if r["qual"] is not None and "auth.uid()" not in r["qual"]:
            found.append(f"{name}: USING does not compare with auth.uid()")
        if r["cmd"] in ("INSERT", "UPDATE", "ALL") and "auth.uid()" not in (r["with_check"] or ""):
            found.append(f"{name}: WITH CHECK does not compare with auth.uid()")
    return found


async def _definer_functions(conn: asyncpg.Connection, schemas: tuple[str, ...]) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT p.oid::regprocedure::text AS fn, r.rolname
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        CROSS JOIN (SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated')) r
        WHERE n.nspname = ANY($1) AND p.prosecdef
          AND has_function_privilege(r.rolname, p.oid, 'EXECUTE')
        """,
        list(schemas),
    )
    return [f"function {r['fn']}: SECURITY DEFINER, executable by {r['rolname']}" for r in rows]


async def _views(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind IN ('v', 'm')
          AND NOT coalesce('security_invoker=true' = ANY(c.reloptions), false)
        """,
        schema,
    )
    return [
        f"view {r['relname']}: runs as its owner (no security_invoker), bypassing RLS" for r in rows
    ]


async def _rights(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT c.relname, r.rolname, v.verb
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN (SELECT rolname FROM pg_roles WHERE rolname = ANY($2)) r
        CROSS JOIN unnest(ARRAY['TRUNCATE', 'UPDATE', 'DELETE', 'SELECT', 'INSERT']) v(verb)
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
          AND has_table_privilege(r.rolname, c.oid, v.verb)
        """,
        schema,
        list(APP_ROLES),
    )
    found = []
    for r in rows:
        what = f"{r['rolname']} has {r['verb']} on {r['relname']}"
        if r["verb"] == "TRUNCATE":
            found.append(f"{what} (TRUNCATE ignores row-level security)")
        elif r["rolname"] == "anon":
            found.append(f"{what} (anon has no business with WSM's tables)")
        elif r["relname"] == "audit_log" and r["verb"] in ("UPDATE", "DELETE"):
            found.append(f"{what} (the audit log is append-only)")
    return found
