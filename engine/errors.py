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


def is_retryable(exc: BaseException) -> bool:
    """One place that classifies failures: reconnect on these, give up on the rest."""
    if isinstance(exc, RetryableError | ConnectionError | TimeoutError | OSError):
        return True
    if isinstance(exc, VenueRejection):
        return False
    return not isinstance(exc, ConfigError | RingError)
