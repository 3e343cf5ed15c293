"""A fault-injecting TCP proxy in front of Postgres (real sockets, asyncio streams).

It forwards bytes both ways and, on demand:
- refuses: cuts every open connection and resets new ones at once (Postgres is "down");
- cuts after a commit: forwards a transaction's COMMIT to the server, waits for the server's
  reply (so the commit happened), then drops the reply and cuts the connection: the client
  cannot know that its batch was written, and retries it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def upstream_of(url: str) -> Callable[[], Awaitable[Streams]]:
    """A connector to the server of a Postgres URL: TCP, or a Unix socket (`?host=/dir`)."""
    parts = urlsplit(url)
    host = dict(parse_qsl(parts.query)).get("host") or parts.hostname or "127.0.0.1"
    port = parts.port or 5432
    if host.startswith("/"):
        path = f"{host}/.s.PGSQL.{port}"
        return lambda: asyncio.open_unix_connection(path)
    return lambda: asyncio.open_connection(host, port)


class _Link:
    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.swallow_reply = False

    def cut(self) -> None:
        for w in (self.client, self.server):
            w.transport.abort()


class FaultProxy:
    def __init__(self, upstream: Callable[[], Awaitable[Streams]]) -> None:
        self._upstream = upstream
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._refusing = False
        self._commit_cuts = 0
        self.port = 0
        self.refused = 0  # connections reset while refusing
        self.cut_commits = 0  # commits whose reply was swallowed

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.cut()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def refuse(self) -> None:
        """Postgres goes away: open connections are cut, new ones reset."""
        self._refusing = True
        for link in list(self._links):
            link.cut()

    def allow(self) -> None:
        self._refusing = False

    def cut_after_commit(self, times: int = 1) -> None:
        """The next `times` commits happen, but their clients never hear of it."""
        self._commit_cuts += times

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self._refusing:
                self.refused += 1
                writer.transport.abort()
                return
            try:
                up_reader, up_writer = await self._upstream()
            except OSError:
                writer.transport.abort()
                return
            link = _Link(writer, up_writer)
            self._links.add(link)
            try:
                await asyncio.gather(
                    self._pump_to_server(reader, link), self._pump_to_client(up_reader, link)
                )
            finally:
                self._links.discard(link)
                link.cut()
        finally:
            self._handlers.discard(task)

    async def _pump_to_server(self, reader: asyncio.StreamReader, link: _Link) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                # asyncpg sends COMMIT as a simple Query message of its own
                if self._commit_cuts and b"COMMIT" in data:
                    self._commit_cuts -= 1
                    link.swallow_reply = True
                link.server.write(data)
                await link.server.drain()
        link.cut()

    async def _pump_to_client(self, reader: asyncio.StreamReader, link: _Link) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if link.swallow_reply:
                    self.cut_commits += 1
                    break
                link.client.write(data)
                await link.client.drain()
        link.cut()
