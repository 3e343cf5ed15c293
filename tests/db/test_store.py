"""StateStore on a real database: desired state survives a restart; history is queryable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest

from engine.db import (
    ConnectionEvent,
    DesiredConnection,
    NewConnection,
    NewSubscription,
    ReconnectPolicy,
    StateStore,
    StateUpdate,
    as_user,
)
from engine.db.session import Pool
from engine.errors import AlreadyExists, NotFound

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def mine(desired: list[DesiredConnection], owner: UUID) -> list[DesiredConnection]:
    """The test's own connections (the database is shared by the whole run)."""
    return [d for d in desired if d.connection.owner == owner]


async def test_restore_after_restart(pool: Pool, owner: UUID) -> None:
    store = StateStore(pool)
    policy = ReconnectPolicy(max_attempts=5, delay=0.25, max_delay=8.0, reset_after=30.0)
    live = await store.create_connection(
        NewConnection(
            owner=owner,
            exchange="binance",
            name="spot-main",
            url="wss://stream.binance.com:9443/ws",
            reconnect=policy,
            desired_state="connected",
        )
    )
    idle = await store.create_connection(NewConnection(owner=owner, exchange="okx", name="idle"))
    trades = await store.create_subscription(
        NewSubscription(connection_id=live.id, channel="trades", symbols=("BTC-USDT", "ETH-USDT"))
    )
    book = await store.create_subscription(
        NewSubscription(
            connection_id=live.id, channel="book", symbols=("BTC-USDT",), kinds=("snapshot",)
        )
    )
    gone = await store.create_subscription(
        NewSubscription(connection_id=live.id, channel="bbo", symbols=("SOL-USDT",))
    )
    await store.update_subscription(trades.id, state="active")
    await store.update_subscription(gone.id, state="removed", reason="user removed it")
    await store.update_current_states(
        [StateUpdate(connection_id=live.id, state="live", connected_at=T0)]
    )

    restarted = mine(await StateStore(pool).load_desired(), owner)  # a new instance

    assert [d.connection.name for d in restarted] == ["spot-main", "idle"]
    first, second = restarted
    assert first.connection.desired_state == "connected"
    assert first.connection.reconnect == policy
    assert first.connection.url == "wss://stream.binance.com:9443/ws"
    assert first.connection.current_state == "live"
    assert first.connection.last_connected_at == T0
    assert [(s.channel, s.symbols, s.kinds, s.state) for s in first.subscriptions] == [
        ("trades", ("BTC-USDT", "ETH-USDT"), None, "active"),
        ("book", ("BTC-USDT",), ("snapshot",), "pending"),
    ]
    assert {s.id for s in first.subscriptions} == {trades.id, book.id}
    assert second.connection.id == idle.id
    assert second.connection.desired_state == "disconnected"
    assert second.connection.reconnect == ReconnectPolicy()
    assert second.subscriptions == ()


async def test_update_and_delete(pool: Pool, owner: UUID) -> None:
    store = StateStore(pool)
    c = await store.create_connection(NewConnection(owner=owner, exchange="bybit", name="c1"))
    s = await store.create_subscription(
        NewSubscription(connection_id=c.id, channel="trades", symbols=("BTCUSDT",))
    )
    changed = await store.update_connection(c.id, desired_state="connected", url=None)
    assert changed.desired_state == "connected"
    assert changed.updated_at >= c.updated_at
    assert changed.name == "c1"
    s2 = await store.update_subscription(s.id, symbols=["BTCUSDT", "ETHUSDT"], kinds=None)
    assert s2.symbols == ("BTCUSDT", "ETHUSDT")
    assert await store.delete_subscription(s.id)
    assert not await store.delete_subscription(s.id)
    assert await store.delete_connection(c.id)
    assert await store.get_connection(c.id) is None
    assert not await store.delete_connection(c.id)
    with pytest.raises(NotFound):
        await store.update_connection(c.id, desired_state="disconnected")
    with pytest.raises(NotFound):
        await store.create_subscription(
            NewSubscription(connection_id=c.id, channel="trades", symbols=("X",))
        )


async def test_names_are_unique_per_owner(pool: Pool, owner: UUID) -> None:
    store = StateStore(pool)
    await store.create_connection(NewConnection(owner=owner, exchange="okx", name="same"))
    with pytest.raises(AlreadyExists):
        await store.create_connection(NewConnection(owner=owner, exchange="okx", name="same"))
    other = await store.create_connection(NewConnection(owner=uuid4(), exchange="okx", name="same"))
    assert other.name == "same"


