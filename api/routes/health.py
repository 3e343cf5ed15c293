"""/health (the process answers) and /ready (engine started, database reachable)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from api.jsonio import json_response
from api.schemas import ExchangeInfo, ExchangeList, Health
from api.state import api_state


async def health(request: Request) -> Response:
    return json_response(Health(status="ok"))


async def ready(request: Request) -> Response:
    api = api_state(request)
    checks: dict[str, str] = {}
    checks["engine"] = "ok" if api.manager.coordinator.started else "not started"
    try:
        async with asyncio.timeout(2.0):
            await api.db.fetchval("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"{type(exc).__name__}"
    if api.stopping.is_set():
        return json_response(Health(status="stopping", checks=checks), status=503)
    ok = all(v == "ok" for v in checks.values())
    return json_response(
        Health(status="ok" if ok else "unavailable", checks=checks), status=200 if ok else 503
    )


async def exchanges(request: Request) -> Response:
    """Exchanges one can connect to, with their channels."""
    from engine.registry import venues

    api = api_state(request)
    running = api.manager.coordinator.exchanges
    items = [
        ExchangeInfo(
            name=name,
            running=name in running,
            channels=[c.name for c in venue.spec.channels],
        )
        for name, venue in sorted(venues().items())
        if name in api.exchanges
    ]
    return json_response(ExchangeList(items=items))
