"""429 with Retry-After when a token spends its bucket (`api.rate_limit_*`)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from api.audit import audit_refusal
from api.errors import ApiError
from api.ratelimit import retry_after


class RateLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get("state", {}).get("principal")
        if scope["type"] == "http" and principal is not None:
            wait = scope["app"].state.api.limiter.take(principal.key)
            if wait:
                err = ApiError(
                    429,
                    "rate_limited",
                    "rate limit exceeded",
                    headers={"Retry-After": retry_after(wait)},
                )
                audit_refusal(scope, err.status, err.code, err.message)
                await err.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
