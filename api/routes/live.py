"""/api/websocket/live: the dashboard's feed. Server-Sent Events, one aggregated snapshot of
the caller's connections every `api.live_interval` seconds (never one message per tick); the
first snapshot also carries each connection's recent history for the charts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.jsonio import dumps
from api.middleware.allowlist import admitted, user_networks
from api.routes.metrics import aggregate
from api.state import ApiState, api_state, principal
from api.views import live_connections
from engine.db.session import as_user

HISTORY_SAMPLES = 300


async def live(request: Request) -> Response:
    api = api_state(request)
    return StreamingResponse(
        _events(api, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(api: ApiState, request: Request) -> AsyncIterator[bytes]:
    who = principal(request)
    client = request.state.client_ip
    first = True
    yield b"retry: 2000\n\n"
    while not api.stopping.is_set():
        if time.time() >= who.expires_at:
            yield b'event: expired\ndata: {"reason": "token expired"}\n\n'
            return
        async with as_user(api.db, who.user_id) as conn:
            rows = await conn.fetch("SELECT id, desired_state FROM websocket_connections")
            networks = await user_networks(conn)
        if not admitted(client, networks):
            yield b'event: forbidden\ndata: {"reason": "address not on the allow-list"}\n\n'
            return
        desired = {str(r["id"]): r["desired_state"] for r in rows}
        yield b"event: snapshot\ndata: " + dumps(snapshot(api, desired, first)) + b"\n\n"
        first = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(api.stopping.wait(), api.config.live_interval)


def snapshot(api: ApiState, desired: dict[str, str], with_history: bool) -> dict[str, Any]:
    manager = api.manager
    live = live_connections(manager)
    conns, metrics = [], []
    for row_id, info in sorted(live.items(), key=lambda kv: (kv[1].exchange, kv[1].name)):
        if row_id not in desired:
            continue
        m = manager.metrics(info.id)
        metrics.append(m)
        history = manager.coordinator.history(info.id)
        item: dict[str, Any] = {
            "id": row_id,
            "name": info.name,
            "exchange": info.exchange,
            "state": info.state,
            "desired_state": desired[row_id],
            "uptime_s": m.uptime_s,
            "messages_per_s": m.messages_per_s,
            "bytes_per_s": m.bytes_per_s,
            "latency_p50_us": m.latency_p50_us,
            "latency_p99_us": m.latency_p99_us,
            "errors": sum(m.parse_errors.values()),
            "gaps": m.gaps,
            "resyncs": m.resyncs,
            "reconnects": m.reconnects,
            "last_message_age_s": m.last_message_age_s,
            "last_error": m.last_error,
            "subscriptions": [
                {"id": s.row_id, "channel": s.channel, "symbols": s.symbols, "status": s.status}
                for s in manager.subscriptions(info.id)
                if s.row_id is not None
            ],
            "sample": _sample(history[-1]) if history else None,
        }
        if with_history:
            item["history"] = [_sample(s) for s in history[-HISTORY_SAMPLES:]]
        conns.append(item)
    return {
        "at": time.time(),
        "interval": api.config.live_interval,
        "connections": conns,
        "totals": aggregate("*", metrics),
    }


def _sample(s: Any) -> list[Any]:
    return [round(s.at, 3), s.messages_per_s, s.latency_p50_us, s.latency_p99_us]
