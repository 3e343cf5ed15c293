"""The bodies of `wsm db ...` and `wsm keys ...` (the parsers are in engine/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar
from uuid import UUID

import msgspec

from engine.db.embedded import EmbeddedPostgres, resolve_database_url
from engine.db.migrate import SQL_DIR, migrate
from engine.db.session import DatabaseConfig, create_pool
from engine.errors import ConfigError
from engine.keys import KeyStore, KeyVersion, load_master_key

if TYPE_CHECKING:
    from engine.db.session import Pool

T = TypeVar("T")


def db_migrate(args: argparse.Namespace) -> int:
    directory = Path(args.sql_dir) if args.sql_dir else SQL_DIR

    async def run(url: str) -> list[str]:
        return await migrate(url, directory=directory)

    applied = _with_database(args.database_url, run, migrate_embedded=False)
    for name in applied:
        print(f"applied {name}")
    print("database is up to date" if not applied else f"{len(applied)} migration(s) applied")
    return 0


def keys(args: argparse.Namespace) -> int:
    """`wsm keys add|rotate|revoke|list`."""
    action: str = args.keys_command
    via = f"cli:{getpass.getuser()}"
    if action == "list":
        owner = _uuid_or_none(args.owner)
        found = _with_pool(
            args.database_url, lambda pool: KeyStore(pool, None).versions(owner, args.exchange)
        )
        _print_versions(found, as_json=args.json, out=sys.stdout)
        return 0
    owner = _uuid(args.owner)
    if action == "revoke":  # changes a state only: no master key needed
        key = _with_pool(
            args.database_url,
            lambda pool: KeyStore(pool, None).revoke(owner, args.exchange, args.version, via=via),
        )
        print(f"revoked {key.exchange} key version {key.version} of {key.owner}")
        return 0
    master = load_master_key(None)  # before asking for the secret
    secret = read_secret(sys.stdin)
    if action == "add":
        key = _with_pool(
            args.database_url,
            lambda pool: KeyStore(pool, master).add(
                owner, args.exchange, args.key_id, secret, via=via
            ),
        )
    else:
        overlap = timedelta(seconds=args.overlap) if args.overlap is not None else None
        key = _with_pool(
            args.database_url,
            lambda pool: KeyStore(pool, master).rotate(
                owner, args.exchange, args.key_id, secret, overlap=overlap, via=via
            ),
        )
    print(f"{action}: {key.exchange} key version {key.version} of {key.owner} is active")
    return 0


def read_secret(stream: TextIO) -> str:
    """The API secret: prompted without echo on a terminal, else the first line of stdin.

    Never from the command line, where other users could read it in the process list.
    """
    if stream.isatty():
        secret = getpass.getpass("API secret: ")
    else:
        secret = stream.readline().rstrip("\r\n")
    if not secret:
        raise ConfigError("secret", "empty (give it on standard input)")
    return secret


def _print_versions(found: list[KeyVersion], *, as_json: bool, out: TextIO) -> None:
    if as_json:
        for k in found:
            out.write(msgspec.json.encode(k).decode() + "\n")
        return
    out.write(f"{'owner':36}  {'exchange':10} {'ver':>3}  {'key id':20} {'state':9} usable\n")
    for k in found:
        expires = f"  expires {k.expires_at:%Y-%m-%d %H:%M:%S%z}" if k.expires_at else ""
        out.write(
            f"{k.owner!s:36}  {k.exchange:10} {k.version:>3}  {k.key_id:20} {k.state:9} "
            f"{'yes' if k.usable else 'no'}{expires}\n"
        )


def _uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ConfigError("--owner", f"{text!r} is not a UUID") from None


def _uuid_or_none(text: str | None) -> UUID | None:
    return None if text is None else _uuid(text)


def _with_database(
    configured_url: str | None, run: Callable[[str], Awaitable[T]], *, migrate_embedded: bool
) -> T:
    """Run `run(url)` on the configured database, or on the embedded one (then stop it).

    WSM owns the embedded database, so it brings that one up to date first when asked; a
    configured one is migrated only by `wsm db migrate`.
    """
    embedded = EmbeddedPostgres()

    async def main(url: str) -> T:
        if embedded.url is not None and migrate_embedded:
            await migrate(url)
        return await run(url)

    try:
        return asyncio.run(main(resolve_database_url(configured_url, embedded=embedded)))
    finally:
        embedded.stop()


def _with_pool(configured_url: str | None, run: Callable[[Pool], Awaitable[T]]) -> T:
    async def with_pool(url: str) -> T:
        pool = await create_pool(url, DatabaseConfig(min_connections=1, max_connections=2))
        try:
            return await run(pool)
        finally:
            await pool.close()

    return _with_database(configured_url, with_pool, migrate_embedded=True)
