"""Exchange API keys (RELIABILITY row 25): sealed at rest, rotated with an overlap, revoked
at once, every change audited, the audit log out of reach of the application roles."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from datetime import timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest

from engine.db import as_user, engine_tx
from engine.db.session import Pool
from engine.errors import ApiKeyError, ApiKeyNotFound, ApiKeyUnusable, ConfigError
from engine.keys import KeyStore, MasterKey, load_master_key

SECRET = "wsm-test-secret-7f3a9c1e5b"  # distinctive, to scan for


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.from_base64(MasterKey.generate())


@pytest.fixture
def keys(pool: Pool, master: MasterKey) -> KeyStore:
    return KeyStore(pool, master)


async def audit_rows(pool: Pool, owner: UUID) -> list[tuple[str, str, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT action, outcome, target, details::text AS details FROM audit_log"
            " WHERE target LIKE $1 ORDER BY id",
            f"api_key:{owner}/%",
        )
    return [(r["action"], r["outcome"], r["details"]) for r in rows]


async def test_round_trip(keys: KeyStore, owner: UUID) -> None:
    added = await keys.add(owner, "binance", "AKIA-1", SECRET)
    assert (added.version, added.state, added.usable, added.key_id) == (1, "active", True, "AKIA-1")
    creds = await keys.credentials(owner, "binance")
    assert (creds.version, creds.key_id, creds.secret) == (1, "AKIA-1", SECRET)
    assert SECRET not in repr(creds)
    assert await keys.versions(owner) == [added]


async def test_no_plaintext_secret_in_the_database(
    pool: Pool, keys: KeyStore, owner: UUID, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await keys.add(owner, "okx", "key-1", SECRET)
    await keys.rotate(owner, "okx", "key-2", SECRET + "-2", overlap=timedelta(hours=1))
    await keys.revoke(owner, "okx", 1)
    encodings = [
        SECRET.encode(),
        SECRET.encode().hex().encode(),
        base64.b64encode(SECRET.encode()),
    ]
    async with pool.acquire() as conn:
        await conn.execute("CHECKPOINT")  # the table files on disk hold what was written
        for table in ("api_key_versions", "audit_log"):
            path = await conn.fetchval("SELECT pg_relation_filepath($1::regclass)", table)
            on_disk = await conn.fetchval("SELECT pg_read_binary_file($1)", path)
            as_text = "".join(r[0] for r in await conn.fetch(f"SELECT t::text FROM {table} t"))
            assert b"key-1" in on_disk, table  # the scan does see what was written
            for enc in encodings:
                assert enc not in on_disk, table
                assert enc.decode() not in as_text, table
    assert all(SECRET not in r.getMessage() for r in caplog.records)


async def test_rotation_keeps_the_old_key_for_the_overlap_only(
    pool: Pool, keys: KeyStore, owner: UUID
) -> None:
    await keys.add(owner, "bybit", "old", "old-secret")
    new = await keys.rotate(owner, "bybit", "new", "new-secret", overlap=timedelta(seconds=0.5))
    assert (new.version, new.state) == (2, "active")
    old = (await keys.versions(owner, "bybit"))[1]
    assert (old.version, old.state, old.usable) == (1, "rotating", True)
    assert old.rotated_at is not None
    assert old.expires_at is not None
    assert (await keys.credentials(owner, "bybit", 1)).secret == "old-secret"
    assert [c.key_id for c in await keys.usable(owner, "bybit")] == ["new", "old"]

    deadline = time.monotonic() + 10
    while True:  # poll the database's clock, bounded
        try:
            await keys.credentials(owner, "bybit", 1)
        except ApiKeyUnusable as exc:
            refusal = str(exc)
            break
        assert time.monotonic() < deadline, "the old key never expired"
        await asyncio.sleep(0.05)
    assert "overlap ended" in refusal
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT now() >= $1", old.expires_at)
    assert (await keys.credentials(owner, "bybit")).secret == "new-secret"
    assert [c.key_id for c in await keys.usable(owner, "bybit")] == ["new"]


async def test_revoke_is_immediate(keys: KeyStore, owner: UUID) -> None:
    await keys.add(owner, "kraken", "k1", "s1")
    await keys.rotate(owner, "kraken", "k2", "s2", overlap=timedelta(hours=1))
    revoked = await keys.revoke(owner, "kraken", 1)
    assert (revoked.state, revoked.usable) == ("revoked", False)
    with pytest.raises(ApiKeyUnusable, match="revoked"):
        await keys.credentials(owner, "kraken", 1)
    await keys.revoke(owner, "kraken", 2)
    with pytest.raises(ApiKeyNotFound):
        await keys.credentials(owner, "kraken")
    assert await keys.usable(owner, "kraken") == []


async def test_changes_and_refusals_are_audited(pool: Pool, keys: KeyStore, owner: UUID) -> None:
    actor = uuid4()
    await keys.add(owner, "binance", "k1", SECRET, actor=actor, source_ip="203.0.113.7")
    await keys.rotate(owner, "binance", "k2", SECRET, overlap=timedelta(minutes=5))
    await keys.revoke(owner, "binance", 1, via="cli:ops")
    with pytest.raises(ApiKeyNotFound):
        await keys.revoke(owner, "binance", 9)
    with pytest.raises(ApiKeyError, match="already has an active"):
        await keys.add(owner, "binance", "k3", SECRET)
    rows = await audit_rows(pool, owner)
    assert [(a, o) for a, o, _ in rows] == [
        ("keys.add", "ok"),
        ("keys.rotate", "ok"),
        ("keys.revoke", "ok"),
        ("keys.revoke", "refused"),
        ("keys.add", "refused"),
    ]
    assert all(SECRET not in d for _, _, d in rows)
    assert '"via": "cli:ops"' in rows[2][2]
    async with pool.acquire() as conn:
        first = await conn.fetchrow(
            "SELECT actor, host(source_ip) AS ip FROM audit_log WHERE target = $1 ORDER BY id",
            f"api_key:{owner}/binance",
        )
    assert first is not None
    assert (first["actor"], first["ip"]) == (actor, "203.0.113.7")


@pytest.mark.parametrize("role", ["engine", "service_role", "authenticated"])
async def test_app_roles_cannot_change_or_delete_audit_rows(
    pool: Pool, keys: KeyStore, owner: UUID, role: str
) -> None:
    await keys.add(owner, "okx", "k", SECRET)
    for sql in ("UPDATE audit_log SET outcome = 'forged'", "DELETE FROM audit_log"):
        tx = engine_tx(pool) if role == "engine" else as_user(pool, owner, role=role)
        async with tx as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await conn.execute(sql)
    assert [o for _, o, _ in await audit_rows(pool, owner)] == ["ok"]


async def test_another_master_key_does_not_decrypt(pool: Pool, keys: KeyStore, owner: UUID) -> None:
    await keys.add(owner, "okx", "k", SECRET)
    stranger = KeyStore(pool, MasterKey.from_base64(MasterKey.generate()))
    with pytest.raises(ApiKeyUnusable, match="does not decrypt") as info:
        await stranger.credentials(owner, "okx")
    assert SECRET not in str(info.value)


async def test_a_ciphertext_moved_to_another_row_does_not_decrypt(
    pool: Pool, keys: KeyStore, owner: UUID
) -> None:
    victim, thief = owner, uuid4()
    await keys.add(victim, "okx", "victim-key", SECRET)
    await keys.add(thief, "okx", "thief-key", "thief-secret")
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE api_key_versions t SET secret_ciphertext = v.secret_ciphertext,"
            " nonce = v.nonce FROM api_key_versions v"
            " WHERE v.owner = $1 AND t.owner = $2 AND v.exchange = 'okx' AND t.exchange = 'okx'",
            victim,
            thief,
        )
    with pytest.raises(ApiKeyUnusable, match="does not decrypt"):
        await keys.credentials(thief, "okx")


async def test_listing_needs_no_master_key_and_shows_no_secret(
    pool: Pool, keys: KeyStore, owner: UUID
) -> None:
    await keys.add(owner, "okx", "k", SECRET)
    listed = await KeyStore(pool, None).versions(owner)
    assert SECRET not in repr(listed)
    with pytest.raises(ConfigError, match="WSM_MASTER_KEY"):
        await KeyStore(pool, None).credentials(owner, "okx")


def test_master_key_is_validated_and_never_shown() -> None:
    text = MasterKey.generate()
    key = load_master_key(None, {"WSM_MASTER_KEY": text})
    assert text not in repr(key)
    assert repr(key) == "MasterKey(<hidden>)"
    short = base64.b64encode(b"x" * 16).decode()
    for bad, reason in [("not base64!", "not valid base64"), (short, "32 bytes")]:
        with pytest.raises(ConfigError, match=reason) as info:
            load_master_key(None, {"WSM_MASTER_KEY": bad})
        assert info.value.key == "WSM_MASTER_KEY"
        assert bad not in str(info.value)
    with pytest.raises(ConfigError, match="not set"):
        load_master_key(None, {})
