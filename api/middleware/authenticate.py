"""Who is asking: the client's address (trusted proxies only) and, on `/api/` paths and
`/metrics`, the bearer token's user (401 otherwise). `/metrics` also takes the configured
scrape token (`api.metrics_token`). Repeated failures from one address get 429."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from api.audit import audit_refusal
from api.auth import TokenError
from api.errors import ApiError
from api.ratelimit import retry_after


def bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            text: str = value.decode("latin-1")
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class Authenticate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["app"].state.api
        state = scope.setdefault("state", {})
        peer = scope.get("client")
        forwarded = [v.decode("latin-1") for n, v in scope["headers"] if n == b"x-forwarded-for"]
        state["client_ip"] = api.clients.resolve(peer[0] if peer else None, forwarded)
        path = scope["path"]
        if not path.startswith("/api/") and path != "/metrics":
            await self.app(scope, receive, send)
            return
        token = bearer(scope)
        scrape = api.config.metrics_token
        if path == "/metrics" and token and scrape and hmac.compare_digest(token, scrape):
            state["scraper"] = True
            await self.app(scope, receive, send)
            return
        try:
            if token is None:
                raise TokenError("a bearer token is required")
            state["principal"] = api.verifier.verify(token)
        except TokenError as exc:
            await self._refuse(scope, receive, send, str(exc))
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, reason: str) -> None:
        api = scope["app"].state.api
        wait = api.failures.take(str(scope["state"]["client_ip"]))
        if wait:
            err = ApiError(
                429,
                "rate_limited",
                "too many failed authentications",
                headers={"Retry-After": retry_after(wait)},
            )
        else:
            err = ApiError(401, "unauthorized", reason, headers={"WWW-Authenticate": "Bearer"})
        audit_refusal(scope, err.status, err.code, err.message)
        await err.response()(scope, receive, send)
