"""The migration runner against a real server: idempotent, ordered, strict about history."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from engine.db.migrate import SQL_DIR, discover, migrate
from engine.errors import MigrationError

ALL = ["001_auth.sql", "002_tables.sql", "003_rls.sql", "004_api.sql"]


@pytest.fixture
def sql_copy(tmp_path: Path) -> Path:
    """A copy of sql/ that a test may change."""
    return Path(shutil.copytree(SQL_DIR, tmp_path / "sql"))


async def recorded(url: str) -> list[tuple[int, str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version, name, checksum FROM wsm_schema_migrations")
    finally:
        await conn.close()
    return sorted((r["version"], r["name"], r["checksum"]) for r in rows)


async def test_applies_all_then_nothing(fresh_database: str) -> None:
    assert await migrate(fresh_database) == ALL
    assert await migrate(fresh_database) == []
    expected = [(m.version, m.name, m.checksum) for m in discover()]
    assert await recorded(fresh_database) == expected


async def test_concurrent_runners_apply_each_file_once(fresh_database: str) -> None:
    first, second = await asyncio.gather(migrate(fresh_database), migrate(fresh_database))
    assert sorted(first + second) == ALL
    assert len(await recorded(fresh_database)) == len(ALL)


async def test_changed_applied_file_is_refused_by_name(fresh_database: str, sql_copy: Path) -> None:
    await migrate(fresh_database, directory=sql_copy)
    changed = sql_copy / "002_tables.sql"
    changed.write_text(changed.read_text() + "\n-- an innocent-looking edit\n")
    (sql_copy / "005_next.sql").write_text("CREATE TABLE not_applied (id int);")
    with pytest.raises(MigrationError) as info:
        await migrate(fresh_database, directory=sql_copy)
    assert info.value.file == "002_tables.sql"
    assert "002_tables.sql" in str(info.value)
    assert "changed" in str(info.value)
    assert len(await recorded(fresh_database)) == len(ALL)  # and 005 was not applied


async def test_missing_applied_file_is_refused(fresh_database: str, sql_copy: Path) -> None:
    await migrate(fresh_database, directory=sql_copy)
    (sql_copy / "003_rls.sql").unlink()
    with pytest.raises(MigrationError, match=r"003_rls\.sql.*missing"):
        await migrate(fresh_database, directory=sql_copy)


async def test_new_file_is_applied_alone(fresh_database: str, sql_copy: Path) -> None:
    await migrate(fresh_database, directory=sql_copy)
    (sql_copy / "005_next.sql").write_text("CREATE TABLE next_thing (id int);")
    assert await migrate(fresh_database, directory=sql_copy) == ["005_next.sql"]


async def test_failing_file_changes_nothing(fresh_database: str, sql_copy: Path) -> None:
    (sql_copy / "005_bad.sql").write_text("CREATE TABLE half_done (id int);\nSELECT 1/0;")
    with pytest.raises(MigrationError, match=r"005_bad\.sql.*division by zero"):
        await migrate(fresh_database, directory=sql_copy)
    assert [r[1] for r in await recorded(fresh_database)] == ALL
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
    finally:
        await conn.close()


def test_duplicate_numbers_are_refused(sql_copy: Path) -> None:
    (sql_copy / "002_other.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="same number"):
        discover(sql_copy)


def test_other_files_are_ignored(sql_copy: Path) -> None:
    (sql_copy / "notes.txt").write_text("not a migration")
    assert [m.name for m in discover(sql_copy)] == ALL
