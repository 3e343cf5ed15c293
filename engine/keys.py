"""Exchange API keys: encrypted at rest, versioned, rotated with an overlap, revocable.

The secret half of each key is sealed with AES-256-GCM under a master key that lives only in
WSM's configuration (`WSM_MASTER_KEY`, base64 of 32 bytes), never in the database, never in a
log line or an exception. The associated data binds each ciphertext to its row (owner,
exchange, version, key id), so a ciphertext copied into another row does not decrypt.

Versions: `add` creates version 1 (active). `rotate` adds the next version as active and puts
the previous active one in `rotating` until now + overlap; after that it no longer decrypts.
`revoke` makes a version unusable at once. Every change writes an audit row in the same
transaction; a refused change writes one too.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal
from uuid import UUID

import asyncpg
import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.db.session import engine_tx
from engine.errors import ApiKeyError, ApiKeyNotFound, ApiKeyUnusable, ConfigError

if TYPE_CHECKING:
    from engine.db.session import Connection, Pool

ENV_MASTER_KEY: Final = "WSM_MASTER_KEY"
DEFAULT_OVERLAP: Final = timedelta(hours=24)
KeyState = Literal["active", "rotating", "revoked"]

_USABLE: Final = "(state = 'active' OR (state = 'rotating' AND expires_at > now()))"
_METADATA: Final = (
    "id, owner, exchange, version, key_id, state, created_at, rotated_at, expires_at,"
    f" {_USABLE} AS usable"
)


class MasterKey:
    """The 256-bit key that seals API secrets. Its repr and str never show it."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError(ENV_MASTER_KEY, f"must be 32 bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_base64(cls, text: str, *, source: str = ENV_MASTER_KEY) -> MasterKey:
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(source, "is not valid base64") from None
        if len(key) != 32:
            raise ConfigError(source, f"must be base64 of 32 bytes, got {len(key)} bytes")
        return cls(key)

    @staticmethod
    def generate() -> str:
        """A fresh master key, base64, for `WSM_MASTER_KEY`."""
        return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        return nonce, self._aead.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        return self._aead.decrypt(nonce, ciphertext, aad)


def load_master_key(configured: str | None, environ: Mapping[str, str] | None = None) -> MasterKey:
    """The configured master key, else `WSM_MASTER_KEY`. Raises ConfigError naming the source."""
    env = os.environ if environ is None else environ
    if configured:
        return MasterKey.from_base64(configured, source="keys.master_key")
    text = env.get(ENV_MASTER_KEY)
    if not text:
        raise ConfigError(ENV_MASTER_KEY, "is not set (base64 of 32 random bytes)")
    return MasterKey.from_base64(text)


class KeyVersion(msgspec.Struct, kw_only=True, frozen=True):
    """A key version's metadata: everything but the secret."""

    id: UUID
    owner: UUID
    exchange: str
    version: int
    key_id: str
    state: KeyState
    created_at: datetime
    rotated_at: datetime | None
    expires_at: datetime | None
    usable: bool  # active, or rotating and not yet expired


@dataclass(frozen=True, slots=True)
class Credentials:
    """A decrypted key, for signing requests. Its repr never shows the secret."""

    owner: UUID
    exchange: str
    version: int
    key_id: str
    secret: str = field(repr=False)


