"""A running stack for the API tests: a simulator process, a fresh Postgres database, the
engine (worker processes) and the API served by uvicorn on a loopback port. One per test
module (its tests share the module's event loop); every test acts as its own fresh users."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from api import ApiServer, create_app, issue_token
from engine import shm
from engine.config import ApiConfig, EngineConfig, ExchangeConfig
from engine.db import DatabaseConfig, migrate
from engine.manager import WebSocketManager
from tests.db.helpers import create_database, drop_database
from tests.e2e.harness import SimProc, until

SECRET = "test-secret-" + "k" * 60
PROXY = "127.0.0.9"  # the trusted proxy's address (any 127/8 address reaches loopback)
SCRAPE = "scrape-token-0123456789"


class Stack:
    def __init__(
        self, manager: WebSocketManager, server: ApiServer, sim: SimProc, admin: asyncpg.Pool
    ) -> None:
        self.manager = manager
        self.server = server
        self.sim = sim
        self.admin = admin  # the database owner: for checking, never for serving users
        self.url = server.url

    def token(self, user: uuid.UUID, **kw: Any) -> str:
        return issue_token(SECRET, user, **kw)

    def client(
        self,
        user: uuid.UUID | None = None,
        *,
        token: str | None = None,
        source: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.AsyncClient:
        """An HTTP client acting as `user` (or with `token`), from the address `source`."""
        hdrs = dict(headers or {})
        if token is None and user is not None:
            token = self.token(user)
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        transport = httpx.AsyncHTTPTransport(local_address=source) if source else None
        return httpx.AsyncClient(base_url=self.url, headers=hdrs, transport=transport, timeout=60.0)

    async def audit(self, since: datetime, **where: Any) -> list[dict[str, Any]]:
        rows = await self.admin.fetch(
            "SELECT actor, action, target, host(source_ip) AS ip, outcome, details"
            " FROM audit_log WHERE ts >= $1 ORDER BY id",
            since,
        )
        out = []
        for r in rows:
            row = dict(r)
            row["details"] = __import__("orjson").loads(row["details"])
            if all(row.get(k) == v or row["details"].get(k) == v for k, v in where.items()):
                out.append(row)
        return out

    async def wait_audit(self, since: datetime, count: int = 1, **where: Any) -> list[Any]:
        async def enough() -> list[Any] | None:
            rows = await self.audit(since, **where)
            return rows if len(rows) >= count else None

        rows: list[Any] = await until(enough, 10, f"{count} audit row(s) {where}")
        return rows

    async def new_connection(
        self, client: httpx.AsyncClient, name: str = "main", **extra: Any
    ) -> dict[str, Any]:
        resp = await client.post(
            "/api/websocket/connections",
            json={"exchange": "binance", "name": name, "reconnect": FAST, **extra},
        )
        assert resp.status_code == 201, resp.text
        return dict(resp.json())


FAST = {"delay": 0.05, "max_delay": 0.3, "max_attempts": 0, "reset_after": 1.0}


def now() -> datetime:
    return datetime.now(UTC)


def api_config(**overrides: Any) -> ApiConfig:
    base: dict[str, Any] = {
        "exchanges": ["binance"],
        "trusted_proxies": [f"{PROXY}/32"],
        "rate_limit_per_second": 200.0,
        "rate_limit_burst": 400,
        "max_body_bytes": 4096,
        "metrics_token": SCRAPE,
        "live_interval": 0.5,
        "max_connections_per_user": 5,
        "max_ip_whitelist_per_user": 3,
    }
    return ApiConfig(**(base | overrides))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(request: pytest.FixtureRequest, pg_admin_url: str) -> AsyncIterator[Stack]:
    overrides = getattr(request.module, "API_CONFIG", {})
    instance = f"t{os.getpid()}-{uuid.uuid4().hex[:10]}"
    url = await create_database(pg_admin_url)
    sim = await SimProc("binance").start()
    admin = None
    try:
        await migrate(url)
        admin = await asyncpg.create_pool(url, min_size=1, max_size=2)
        config = EngineConfig(
            instance=instance,
            stats_interval=0.2,
            worker_restart_delay=0.1,
            exchanges={
                "binance": ExchangeConfig(
                    ws_url=sim.ws_url,
                    rest_url=sim.rest_url,
                    heartbeat_idle=0.5,
                    heartbeat_timeout=0.5,
                    budget=1000,
                    budget_per_second=100.0,
                )
            },
            database=DatabaseConfig(url=url),
            api=api_config(**overrides),
        )
        async with WebSocketManager(config) as manager:
            app = create_app(manager, secret=SECRET)
            async with ApiServer(app, host="127.0.0.1", port=0) as server:
                yield Stack(manager, server, sim, admin)
    finally:
        if admin is not None:
            await admin.close()
        await sim.stop()
        await drop_database(pg_admin_url, url)
        leftovers = shm.instance_segments(instance)
        for seg in leftovers:
            shm.unlink(seg)
        assert not leftovers, f"left shared memory behind: {leftovers}"
