"""The Binance simulator speaks Binance: frames shaped like the real captures, the method
protocol with its acks and errors, and the venue's limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import picows
import pytest

from adapters.binance.simulator import BinanceSim
from adapters.simkit import SimServer
from tests.e2e.harness import until
from tests.support import FIXTURES, RawClient, frames, shape

SPOT = FIXTURES / "binance" / "spot"
USDM = FIXTURES / "binance" / "usdm"


@pytest.fixture(params=[False, True], ids=["spot", "usdm"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[SimServer]:
    async with SimServer(BinanceSim(futures=request.param), rate=400) as srv:
        yield srv


def send(transport: picows.WSTransport, obj: object) -> None:
    transport.send(picows.WSMsgType.TEXT, json.dumps(obj).encode())


REAL = {
    False: {
        "trade": SPOT / "trade_observed.jsonl",
        "aggTrade": SPOT / "agg_trade_real.jsonl",
        "bookTicker": SPOT / "book_ticker_real.jsonl",
        "depth@100ms": SPOT / "depth_update_real.jsonl",
    },
    True: {
        "trade": USDM / "trade_observed.jsonl",
        "aggTrade": USDM / "agg_trade_real.jsonl",
        "bookTicker": USDM / "book_ticker_real.jsonl",
        "depth@100ms": USDM / "depth_update_real.jsonl",
    },
}


async def test_frames_have_the_fields_and_types_of_real_ones(server: SimServer) -> None:
    futures = server.venue.futures  # type: ignore[attr-defined]
    transport, client = await RawClient.connect(f"{server.ws_url}/stream")
    kinds = list(REAL[futures])
    send(transport, {"method": "SUBSCRIBE", "params": [f"btcusdt@{k}" for k in kinds], "id": 7})

    def full(m: dict) -> bool:  # type: ignore[type-arg]
        # level lists that are not empty, so that every nested type shows
        return all(m["data"].get(k, "-") for k in ("a", "b"))

    def seen() -> set[str]:
        return {m["stream"].split("@", 1)[1] for m in client.json() if "stream" in m and full(m)}

    await until(lambda: set(kinds) <= seen(), 10, "every kind")
    for kind, path in REAL[futures].items():
        real = next(m for m in map(json.loads, frames(path)) if full(m))
        ours = next(m for m in client.json() if m.get("stream") == f"btcusdt@{kind}" and full(m))
        real_shape, our_shape = shape(real["data"]), shape(ours["data"])
        real_shape.pop("st", None)  # an undocumented field of one observed futures frame
        assert our_shape == real_shape, kind
        assert list(ours) == ["stream", "data"]
    transport.disconnect()


async def test_rest_snapshot_and_exchange_info(server: SimServer) -> None:
    futures = server.venue.futures  # type: ignore[attr-defined]
    prefix = "/fapi/v1" if futures else "/api/v3"
    real_path = (
        USDM / "depth_snapshot_rest_AKROUSDT_real.json"
        if futures
        else (SPOT / "depth_snapshot_rest_NKNUSDT_real.json")
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{server.rest_url}{prefix}/depth", params={"symbol": "BTCUSDT", "limit": "5"}
        ) as r:
            ours = await r.json()
        async with http.get(f"{server.rest_url}{prefix}/depth", params={"symbol": "NOPE"}) as r:
            assert r.status == 400 and (await r.json())["code"] == -1121
        async with http.get(f"{server.rest_url}{prefix}/exchangeInfo") as r:
            info = await r.json()
    assert shape(ours) == shape(json.loads(real_path.read_text()))
    assert len(ours["bids"]) == 5
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert (btc["baseAsset"], btc["quoteAsset"]) == ("BTC", "USDT")
    # USD-M lists contracts: clients (cryptofeed among them) keep only the perpetuals
    assert btc.get("contractType") == ("PERPETUAL" if futures else None)


async def test_method_protocol_acks_and_errors() -> None:
    async with SimServer(BinanceSim(), rate=0) as srv:
        transport, client = await RawClient.connect(f"{srv.ws_url}/stream")
        send(transport, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1})
        send(transport, {"method": "LIST_SUBSCRIPTIONS", "id": 3})
        send(transport, {"method": "GET_PROPERTY", "params": ["combined"], "id": 2})
        send(transport, {"method": "SUBSCRIBEX", "id": 4})
        await until(lambda: len(client.frames) >= 4, 5, "answers")
        transport.send(picows.WSMsgType.TEXT, b"{not json")
        await until(lambda: len(client.frames) >= 5, 5, "error")
        got = client.json()
        assert got[0] == {"result": None, "id": 1}
        assert got[1] == {"result": ["btcusdt@trade"], "id": 3}
        assert got[2] == {"result": True, "id": 2}
        assert got[3]["code"] == 2 and got[3]["id"] == 4
        assert got[3]["msg"].startswith("Invalid request: unknown variant SUBSCRIBEX")
        assert got[4]["code"] == 3 and "id" not in got[4]
        transport.disconnect()


async def test_raw_endpoint_and_streams_in_the_url() -> None:
    async with SimServer(BinanceSim(), rate=400) as srv:
        transport, client = await RawClient.connect(f"{srv.ws_url}/ws/btcusdt@trade")
        await until(lambda: client.frames, 10, "a raw frame")
        assert client.json()[0]["e"] == "trade", "raw streams carry no wrapper"
        transport.disconnect()
        transport, client = await RawClient.connect(f"{srv.ws_url}/stream?streams=ethusdt@aggTrade")
        await until(lambda: client.frames, 10, "a combined frame")
        assert client.json()[0]["stream"] == "ethusdt@aggTrade"
        transport.disconnect()


async def test_more_than_five_messages_a_second_closes_the_connection() -> None:
    sim = BinanceSim()
    async with SimServer(sim, rate=0) as srv:
        transport, client = await RawClient.connect(f"{srv.ws_url}/stream")
        for i in range(7):
            send(transport, {"method": "LIST_SUBSCRIPTIONS", "id": i})
        await until(lambda: client.closed, 5, "the venue to close the connection")
        assert sim.violations["messages_per_second"] == 1


async def test_more_than_1024_streams_is_refused() -> None:
    sim = BinanceSim(enforce_limits=False)
    async with SimServer(sim, rate=0) as srv:
        transport, client = await RawClient.connect(f"{srv.ws_url}/stream")
        send(
            transport,
            {"method": "SUBSCRIBE", "params": [f"s{i}@trade" for i in range(1025)], "id": 9},
        )
        await until(lambda: client.frames, 5, "the answer")
        assert client.json()[0]["code"] == 2
        assert sim.violations["streams_per_connection"] == 1
        transport.disconnect()
