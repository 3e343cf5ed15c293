"""RELIABILITY rows 21, 22, 24, 25: tokens, the IP allow-list behind (and around) a trusted
proxy, body limits, and the audit trail of every refusal."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import jwt
import orjson
import pytest
import pytest_asyncio
from aiohttp import ClientSession, TCPConnector, web

from engine.db import as_user
from tests.api.conftest import PROXY, SECRET, Stack, now

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
API = "/api/websocket"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def claims(user: uuid.UUID, **over: object) -> dict[str, object]:
    t = int(time.time())
    return {
        "sub": str(user),
        "role": "authenticated",
        "aud": "authenticated",
        "exp": t + 600,
    } | over


def bad_tokens(user: uuid.UUID) -> dict[str, str | None]:
    return {
        "missing": None,
        "garbage": "not.a.token",
        "expired": jwt.encode(claims(user, exp=int(time.time()) - 60), SECRET, "HS256"),
        "forged": jwt.encode(claims(user), "another-secret-" + "x" * 60, "HS256"),
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims(user)) + ".",
        "other algorithm": jwt.encode(claims(user), SECRET, "HS512"),
        "wrong audience": jwt.encode(claims(user, aud="somebody-else"), SECRET, "HS256"),
        "no audience": jwt.encode({k: v for k, v in claims(user).items() if k != "aud"}, SECRET),
        "service role": jwt.encode(claims(user, role="service_role"), SECRET, "HS256"),
        "anon role": jwt.encode(claims(user, role="anon"), SECRET, "HS256"),
        "not a user id": jwt.encode(claims(user, sub="admin"), SECRET, "HS256"),
        "no expiry": jwt.encode({k: v for k, v in claims(user).items() if k != "exp"}, SECRET),
    }


async def test_bad_tokens_are_refused_and_audited(stack: Stack) -> None:
    user = uuid.uuid4()
    source = "127.0.0.21"
    start = now()
    cases = bad_tokens(user)
    for name, token in cases.items():
        async with stack.client(token=token, source=source) as c:
            r = await c.get(f"{API}/connections")
        assert r.status_code == 401, (name, r.text)
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    rows = await stack.wait_audit(start, len(cases), ip=source, status=401)
    assert all(r["actor"] is None and r["outcome"] == "refused" for r in rows)
    async with stack.client(user, source=source) as c:
        assert (await c.get(f"{API}/connections")).status_code == 200, "a good token passes"


async def _allow(stack: Stack, user: uuid.UUID, *cidrs: str) -> None:
    for cidr in cidrs:
        await stack.admin.execute(
            "INSERT INTO ip_whitelist (owner, cidr) VALUES ($1, $2)", user, cidr
        )


@pytest_asyncio.fixture(loop_scope="module")
async def proxy(stack: Stack) -> AsyncIterator[str]:
    """A real reverse proxy at a trusted address: it appends its peer to X-Forwarded-For."""
    upstream = ClientSession(connector=TCPConnector(local_addr=(PROXY, 0)))

    async def forward(request: web.Request) -> web.Response:
        chain = [*request.headers.getall("X-Forwarded-For", []), request.remote or ""]
        headers = {
            "Authorization": request.headers.get("Authorization", ""),
            "X-Forwarded-For": ", ".join(chain),
        }
        async with upstream.get(stack.url + request.path_qs, headers=headers) as resp:
            return web.Response(status=resp.status, body=await resp.read())

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()
    await upstream.close()


async def test_ip_allow_list_direct_and_through_a_trusted_proxy(stack: Stack, proxy: str) -> None:
    user, free = uuid.uuid4(), uuid.uuid4()
    await _allow(stack, user, "127.0.0.5/32", "10.1.2.3/32")
    token = stack.token(user)
    start = now()

    async def direct(source: str, xff: str | None = None) -> int:
        headers = {"X-Forwarded-For": xff} if xff else {}
        async with stack.client(token=token, source=source, headers=headers) as c:
            return (await c.get(f"{API}/connections")).status_code

    async def via_proxy(source: str, xff: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} | ({"X-Forwarded-For": xff} if xff else {})
        transport = httpx.AsyncHTTPTransport(local_address=source)
        async with httpx.AsyncClient(transport=transport, headers=headers) as c:
            return (await c.get(f"{proxy}{API}/connections")).status_code

    assert await direct("127.0.0.5") == 200
    assert await direct("127.0.0.6") == 403
    assert await direct("127.0.0.6", "127.0.0.5") == 403, "X-Forwarded-For from a client: ignored"
    assert await direct("127.0.0.6", "10.1.2.3") == 403
    assert await via_proxy("127.0.0.5") == 200, "the proxy forwards the real client"
    assert await via_proxy("127.0.0.6") == 403
    assert await via_proxy("127.0.0.6", "127.0.0.5") == 403, "spoofed leftmost never admitted"
    assert await via_proxy("127.0.0.6", "10.1.2.3, 127.0.0.5") == 403
    # a chain of trusted hops: the rightmost untrusted address is the client
    assert await direct(PROXY, "127.0.0.6, 10.1.2.3") == 200
    assert await direct(PROXY, f"10.1.2.3, 127.0.0.6, {PROXY}") == 403
    assert await direct(PROXY, f"127.0.0.6, 10.1.2.3, {PROXY}") == 200
    rows = await stack.wait_audit(start, 6, actor=user, status=403)
    assert {r["ip"] for r in rows} == {"127.0.0.6"}, "the audit names the resolved client"
    async with stack.client(free, source="127.0.0.6") as c:
        assert (await c.get(f"{API}/connections")).status_code == 200, "no list: no limit"


async def test_oversize_bodies_get_413_and_are_audited(stack: Stack) -> None:
    user = uuid.uuid4()
    start = now()
    body = orjson.dumps({"exchange": "binance", "name": "x" * 5000})
    async with stack.client(user) as c:
        r = await c.post(f"{API}/connections", content=body)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 512):
                yield body[i : i + 512]

        r = await c.post(f"{API}/connections", content=chunks())  # chunked: no Content-Length
        assert r.status_code == 413
        assert (await c.get(f"{API}/connections")).status_code == 200
    await stack.wait_audit(start, 2, status=413)


async def test_the_app_roles_cannot_change_the_audit_log(stack: Stack) -> None:
    user = uuid.uuid4()
    async with stack.client(user) as c:
        await c.get(f"{API}/connections/{uuid.uuid4()}")  # a refusal: one audit row
    await stack.wait_audit(now().replace(year=2000), 1, actor=user)
    for role in ("authenticated", "wsm_api"):
        for sql in ("UPDATE audit_log SET outcome = 'ok'", "DELETE FROM audit_log"):
            async with stack.admin.acquire() as conn, conn.transaction():
                if role == "authenticated":
                    await conn.execute(
                        "SELECT set_config('request.jwt.claims', $1, true)",
                        orjson.dumps({"sub": str(user), "role": "authenticated"}).decode(),
                    )
                await conn.execute("SELECT set_config('role', $1, true)", role)
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(sql)
    async with as_user(stack.admin, user) as conn:
        mine = await conn.fetch("SELECT actor FROM audit_log")
    assert mine and {r[0] for r in mine} == {user}, "a user reads their own audit rows only"


async def test_users_keep_their_own_allow_list_and_cannot_lock_themselves_out(
    stack: Stack,
) -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    start = now()
    at = lambda source: stack.client(user, source=source)  # noqa: E731
    async with at("127.0.0.31") as c, at("127.0.0.32") as d:
        url = f"{API}/ip-whitelist"
        assert (await c.get(url)).json() == {"items": [], "next_cursor": None}
        r = await c.post(url, json={"cidr": "10.0.0.0/8"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "would_lock_out"
        assert "127.0.0.31" in r.json()["error"]["message"]
        for bad in ("127.0.0.31/24", "nonsense", "300.1.1.1"):  # host bits set, not an address
            r = await c.post(url, json={"cidr": bad})
            assert r.status_code == 422 and r.json()["error"]["field"] == "cidr", bad
        r = await c.post(url, json={"cidr": "127.0.0.31", "label": "desk"})
        assert r.status_code == 201 and r.json()["cidr"] == "127.0.0.31/32"
        desk = r.json()["id"]
        wide = (await c.post(url, json={"cidr": "127.0.0.0/26", "label": "office"})).json()["id"]
        r = await c.post(url, json={"cidr": "127.0.0.31/32"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
        listed = (await c.get(url)).json()["items"]
        assert [(i["cidr"], i["label"]) for i in listed] == [
            ("127.0.0.31/32", "desk"),
            ("127.0.0.0/26", "office"),
        ]
        assert (await d.get(url)).status_code == 200, "the /26 admits .32"
        r = await d.delete(f"{url}/{wide}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "would_lock_out"
        assert len((await c.get(url)).json()["items"]) == 2, "a refused delete changes nothing"
        async with stack.client(other, source="127.0.0.31") as e:
            assert (await e.get(url)).json()["items"] == [], "each user sees only their own"
            assert (await e.delete(f"{url}/{desk}")).status_code == 404
        assert (await c.post(url, json={"cidr": "192.0.2.0/24"})).status_code == 201
        r = await c.post(url, json={"cidr": "198.51.100.0/24"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "limit_reached"
        assert (await c.delete(f"{url}/{wide}")).status_code == 200
        assert (await d.get(url)).status_code == 403, "the /26 is gone: .32 is refused"
    rows = await stack.wait_audit(start, 4, actor=user, outcome="ok")
    assert [r["action"] for r in rows] == [
        "ip_whitelist.add",
        "ip_whitelist.add",
        "ip_whitelist.add",
        "ip_whitelist.delete",
    ]
