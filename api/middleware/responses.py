"""Counts responses by status (for /metrics)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class CountResponses:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counts = scope["app"].state.api.requests

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                counts[status] = counts.get(status, 0) + 1
            await send(message)

        await self.app(scope, receive, counting_send)