class KeyStore:
    """Exchange API keys in `api_key_versions`, written as `wsm_engine`."""

    def __init__(
        self,
        pool: Pool,
        master_key: MasterKey | None,
        *,
        overlap: timedelta = DEFAULT_OVERLAP,
    ) -> None:
        """`master_key` may be None for a store that only lists metadata."""
        self._pool = pool
        self._master_key = master_key
        self._overlap = overlap

    @property
    def _master(self) -> MasterKey:
        if self._master_key is None:
            raise ConfigError(ENV_MASTER_KEY, "is needed to store or read secrets")
        return self._master_key

    async def add(
        self,
        owner: UUID,
        exchange: str,
        key_id: str,
        secret: str,
        *,
        actor: UUID | None = None,
        source_ip: str | None = None,
        via: str | None = None,
    ) -> KeyVersion:
        """Store the first key of `owner` on `exchange` (version 1 if none ever existed)."""
        target = _target(owner, exchange)
        async with _audited(self._pool, "keys.add", target, actor, source_ip, via) as conn:
            await _lock(conn, owner, exchange)
            if await _active(conn, owner, exchange) is not None:
                raise ApiKeyError(f"{owner} already has an active {exchange} key; rotate it")
            row = await self._insert(conn, owner, exchange, key_id, secret)
            await _audit(conn, "keys.add", target, actor, source_ip, "ok", _details(row, via))
        return row

    async def rotate(
        self,
        owner: UUID,
        exchange: str,
        key_id: str,
        secret: str,
        *,
        overlap: timedelta | None = None,
        actor: UUID | None = None,
        source_ip: str | None = None,
        via: str | None = None,
    ) -> KeyVersion:
        """Make a new active version; the old one keeps working until now + overlap."""
        target = _target(owner, exchange)
        window = self._overlap if overlap is None else overlap
        async with _audited(self._pool, "keys.rotate", target, actor, source_ip, via) as conn:
            await _lock(conn, owner, exchange)
            old = await _active(conn, owner, exchange)
            if old is None:
                raise ApiKeyNotFound(str(owner), exchange)
            await conn.execute(
                "UPDATE api_key_versions SET state = 'rotating', rotated_at = now(),"
                " expires_at = now() + $2::interval WHERE id = $1",
                old,
                window,
            )
            row = await self._insert(conn, owner, exchange, key_id, secret)
            details = _details(row, via) | {"overlap_seconds": window.total_seconds()}
            await _audit(conn, "keys.rotate", target, actor, source_ip, "ok", details)
        return row

    async def revoke(
        self,
        owner: UUID,
        exchange: str,
        version: int,
        *,
        actor: UUID | None = None,
        source_ip: str | None = None,
        via: str | None = None,
    ) -> KeyVersion:
        """Make a version unusable now."""
        target = f"{_target(owner, exchange)}/v{version}"
        async with _audited(self._pool, "keys.revoke", target, actor, source_ip, via) as conn:
            row = await conn.fetchrow(
                "UPDATE api_key_versions SET state = 'revoked',"
                " expires_at = CASE WHEN state = 'revoked' THEN expires_at ELSE now() END"
                " WHERE owner = $1 AND exchange = $2 AND version = $3"
                f" RETURNING {_METADATA}",
                owner,
                exchange,
                version,
            )
            if row is None:
                raise ApiKeyNotFound(str(owner), exchange, version)
            key = msgspec.convert(dict(row.items()), KeyVersion)
            await _audit(conn, "keys.revoke", target, actor, source_ip, "ok", _details(key, via))
        return key

    async def versions(
        self, owner: UUID | None = None, exchange: str | None = None
    ) -> list[KeyVersion]:
        """Metadata of every version (of one owner, one exchange), newest first per exchange."""
        async with engine_tx(self._pool, readonly=True) as conn:
            rows = await conn.fetch(
                f"SELECT {_METADATA} FROM api_key_versions"
                " WHERE ($1::uuid IS NULL OR owner = $1) AND ($2::text IS NULL OR exchange = $2)"
                " ORDER BY owner, exchange, version DESC",
                owner,
                exchange,
            )
        return [msgspec.convert(dict(r.items()), KeyVersion) for r in rows]

    async def credentials(
        self, owner: UUID, exchange: str, version: int | None = None
    ) -> Credentials:
        """Decrypt a usable version (default: the active one). Raises ApiKeyNotFound or
        ApiKeyUnusable (revoked, expired, or sealed under another master key)."""
        async with engine_tx(self._pool, readonly=True) as conn:
            row = await conn.fetchrow(
                f"SELECT version, key_id, secret_ciphertext, nonce, state, {_USABLE} AS usable"
                " FROM api_key_versions WHERE owner = $1 AND exchange = $2"
                " AND ($3::int IS NULL AND state = 'active' OR version = $3)",
                owner,
                exchange,
                version,
            )
        if row is None:
            raise ApiKeyNotFound(str(owner), exchange, version)
        if not row["usable"]:
            reason = "revoked" if row["state"] == "revoked" else "its rotation overlap ended"
            raise ApiKeyUnusable(str(owner), exchange, row["version"], reason)
        aad = _aad(owner, exchange, row["version"], row["key_id"])
        try:
            secret = self._master.open(row["nonce"], row["secret_ciphertext"], aad)
        except InvalidTag:
            raise ApiKeyUnusable(
                str(owner), exchange, row["version"], "does not decrypt with this master key"
            ) from None
        return Credentials(owner, exchange, row["version"], row["key_id"], secret.decode())

    async def usable(self, owner: UUID, exchange: str) -> list[Credentials]:
        """Every version that still works (active first, then rotating ones in their overlap)."""
        keys = [k for k in await self.versions(owner, exchange) if k.usable]
        keys.sort(key=lambda k: (k.state != "active", -k.version))
        found = []
        for k in keys:
            try:
                found.append(await self.credentials(owner, exchange, k.version))
            except ApiKeyUnusable:
                continue  # revoked or expired since the listing
        return found

    async def _insert(
        self, conn: Connection, owner: UUID, exchange: str, key_id: str, secret: str
    ) -> KeyVersion:
        if not key_id or not secret:
            raise ApiKeyError("key id and secret must not be empty")
        version = await conn.fetchval(
            "SELECT coalesce(max(version), 0) + 1 FROM api_key_versions"
            " WHERE owner = $1 AND exchange = $2",
            owner,
            exchange,
        )
        nonce, sealed = self._master.seal(secret.encode(), _aad(owner, exchange, version, key_id))
        row = await conn.fetchrow(
            "INSERT INTO api_key_versions"
            " (owner, exchange, version, key_id, secret_ciphertext, nonce, state)"
            f" VALUES ($1, $2, $3, $4, $5, $6, 'active') RETURNING {_METADATA}",
            owner,
            exchange,
            version,
            key_id,
            sealed,
            nonce,
        )
        assert row is not None
        return msgspec.convert(dict(row.items()), KeyVersion)


