"""`wsm run`: the engine (and, when enabled, its API and dashboard) until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from engine.config import EngineConfig
from engine.manager import WebSocketManager


@contextlib.asynccontextmanager
async def serve_api(
    manager: WebSocketManager, *, port: int | None = None, out: TextIO = sys.stderr
) -> AsyncIterator[str | None]:
    """The API and dashboard of `manager` while inside; yields their URL (None: not served).

    This is the composition root's job: the engine itself never imports `api`.
    """
    config = manager.config
    if not config.api.enabled:
        yield None
        return
    if manager.database_url is None:
        print("wsm: API disabled: it needs the database (database.enabled)", file=out, flush=True)
        yield None
        return
    from api import ApiServer, create_app
    from api.secret import resolve_secret

    secret, source = resolve_secret(config.api)
    app = create_app(manager, secret=secret)
    server = ApiServer(app, host=config.api.host, port=config.api.port if port is None else port)
    async with server:
        print(f"wsm: API and dashboard on {server.url}/ (JWT secret from {source})", file=out)
        yield server.url


async def run_engine(config: EngineConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with WebSocketManager(config) as manager, serve_api(manager):
        print(f"wsm: engine running (instance {config.instance!r})", file=sys.stderr, flush=True)
        await stop.wait()
