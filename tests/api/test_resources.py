"""Every route's happy path and its errors, as real HTTP against a running engine; user A
never sees or changes B's rows."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.api.conftest import SCRAPE, Stack, now
from tests.e2e.harness import until

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
API = "/api/websocket"


async def test_connection_lifecycle(stack: Stack) -> None:
    user = uuid.uuid4()
    async with stack.client(user) as c:
        made = await stack.new_connection(c, "main")
        cid = made["id"]
        assert made["desired_state"] == "connected" and made["exchange"] == "binance"

        async def live() -> bool:
            r = await c.get(f"{API}/connections/{cid}")
            return r.status_code == 200 and r.json()["state"] == "live"

        await until(live, 30, "the connection to go live")
        page = (await c.get(f"{API}/connections")).json()
        assert [i["id"] for i in page["items"]] == [cid] and page["next_cursor"] is None

        off = await c.post(f"{API}/connections/{cid}/disconnect")
        assert off.status_code == 200 and off.json()["state"] == "stopped"
        assert off.json()["desired_state"] == "disconnected"
        refused = await c.post(f"{API}/connections/{cid}/reconnect")
        assert refused.status_code == 409, "reconnect needs a connected connection"
        on = await c.post(f"{API}/connections/{cid}/connect")
        assert on.status_code == 200 and on.json()["desired_state"] == "connected"
        await until(live, 30, "live again")
        assert (await c.post(f"{API}/connections/{cid}/reconnect")).status_code == 200

        async def reconnected() -> bool:
            r = await c.get(f"{API}/connections/{cid}")
            return r.json()["state"] == "live" and r.json()["metrics"]["reconnects"] >= 1

        await until(reconnected, 30, "a reconnect counted")

        async def events() -> list[str]:
            r = await c.get(f"{API}/connections/{cid}/events", params={"kind": "state"})
            return [e["state"] for e in r.json()["items"]]

        await until(lambda: events(), 10, "state events")
        await until(
            lambda: _count(events(), "live", 3), 15, "live three times (start, connect, reconnect)"
        )
        seen = await events()
        assert "stopped" in seen and "connecting" in seen
        since = (await c.get(f"{API}/connections/{cid}/events")).json()["items"][-1]["ts"]
        later = await c.get(f"{API}/connections/{cid}/events", params={"from": since})
        assert all(e["ts"] >= since for e in later.json()["items"])

        gone = await c.delete(f"{API}/connections/{cid}")
        assert gone.status_code == 200 and gone.json() == {"id": cid, "deleted": True}
        assert (await c.get(f"{API}/connections/{cid}")).status_code == 404
        assert cid not in {i.row_id for i in stack.manager.connections()}, "the engine forgot it"
        assert (await c.delete(f"{API}/connections/{cid}")).status_code == 404


async def _count(values: object, item: str, n: int) -> bool:
    return list(await values).count(item) >= n  # type: ignore[misc]


async def test_concurrent_creates_never_exceed_the_per_user_limit(stack: Stack) -> None:
    # Each create counts the user's rows and then inserts: without serialising the two per
    # user, simultaneous requests all see room and the limit (5 here) is overrun.
    user, other = uuid.uuid4(), uuid.uuid4()
    async with stack.client(user) as c, stack.client(other) as d:
        body = lambda name: {"exchange": "binance", "name": name, "connect": False}  # noqa: E731
        replies = await asyncio.gather(
            *(c.post(f"{API}/connections", json=body(f"r{i}")) for i in range(12)),
            *(d.post(f"{API}/connections", json=body(f"o{i}")) for i in range(3)),
        )
        mine, theirs = replies[:12], replies[12:]
        assert sorted(r.status_code for r in mine) == [201] * 5 + [409] * 7
        assert all(
            r.json()["error"]["code"] == "limit_reached" for r in mine if r.status_code == 409
        )
        assert [r.status_code for r in theirs] == [201] * 3, "one user's limit is not another's"
        listed = (await c.get(f"{API}/connections", params={"limit": 100})).json()["items"]
        assert len(listed) == 5


async def test_create_errors(stack: Stack) -> None:
    user = uuid.uuid4()
    async with stack.client(user) as c:
        post = lambda body: c.post(f"{API}/connections", json=body)  # noqa: E731
        r = await post({"exchange": "nowhere", "name": "x"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "exchange"
        r = await post({"exchange": "binance", "name": "x", "owner": str(uuid.uuid4())})
        assert r.status_code == 422, "mass assignment: owner is not a field"
        assert r.json()["error"]["field"] == "owner"
        r = await post({"exchange": "binance", "name": "x", "url": "ws://169.254.169.254/x"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "url"
        r = await post({"exchange": "binance", "name": "bad name!"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "name"
        r = await post({"exchange": "binance", "name": "x", "reconnect": {"delay": -1}})
        assert r.status_code == 422 and r.json()["error"]["field"] == "reconnect.delay"
        r = await c.post(f"{API}/connections", content=b"{not json")
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
        await stack.new_connection(c, "dup", connect=False)
        r = await post({"exchange": "binance", "name": "dup"})
        assert r.status_code == 409 and r.json()["error"]["field"] == "name"
        for n in range(4):
            await stack.new_connection(c, f"n{n}", connect=False)
        r = await post({"exchange": "binance", "name": "one-too-many"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "limit_reached"
        r = await c.get(f"{API}/connections", params={"limit": 2})
        first = r.json()
        assert len(first["items"]) == 2 and first["next_cursor"]
        names = [i["name"] for i in first["items"]]
        while first["next_cursor"]:
            first = (
                await c.get(
                    f"{API}/connections", params={"limit": 2, "cursor": first["next_cursor"]}
                )
            ).json()
            names += [i["name"] for i in first["items"]]
        assert sorted(names) == sorted(["dup", "n0", "n1", "n2", "n3"])
        for bad in ({"limit": 0}, {"limit": "x"}, {"cursor": "!!"}):
            assert (await c.get(f"{API}/connections", params=bad)).status_code == 400
        assert (await c.get(f"{API}/connections/not-a-uuid")).status_code == 404


async def test_users_never_see_or_change_each_others_rows(stack: Stack) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    start = now()
    async with stack.client(a) as ca, stack.client(b) as cb:
        conn_a = await stack.new_connection(ca, "same-name")
        await stack.new_connection(cb, "same-name")  # names are per user
        sub = await ca.post(
            f"{API}/subscriptions",
            json={"connection_id": conn_a["id"], "channel": "trades", "symbols": ["BTC-USDT"]},
        )
        assert sub.status_code == 201
        sub_a = sub.json()["id"]
        listed = (await cb.get(f"{API}/connections")).json()["items"]
        assert conn_a["id"] not in [i["id"] for i in listed] and len(listed) == 1
        assert (await cb.get(f"{API}/subscriptions")).json()["items"] == []
        cid = conn_a["id"]
        probes = [
            ("GET", f"{API}/connections/{cid}", None),
            ("DELETE", f"{API}/connections/{cid}", None),
            ("DELETE", f"{API}/connections?id={cid}", None),
            ("POST", f"{API}/connections/{cid}/disconnect", None),
            ("POST", f"{API}/connections/{cid}/connect", None),
            ("POST", f"{API}/connections/{cid}/reconnect", None),
            ("GET", f"{API}/connections/{cid}/events", None),
            ("GET", f"{API}/metrics?connection_id={cid}", None),
            ("DELETE", f"{API}/subscriptions/{sub_a}", None),
            ("DELETE", f"{API}/subscriptions?id={sub_a}", None),
            (
                "POST",
                f"{API}/subscriptions",
                {"connection_id": cid, "channel": "trades", "symbols": ["ETH-USDT"]},
            ),
        ]
        for method, path, body in probes:
            r = await cb.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert r.json()["error"]["code"] == "not_found"
        still = await ca.get(f"{API}/connections/{cid}")
        assert still.status_code == 200 and still.json()["desired_state"] == "connected"
        assert [s["id"] for s in (await ca.get(f"{API}/subscriptions")).json()["items"]] == [sub_a]
    refusals = await stack.wait_audit(start, len(probes), actor=b, outcome="refused", status=404)
    assert {r["action"].split(" ")[0] for r in refusals} == {"GET", "DELETE", "POST"}
    changes = await stack.audit(start, actor=a, outcome="ok")
    assert {r["action"] for r in changes} >= {"connections.create", "subscriptions.create"}


async def test_subscriptions_validate_and_share_one_upstream_stream(stack: Stack) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    async with stack.client(a) as ca, stack.client(b) as cb:
        conns = [await stack.new_connection(ca, "a"), await stack.new_connection(cb, "b")]
        post = lambda c, body: c.post(f"{API}/subscriptions", json=body)  # noqa: E731
        bad = [
            ({"channel": "nope", "symbols": ["BTC-USDT"]}, "channel"),
            ({"channel": "trades", "symbols": ["NOPE-USDT"]}, "symbols"),
            ({"channel": "trades", "symbols": []}, "symbols"),
            ({"channel": "trades", "symbols": ["BTC-USDT"], "kinds": ["bbo"]}, "kinds"),
            ({"channel": "trades", "symbols": ["BTC-USDT"], "kinds": ["nope"]}, "kinds[0]"),
        ]
        for body, field in bad:
            r = await post(ca, {"connection_id": conns[0]["id"], **body})
            assert r.status_code == 422, (body, r.text)
            assert r.json()["error"]["field"] == field, (body, r.json())
        r = await post(
            ca, {"connection_id": str(uuid.uuid4()), "channel": "trades", "symbols": ["BTCUSDT"]}
        )
        assert r.status_code == 404
        subs = []
        for client, conn, spelling in ((ca, conns[0], "BTCUSDT"), (cb, conns[1], "BTC/USDT")):
            r = await post(
                client, {"connection_id": conn["id"], "channel": "trades", "symbols": [spelling]}
            )
            assert r.status_code == 201, r.text
            assert r.json()["symbols"] == ["BTC-USDT"], "the venue's and the slash spelling"
            subs.append(r.json()["id"])

        async def both_active() -> bool:
            states = [
                (await c.get(f"{API}/subscriptions")).json()["items"][0]["state"] for c in (ca, cb)
            ]
            return states == ["active", "active"]

        await until(both_active, 30, "both users' subscriptions active")
        streams = [s for conn in (await stack.sim.stats())["subscriptions"] for s in conn]
        assert streams.count("btcusdt@trade") == 1, f"one upstream stream: {streams}"
        mine = (await cb.get(f"{API}/subscriptions")).json()["items"]
        assert [s["id"] for s in mine] == [subs[1]]
        assert str(conns[0]["id"]) not in (mine[0]["reason"] or ""), "never A's connection id"
        filtered = await ca.get(f"{API}/subscriptions", params={"connection_id": conns[0]["id"]})
        assert [s["id"] for s in filtered.json()["items"]] == [subs[0]]
        r = await ca.delete(f"{API}/subscriptions/{subs[0]}")
        assert r.status_code == 200
        assert (await ca.get(f"{API}/subscriptions")).json()["items"] == []

        async def b_still_fed() -> bool:
            streams = [s for conn in (await stack.sim.stats())["subscriptions"] for s in conn]
            r = (await cb.get(f"{API}/subscriptions")).json()["items"]
            return streams.count("btcusdt@trade") == 1 and r[0]["state"] == "active"

        await until(b_still_fed, 30, "B's stream to survive A's unsubscribe")
        assert (await ca.delete(f"{API}/subscriptions/{subs[0]}")).status_code == 404


async def test_metrics_series_aggregates_and_prometheus(stack: Stack) -> None:
    user = uuid.uuid4()
    async with stack.client(user) as c:
        conn = await stack.new_connection(c, "m")
        r = await c.post(
            f"{API}/subscriptions",
            json={"connection_id": conn["id"], "channel": "trades", "symbols": ["ETH-USDT"]},
        )
        assert r.status_code == 201

        async def points() -> list[dict[str, object]] | None:
            r = await c.get(f"{API}/metrics", params={"connection_id": conn["id"], "step": 0.2})
            assert r.status_code == 200, r.text
            pts = r.json()["points"]
            return pts if len(pts) >= 4 and any(p["messages_per_s"] for p in pts) else None

        pts = await until(points, 30, "stored metrics rows, read as the user")
        assert pts[-1]["messages_in"] >= pts[0]["messages_in"]
        for bad in (
            {},
            {"connection_id": "x"},
            {"connection_id": conn["id"], "step": "0"},
            {"connection_id": conn["id"], "from": "yesterday"},
            {
                "connection_id": conn["id"],
                "from": "2030-01-01T00:00:00Z",
                "to": "2029-01-01T00:00:00Z",
            },
            {"connection_id": conn["id"], "step": "0.001"},
        ):
            assert (await c.get(f"{API}/metrics", params=bad)).status_code == 400, bad
        agg = (await c.get(f"{API}/metrics/aggregated")).json()
        assert agg["overall"]["connections"] == 1 and agg["exchanges"][0]["exchange"] == "binance"
        assert agg["overall"]["messages_per_s"] > 0 and agg["overall"]["live"] == 1

        text = (await c.get("/metrics")).text
        assert (
            f'wsm_connection_state{{exchange="binance",connection="{conn["id"]}",state="live"}} 1'
            in text
        )
        assert "wsm_connection_latency_seconds_bucket" in text and 'le="+Inf"' in text
        assert (
            "wsm_metrics_writer_buffered_rows" in text and "wsm_ring_records_written_total" in text
        )
        assert text.count("wsm_connection_state{") == 8, "a user sees only their connections"
    async with stack.client(token=SCRAPE) as scraper:
        everything = (await scraper.get("/metrics")).text
    assert everything.count("wsm_connection_state{") > 8, "the scrape token sees all"
    async with stack.client() as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401
        assert (await anonymous.get("/health")).json()["status"] == "ok"
        ready = await anonymous.get("/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
        spec = (await anonymous.get("/openapi.json")).json()
        assert spec["openapi"].startswith("3.1")
        assert {"/api/websocket/connections", "/api/websocket/subscriptions", "/metrics"} <= set(
            spec["paths"]
        )
        assert (await anonymous.get("/api/websocket/exchanges")).status_code == 401
    async with stack.client(user) as c:
        ex = (await c.get(f"{API}/exchanges")).json()["items"]
        assert [e["name"] for e in ex] == ["binance"] and "trades" in ex[0]["channels"]
