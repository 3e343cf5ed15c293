"""Fixtures shared by every test: unique engine instances that must leave nothing behind."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from engine import shm
from engine.db import EmbeddedPostgres, migrate
from tests.db.helpers import create_database, drop_database, run_sync

settings.register_profile(
    "wsm", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("wsm")


def new_instance() -> str:
    return f"t{os.getpid()}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def instance() -> Iterator[str]:
    """A fresh engine instance name; the test fails if it leaves shared memory behind."""
    name = new_instance()
    yield name
    leftovers = shm.instance_segments(name)
    for seg in leftovers:
        shm.unlink(seg)
    assert not leftovers, f"test left shared-memory segments behind: {leftovers}"


@pytest.fixture(params=["c", "python"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each ring test runs on the compiled helper and on the pure-Python fallback."""
    if request.param == "c":
        pytest.importorskip("engine._ring", reason="the C helper was not compiled")
    return str(request.param)


# -- a real Postgres: a fresh database per test run ------------------------------------------
# With `WSM_TEST_DATABASE_URL` (CI: the machine's Postgres), a new database `wsm_test_<random>`
# is created on that server, migrated, and dropped at the end. Without it, an embedded server
# (pgserver) is started in a temporary directory and the same is done there.


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
