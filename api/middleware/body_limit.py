"""413 for request bodies over `api.max_body_bytes`: by Content-Length before reading, and by
counting what arrives (chunked bodies) while the app reads it."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit import audit_refusal
from api.errors import ApiError


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = -1
                if size < 0:
                    await self._refuse(scope, receive, send, 400, "bad Content-Length")
                    return
                if size > self.max_bytes:
                    await self._refuse(scope, receive, send, 413, self._message())
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send, 413, self._message())

    def _message(self) -> str:
        return f"request body over {self.max_bytes} bytes"

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, message: str
    ) -> None:
        code = "too_large" if status == 413 else "bad_request"
        audit_refusal(scope, status, code, message)
        await ApiError(status, code, message, headers={"Connection": "close"}).response()(
            scope, receive, send
        )
