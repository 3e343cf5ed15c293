"""Which database WSM uses, and the embedded server it starts when none is configured."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from engine.db import EmbeddedPostgres, default_data_dir, migrate, resolve_database_url


def test_default_data_dir_is_the_users_not_the_repos(tmp_path: Path) -> None:
    xdg = str(tmp_path / "data")
    assert default_data_dir({"XDG_DATA_HOME": xdg}) == Path(xdg) / "wsm" / "pgdata"
    home = str(tmp_path / "home")
    expected = Path(home) / ".local" / "share" / "wsm" / "pgdata"
    assert default_data_dir({"HOME": home}) == expected
    assert default_data_dir({"HOME": home, "XDG_DATA_HOME": "relative/ignored"}) == expected


def test_a_configured_url_wins_then_the_environment(tmp_path: Path) -> None:
    unused = EmbeddedPostgres(tmp_path / "pgdata")
    env = {"WSM_DATABASE_URL": "postgresql://env@db/wsm"}
    assert resolve_database_url("postgresql://cfg@db/wsm", environ=env, embedded=unused) == (
        "postgresql://cfg@db/wsm"
    )
    assert resolve_database_url(None, environ=env, embedded=unused) == "postgresql://env@db/wsm"
    assert unused.url is None
    assert not (tmp_path / "pgdata").exists()


@pytest.mark.slow
async def test_without_a_url_an_embedded_server_starts_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    server = EmbeddedPostgres(tmp_path / "pgdata")
    try:
        url = resolve_database_url(None, environ={}, embedded=server)
        assert url == server.url
        assert await migrate(url)
        conn = await asyncpg.connect(url)
        await conn.execute(
            "INSERT INTO websocket_connections (owner, exchange, name)"
            " VALUES (gen_random_uuid(), 'okx', 'kept')"
        )
        await conn.close()
        server.stop()
        with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
            await asyncpg.connect(url, timeout=5)

        url = server.start()  # a restart on the same directory
        assert await migrate(url) == []
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT name FROM websocket_connections") == "kept"
        await conn.close()
    finally:
        server.stop()