def _target(owner: UUID, exchange: str) -> str:
    return f"api_key:{owner}/{exchange}"


def _aad(owner: UUID, exchange: str, version: int, key_id: str) -> bytes:
    return f"wsm-api-key\x00{owner}\x00{exchange}\x00{version}\x00{key_id}".encode()


def _details(key: KeyVersion, via: str | None) -> dict[str, object]:
    details: dict[str, object] = {"exchange": key.exchange, "version": key.version}
    details["key_id"] = key.key_id
    if via is not None:
        details["via"] = via
    return details


async def _lock(conn: Connection, owner: UUID, exchange: str) -> None:
    """Serialize changes to one owner's keys on one exchange (next version, one active)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"wsm-keys/{owner}/{exchange}"
    )


async def _active(conn: Connection, owner: UUID, exchange: str) -> UUID | None:
    active: UUID | None = await conn.fetchval(
        "SELECT id FROM api_key_versions WHERE owner = $1 AND exchange = $2 AND state = 'active'",
        owner,
        exchange,
    )
    return active


async def _audit(
    conn: Connection,
    action: str,
    target: str,
    actor: UUID | None,
    source_ip: str | None,
    outcome: str,
    details: Mapping[str, object],
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, source_ip, outcome, details)"
        " VALUES ($1, $2, $3, $4::inet, $5, $6::jsonb)",
        actor,
        action,
        target,
        source_ip,
        outcome,
        msgspec.json.encode(details).decode(),
    )


@asynccontextmanager
async def _audited(
    pool: Pool,
    action: str,
    target: str,
    actor: UUID | None,
    source_ip: str | None,
    via: str | None,
) -> AsyncIterator[Connection]:
    """An engine transaction for a key change; when the change is refused, audit the refusal."""
    try:
        async with engine_tx(pool) as conn:
            yield conn
    except (ApiKeyError, asyncpg.IntegrityConstraintViolationError) as exc:
        async with engine_tx(pool) as conn:
            reason = {"reason": str(exc)} | ({} if via is None else {"via": via})
            await _audit(conn, action, target, actor, source_ip, "refused", reason)
        raise
