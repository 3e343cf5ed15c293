"""The audit log: a row for every change and every refusal.

Changes are audited in the transaction that makes them (`audit_change`: the role switches to
`wsm_api` after the user's statements, so the row commits or rolls back with the change).
Refusals are queued (`audit_refusal`, never waits) and written in batches by `AuditWriter`,
so that a burst of refused requests costs the database one statement per batch; the queue is
bounded and what it had to drop is counted (`/metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson
from starlette.types import Scope

from engine.db.session import Connection, Pool

API_ROLE: Final = "wsm_api"
_INSERT: Final = (
    "INSERT INTO audit_log (ts, actor, action, target, source_ip, outcome, details)"
    " SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::text[], $4::text[],"
    " $5::inet[], $6::text[], $7::jsonb[])"
)


class AuditWriter:
    def __init__(self, pool: Pool, *, max_queued: int = 10_000, interval: float = 0.2) -> None:
        self._pool = pool
        self._queue: deque[tuple[Any, ...]] = deque()
        self._max = max_queued
        self._interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def submit(
        self,
        *,
        actor: UUID | None,
        action: str,
        target: str,
        source_ip: str | None,
        outcome: str,
        details: dict[str, Any],
    ) -> None:
        if len(self._queue) >= self._max:
            self._queue.popleft()
            self.dropped += 1
        row = (datetime.now(UTC), actor, action, target, source_ip, outcome, orjson.dumps(details))
        self._queue.append(row)
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wsm-api-audit")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.flush()
        self.dropped += len(self._queue)
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                self.failed += 1  # the rows stay queued; try again later
                await asyncio.sleep(1.0)
            await asyncio.sleep(self._interval)

    async def flush(self) -> None:
        while self._queue:
            batch = list(self._queue)[:1000]
            columns = [list(c) for c in zip(*batch, strict=True)]
            columns[6] = [d.decode() for d in columns[6]]
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT set_config('role', $1, true)", API_ROLE)
                await conn.execute(_INSERT, *columns)
            for _ in batch:
                self._queue.popleft()
            self.written += len(batch)


def scope_details(scope: Scope) -> tuple[UUID | None, str | None, str, str]:
    """(actor, source ip, action, target) of a request."""
    state = scope.get("state", {})
    principal = state.get("principal")
    client = state.get("client_ip")
    action = f"{scope.get('method', '')} {scope.get('path', '')}"
    return (
        principal.user_id if principal is not None else None,
        None if client is None else str(client),
        action,
        scope.get("path", ""),
    )


def audit_refusal(scope: Scope, status: int, code: str, message: str) -> None:
    """Queue the audit row of a refused request (any 4xx)."""
    api = scope["app"].state.api
    actor, ip, action, target = scope_details(scope)
    api.audit.submit(
        actor=actor,
        action=action,
        target=target,
        source_ip=ip,
        outcome="refused",
        details={"status": status, "code": code, "message": message[:500]},
    )


async def audit_change(
    conn: Connection, scope: Scope, action: str, target: str, details: dict[str, Any]
) -> None:
    """Audit a change inside the user's transaction (call it after the user's statements)."""
    actor, ip, _, _ = scope_details(scope)
    await conn.execute("SELECT set_config('role', $1, true)", API_ROLE)
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, source_ip, outcome, details)"
        " VALUES ($1, $2, $3, $4::inet, 'ok', $5::jsonb)",
        actor,
        action,
        target,
        ip,
        orjson.dumps(details).decode(),
    )
