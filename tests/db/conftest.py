"""Database test fixtures (the server and per-run database fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest

from engine.db import DatabaseConfig, create_pool
from engine.db.session import Pool


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
