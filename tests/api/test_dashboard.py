"""The dashboard in a real browser (Debian's chromium driven by Playwright): a running engine
(simulator + engine + API, like `wsm demo`), live rates updating, disconnect and reconnect
from the page, seen in the table and in the REST API. A screenshot goes to test-output/."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from api import ApiServer, create_app
from tests.api.conftest import SECRET, Stack
from tests.e2e.harness import until

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


def _require_chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`, "
            "as .ci/run does); this test never downloads a browser",
            pytrace=False,
        )


async def test_dashboard_shows_live_connections_and_drives_them(stack: Stack) -> None:
    _require_chromium()
    from playwright.async_api import async_playwright

    user = uuid.uuid4()
    async with stack.client(user) as api:
        conn = await stack.new_connection(api, "dash")
        r = await api.post(
            "/api/websocket/subscriptions",
            json={"connection_id": conn["id"], "channel": "trades", "symbols": ["BTC-USDT"]},
        )
        assert r.status_code == 201
        await stack.new_connection(api, "dash-2")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1600, "height": 700})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(stack.url + "/")
                await page.fill("#token", stack.token(user))
                await page.click("#login-form button")
                row = page.get_by_test_id("connection-dash")
                state = row.get_by_test_id("state")
                await state.filter(has_text="live").wait_for(timeout=30_000)
                await page.get_by_text("binance").first.wait_for()

                rates: list[str] = []

                async def rate_changed() -> bool:
                    rates.append(await row.locator("td").nth(4).inner_text())
                    return len(set(rates)) >= 3 and float(rates[-1].rstrip("k")) > 0

                await until(rate_changed, 20, "msg/s to update in the table")
                await row.get_by_test_id("disconnect").click()
                await state.filter(has_text="stopped").wait_for(timeout=15_000)
                listed = (await api.get(f"/api/websocket/connections/{conn['id']}")).json()
                assert (listed["state"], listed["desired_state"]) == ("stopped", "disconnected")
                await row.get_by_test_id("connect").click()
                await state.filter(has_text="live").wait_for(timeout=30_000)
                listed = (await api.get(f"/api/websocket/connections/{conn['id']}")).json()
                assert listed["desired_state"] == "connected"

                async def api_live() -> bool:
                    r = await api.get(f"/api/websocket/connections/{conn['id']}")
                    return r.json()["state"] == "live"

                await until(api_live, 30, "live in the API")
                await until(rate_changed, 20, "rates flowing again")

                # the allow-list: a network that would shut this browser out is refused, its
                # own address is added, listed by the API, and removed from the page again
                networks = page.get_by_test_id("network")
                await page.fill("#new-cidr", "10.9.0.0/16")
                await page.click("#add-network button")
                await page.locator("#message").filter(has_text="allow-list").wait_for()
                await page.fill("#new-cidr", "127.0.0.1")
                await page.fill("#new-label", "this machine")
                await page.click("#add-network button")
                await networks.filter(has_text="127.0.0.1/32 — this machine").wait_for()
                listed = (await api.get("/api/websocket/ip-whitelist")).json()["items"]
                assert [(n["cidr"], n["label"]) for n in listed] == [
                    ("127.0.0.1/32", "this machine")
                ]
                await networks.get_by_test_id("remove-network").click()
                await networks.wait_for(state="detached")
                assert (await api.get("/api/websocket/ip-whitelist")).json()["items"] == []
                feed = page.get_by_test_id("feed")
                assert await feed.inner_text() == "live"
                OUTPUT.mkdir(exist_ok=True)
                await page.screenshot(path=str(OUTPUT / "dashboard.png"), full_page=True)

                # the API goes away and comes back on the same port: the page reconnects
                port = stack.server.port
                await stack.server.stop()
                await feed.filter(has_text="reconnecting").wait_for(timeout=15_000)
                app = create_app(stack.manager, secret=SECRET)
                async with ApiServer(app, host="127.0.0.1", port=port):
                    await feed.filter(has_text="live").wait_for(timeout=30_000)
                    rates.clear()
                    await until(rate_changed, 20, "rates after the API came back")
                assert not errors, errors
            finally:
                await browser.close()