async def test_deleting_a_connection_deletes_its_history(pool: Pool, owner: UUID) -> None:
    store = StateStore(pool)
    c = await store.create_connection(NewConnection(owner=owner, exchange="okx", name="h"))
    await store.record_events([ConnectionEvent(connection_id=c.id, kind="error", ts=T0)])
    await store.delete_connection(c.id)
    assert await store.events(c.id) == []


async def test_state_changes_and_errors_are_events_queryable_by_time(
    pool: Pool, owner: UUID
) -> None:
    store = StateStore(pool)
    c = await store.create_connection(NewConnection(owner=owner, exchange="okx", name="ev"))
    other = await store.create_connection(NewConnection(owner=owner, exchange="okx", name="x"))
    s = timedelta(seconds=1)
    updated = await store.update_current_states(
        [
            StateUpdate(connection_id=c.id, state="connecting", ts=T0),
            StateUpdate(connection_id=c.id, state="subscribing", ts=T0 + s),
            StateUpdate(connection_id=c.id, state="live", ts=T0 + 2 * s, connected_at=T0 + 2 * s),
            StateUpdate(connection_id=other.id, state="connecting", ts=T0),
        ]
    )
    assert updated == 2  # one row per connection: the latest state wins
    outcome = await store.record_events(
        [
            ConnectionEvent(
                connection_id=c.id,
                kind="error",
                ts=T0 + 3 * s,
                code="60012",
                reason="Invalid request: channel does not exist",
                details={"channel": "bogus", "symbols": ["BTC-USDT"]},
            ),
        ]
    )
    assert (outcome.inserted, outcome.rejected) == (1, 0)
    await store.update_current_states(
        [
            StateUpdate(
                connection_id=c.id,
                state="closed",
                ts=T0 + 4 * s,
                code="1001",
                reason="server going away",
                error="closed by venue",
            )
        ]
    )

    every = await store.events(c.id)
    assert [(e.kind, e.state, e.code) for e in every] == [
        ("state", "connecting", None),
        ("state", "subscribing", None),
        ("state", "live", None),
        ("error", None, "60012"),
        ("state", "closed", "1001"),
    ]
    assert every[3].reason == "Invalid request: channel does not exist"
    assert every[3].details == {"channel": "bogus", "symbols": ["BTC-USDT"]}
    assert all(e.owner == owner for e in every)
    window = await store.events(c.id, since=T0 + s, until=T0 + 3 * s)
    assert [e.state for e in window] == ["subscribing", "live"]
    assert [e.state for e in await store.events(other.id)] == ["connecting"]
    row = await store.get_connection(c.id)
    assert row is not None
    assert (row.current_state, row.last_error) == ("closed", "closed by venue")
    assert row.last_connected_at == T0 + 2 * s


async def test_a_bad_event_does_not_lose_the_others(pool: Pool, owner: UUID) -> None:
    store = StateStore(pool)
    c = await store.create_connection(NewConnection(owner=owner, exchange="okx", name="bad"))
    bad = ConnectionEvent(connection_id=c.id, kind="oops", ts=T0)  # type: ignore[arg-type]
    outcome = await store.record_events(
        [
            ConnectionEvent(connection_id=c.id, kind="error", ts=T0, reason="first"),
            bad,
            ConnectionEvent(connection_id=c.id, kind="error", ts=T0, reason="third"),
            ConnectionEvent(connection_id=uuid4(), kind="error", ts=T0, reason="unknown id"),
        ]
    )
    assert (outcome.inserted, outcome.rejected) == (2, 1)
    assert outcome.first_error is not None
    assert "CheckViolation" in outcome.first_error
    assert [e.reason for e in await store.events(c.id)] == ["first", "third"]


async def test_a_user_sees_the_engine_rows_of_their_own_only(pool: Pool, owner: UUID) -> None:
    store = StateStore(pool)
    c = await store.create_connection(NewConnection(owner=owner, exchange="okx", name="u"))
    await store.update_current_states([StateUpdate(connection_id=c.id, state="live", ts=T0)])
    async with as_user(pool, owner) as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM websocket_connection_events WHERE connection_id = $1", c.id
            )
            == 1
        )
    async with as_user(pool, uuid4()) as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM websocket_connection_events WHERE connection_id = $1", c.id
            )
            == 0
        )


async def test_the_database_refuses_a_bad_reconnect_policy(pool: Pool, owner: UUID) -> None:
    async with as_user(pool, owner) as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO websocket_connections (owner, exchange, name, reconnect)"
                " VALUES ($1, 'okx', 'r', '{\"max_attempts\": \"many\"}')",
                owner,
            )
