"""`wsm db migrate` and `wsm keys ...`, run through the CLI's entry point."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from engine.cli import main
from engine.keys import MasterKey
from tests.db.helpers import create_database, drop_database, run_sync

SECRET = "cli-secret-0d9e8f7a"


@pytest.fixture
def empty_db(pg_admin_url: str) -> Iterator[str]:
    url = run_sync(create_database(pg_admin_url))
    yield url
    run_sync(drop_database(pg_admin_url, url))


def wsm(*argv: str, stdin: str = "", monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(list(argv))


def test_db_migrate(empty_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "migrate", "--database-url", empty_db]) == 0
    out = capsys.readouterr().out
    assert "applied 001_auth.sql" in out
    assert "4 migration(s) applied" in out
    assert main(["db", "migrate", "--database-url", empty_db]) == 0
    assert "database is up to date" in capsys.readouterr().out


def test_keys_lifecycle(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSM_MASTER_KEY", MasterKey.generate())
    owner = str(uuid4())
    common = ["--database-url", database_url, "--owner", owner, "--exchange", "binance"]
    assert (
        wsm("keys", "add", *common, "--key-id", "K1", stdin=SECRET + "\n", monkeypatch=monkeypatch)
        == 0
    )
    assert (
        wsm(
            "keys",
            "rotate",
            *common,
            "--key-id",
            "K2",
            "--overlap",
            "3600",
            stdin=SECRET + "-2\n",
            monkeypatch=monkeypatch,
        )
        == 0
    )
    assert wsm("keys", "revoke", *common, "--version", "2", monkeypatch=monkeypatch) == 0
    monkeypatch.delenv("WSM_MASTER_KEY")  # listing needs no master key
    assert (
        wsm(
            "keys",
            "list",
            "--database-url",
            database_url,
            "--owner",
            owner,
            "--json",
            monkeypatch=monkeypatch,
        )
        == 0
    )
    out, err = capsys.readouterr()
    listed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(k["version"], k["state"], k["usable"]) for k in listed] == [
        (2, "revoked", False),
        (1, "rotating", True),
    ]
    assert SECRET not in out + err
    assert "add: binance key version 1" in out
    assert "revoked binance key version 2" in out


def test_keys_add_without_a_master_key_fails_clearly(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WSM_MASTER_KEY", raising=False)
    argv = [
        "keys",
        "add",
        "--database-url",
        database_url,
        "--owner",
        str(uuid4()),
        "--exchange",
        "okx",
        "--key-id",
        "K",
    ]
    assert wsm(*argv, stdin=SECRET + "\n", monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert "WSM_MASTER_KEY" in err
    assert SECRET not in err


def test_keys_refuses_an_empty_secret_and_a_bad_owner(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSM_MASTER_KEY", MasterKey.generate())
    base = ["keys", "add", "--database-url", database_url, "--exchange", "okx", "--key-id", "K"]
    assert wsm(*base, "--owner", str(uuid4()), stdin="\n", monkeypatch=monkeypatch) == 2
    assert "secret" in capsys.readouterr().err
    assert wsm(*base, "--owner", "nobody", stdin="x\n", monkeypatch=monkeypatch) == 2
    assert "is not a UUID" in capsys.readouterr().err


@pytest.mark.slow
def test_without_a_url_the_embedded_server_is_used_and_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WSM_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["db", "migrate"]) == 0
    assert "4 migration(s) applied" in capsys.readouterr().out
    pgdata = tmp_path / "wsm" / "pgdata"
    assert (pgdata / "PG_VERSION").exists()
    assert not (pgdata / "postmaster.pid").exists()  # stopped again
    assert main(["keys", "list"]) == 0
    assert "owner" in capsys.readouterr().out
