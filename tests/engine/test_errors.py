"""One place classifies failures: retry (Postgres away), skip the row (bad data), or stop."""

from __future__ import annotations

import asyncpg
import pytest

from engine.errors import (
    ApiKeyUnusable,
    ConfigError,
    DatabaseUnavailable,
    MigrationError,
    is_data_error,
    is_retryable,
)

CASES = [
    # (exception, retryable, data error)
    (ConnectionRefusedError(111, "refused"), True, False),
    (TimeoutError(), True, False),
    (asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-operation"), True, False),
    (asyncpg.CannotConnectNowError("starting up"), True, False),
    (asyncpg.AdminShutdownError("terminating"), True, False),
    (asyncpg.TooManyConnectionsError("too many"), True, False),
    (asyncpg.SerializationError("could not serialize"), True, False),
    (asyncpg.DeadlockDetectedError("deadlock"), True, False),
    (DatabaseUnavailable("down"), True, False),
    (asyncpg.CheckViolationError("check"), False, True),
    (asyncpg.ForeignKeyViolationError("fk"), False, True),
    (asyncpg.NumericValueOutOfRangeError("range"), False, True),
    (asyncpg.exceptions._base.DataError("cannot encode argument"), False, True),
    (asyncpg.InsufficientPrivilegeError("permission denied"), False, False),
    (asyncpg.UndefinedTableError("no table"), False, False),
    (MigrationError("002_tables.sql", "changed"), False, False),
    (ApiKeyUnusable("u", "okx", 1, "revoked"), False, False),
    (ConfigError("WSM_MASTER_KEY", "not set"), False, False),
]


@pytest.mark.parametrize(("exc", "retryable", "data"), CASES, ids=lambda v: type(v).__name__)
def test_classification(exc: BaseException, retryable: bool, data: bool) -> None:
    assert is_retryable(exc) is retryable
    assert is_data_error(exc) is data
