"""Serving the app with uvicorn inside the engine's own event loop (`wsm run`, `wsm demo`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn
from starlette.applications import Starlette


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the engine owns SIGINT and SIGTERM


class ApiServer:
    """`await start()` binds and serves (port 0: any free port, see `.port`); `stop()`."""

    def __init__(self, app: Starlette, *, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server = _Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                lifespan="on",
                # X-Forwarded-For is the app's business (trusted proxies only): uvicorn's own
                # handling would trust it from 127.0.0.1 by default
                proxy_headers=False,
                server_header=False,
                access_log=False,
                log_level="warning",
                timeout_graceful_shutdown=3,
                http="httptools",
            )
        )
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> ApiServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[sock]), name="wsm-api"
        )
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it (the lifespan failed, ...)
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        self.app.state.api.stopping.set()  # live feeds end now
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def __aenter__(self) -> ApiServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
