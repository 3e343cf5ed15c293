"""WSM's error tree. Every error WSM raises derives from `WSMError`.

Retryable errors are the ones a connection recovers from by reconnecting (`is_retryable`
decides in one place); the rest stop what raised them.
"""

from __future__ import annotations


class WSMError(Exception):
    """Base of every WSM error."""


class RingError(WSMError):
    """A shared-memory ring or registry cannot be created, attached or read."""


class RingNotFound(RingError):
    def __init__(self, exchange: str, name: str) -> None:
        super().__init__(f"no ring for exchange {exchange!r} (segment {name!r} does not exist)")
        self.exchange = exchange
        self.name = name


class RingLayoutError(RingError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"ring {name!r} has an incompatible layout: {reason}")
        self.name = name
        self.reason = reason


class ConfigError(WSMError):
    """Bad configuration: names the key and the reason. Fatal at start."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config {key}: {reason}")
        self.key = key
        self.reason = reason


class RetryableError(WSMError):
    """A transient failure (network, timeout, venue overload): reconnect and try again."""


class VenueRejection(WSMError):
    """The venue refused a request (subscribe, snapshot...) and said why."""

    def __init__(self, venue: str, code: int | str | None, message: str) -> None:
        super().__init__(f"{venue} rejected the request (code {code}): {message}")
        self.venue = venue
        self.code = code
        self.message = message


class DecodeError(WSMError):
    """A frame could not be decoded: venue, channel and the decoder's path-bearing message."""

    def __init__(self, venue: str, channel: str, detail: str) -> None:
        super().__init__(f"{venue}/{channel}: {detail}")
        self.venue = venue
        self.channel = channel
        self.detail = detail


class BookIntegrityError(WSMError):
    """A book update broke the venue's sequence or checksum rules: the book must be resynced."""


class UnknownSymbol(WSMError):
    def __init__(self, exchange: str, symbol: str) -> None:
        super().__init__(f"unknown symbol {symbol!r} on {exchange}")
        self.exchange = exchange
        self.symbol = symbol


class UnknownChannel(WSMError):
    def __init__(self, exchange: str, channel: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown channel {channel!r} on {exchange} (known: {', '.join(known)})")
        self.exchange = exchange
        self.channel = channel


class DatabaseError(WSMError):
    """Postgres could not do what WSM asked (see `is_retryable` for which ones pass)."""


class DatabaseUnavailable(DatabaseError, RetryableError):
    """Postgres cannot be reached or did not answer in time; try again later."""


class NotFound(WSMError):
    """No such connection, subscription or row (for the caller)."""

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"no {what} {key!r}" if isinstance(key, str) else f"no {what} {key}")
        self.what = what
        self.key = key


class AlreadyExists(WSMError):
    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key} already exists")
        self.what = what
        self.key = key


class MigrationError(DatabaseError):
    """A migration cannot be applied, or an applied one no longer matches its file."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"migration {file}: {reason}")
        self.file = file
        self.reason = reason


class ApiKeyError(WSMError):
    """An exchange API key operation was refused. Never carries key material."""


class ApiKeyNotFound(ApiKeyError):
    def __init__(self, owner: str, exchange: str, version: int | None = None) -> None:
        which = "an active key" if version is None else f"key version {version}"
        super().__init__(f"{owner} has no {which} for {exchange}")
        self.owner = owner
        self.exchange = exchange
        self.version = version


class ApiKeyUnusable(ApiKeyError):
    """The key version exists but is revoked, expired or cannot be decrypted."""

    def __init__(self, owner: str, exchange: str, version: int, reason: str) -> None:
        super().__init__(f"{owner}'s {exchange} key version {version} is unusable: {reason}")
        self.owner = owner
        self.exchange = exchange
        self.version = version
        self.reason = reason


# Postgres SQLSTATE classes that pass with time: connection exceptions, insufficient
# resources, operator intervention (shutdown, "cannot connect now"), system errors, and the
# two transaction-rollback codes that a retry resolves (serialization failure, deadlock).
_RETRYABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def is_retryable(exc: BaseException) -> bool:
    """One place that classifies failures: reconnect on these, give up on the rest."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES or sqlstate in _RETRYABLE_SQLSTATES
    if isinstance(exc, RetryableError | ConnectionError | TimeoutError | OSError):
        return True
    if isinstance(exc, VenueRejection | ValueError):  # bad input stays bad on a retry
        return False
    return not isinstance(exc, ConfigError | RingError | DatabaseError | ApiKeyError)


def is_data_error(exc: BaseException) -> bool:
    """A row that Postgres refuses (bad value, broken constraint): skip it, keep the rest."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in ("22", "23")
    # asyncpg raises its DataError, a ValueError, when it cannot encode an argument
    return isinstance(exc, ValueError)
