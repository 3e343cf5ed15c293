"""A real Postgres for the database tests: a fresh database per test run.

With `WSM_TEST_DATABASE_URL` (CI: the machine's Postgres), a new database `wsm_test_<random>`
is created on that server, migrated, and dropped at the end. Without it, an embedded server
(pgserver) is started in a temporary directory and the same is done there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from engine.db import DatabaseConfig, EmbeddedPostgres, create_pool, migrate
from engine.db.session import Pool
from tests.db.helpers import create_database, drop_database, run_sync


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A URL with rights to create databases (and roles) on a real Postgres server."""
    url = os.environ.get("WSM_TEST_DATABASE_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="wsm-test-pg-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pgdata")
        try:
            yield server.start()
        finally:
            server.stop()


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """The migrated database of this test run."""
    url = run_sync(create_database(pg_admin_url))
    try:
        run_sync(migrate(url))
        yield url
    finally:
        run_sync(drop_database(pg_admin_url, url))


@pytest.fixture
async def fresh_database(pg_admin_url: str) -> AsyncIterator[str]:
    """An empty, unmigrated database for one test."""
    url = await create_database(pg_admin_url)
    try:
        yield url
    finally:
        await drop_database(pg_admin_url, url)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    """A pool logged in as the server's admin user; rights come per transaction."""
    p = await create_pool(database_url, DatabaseConfig(min_connections=1, max_connections=4))
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def owner() -> UUID:
    """A fresh platform user id: tests share the database, never their rows."""
    return uuid4()
