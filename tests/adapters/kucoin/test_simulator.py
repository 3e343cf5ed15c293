"""The KuCoin simulator speaks KuCoin: the token flow, frames shaped like the real captures,
welcome, acks, pongs and the documented error frames, and the venue's limits."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp
import picows
import pytest

from adapters.kucoin.simulator import KucoinSim
from adapters.simkit import SimServer
from tests.e2e.harness import until
from tests.support import FIXTURES, RawClient, frames, shape

KUCOIN = FIXTURES / "kucoin"


async def token_url(server: SimServer, connect_id: str = "c1") -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.rest_url}/api/v1/bullet-public") as r,
    ):
        assert r.status == 200
        data = (await r.json())["data"]
    (instance,) = data["instanceServers"]
    query = quote(data["token"], safe="")
    return f"{instance['endpoint']}?token={query}&connectId={connect_id}"


async def connect(server: SimServer, connect_id: str = "c1") -> tuple[Any, RawClient]:
    transport, client = await RawClient.connect(await token_url(server, connect_id))
    await until(lambda: client.frames, 5, "the welcome")
    assert client.json()[0] == {"id": connect_id, "type": "welcome"}
    return transport, client


def send(transport: picows.WSTransport, obj: object) -> None:
    transport.send(picows.WSMsgType.TEXT, json.dumps(obj).encode())


def subscribe(transport: picows.WSTransport, rid: int, topic: str, **extra: Any) -> None:
    send(transport, {"id": rid, "type": "subscribe", "topic": topic, "response": True} | extra)


def of_type(client: RawClient, kind: str) -> list[dict[str, Any]]:
    return [m for m in client.json() if m.get("type") == kind]


def data_frames(client: RawClient, prefix: str) -> list[dict[str, Any]]:
    return [m for m in of_type(client, "message") if m["topic"].startswith(prefix)]


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(KucoinSim(), rate=400) as srv:
        yield srv


async def test_bullet_public_answers_like_the_documented_example(server: SimServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.rest_url}/api/v1/bullet-public") as r:
            ours = await r.json()
        async with http.get(f"{server.rest_url}/api/v1/bullet-public") as r:
            assert r.status == 405, "the token endpoint wants POST"
    doc = json.loads((KUCOIN / "bullet_public_response_doc.jsonl").read_text())
    assert shape(ours) == shape(doc)
    (instance,) = ours["data"]["instanceServers"]
    assert instance["endpoint"] == f"{server.ws_url}/endpoint", "the simulator's own WebSocket"
    assert (instance["pingInterval"], instance["pingTimeout"]) == (18000, 10000)
    assert server.rest_url != server.ws_url.replace("ws:", "http:"), "REST has its own listener"


async def test_frames_have_the_fields_and_types_of_real_ones(server: SimServer) -> None:
    transport, client = await connect(server)
    for rid, prefix in enumerate(("/market/match", "/market/ticker", "/market/level2")):
        subscribe(transport, rid, f"{prefix}:BTC-USDT,ETH-USDT", privateChannel=False)

    def levels(side: str) -> list[dict[str, Any]]:
        return [m for m in data_frames(client, "/market/level2") if m["data"]["changes"][side]]

    await until(
        lambda: (
            data_frames(client, "/market/match")
            and data_frames(client, "/market/ticker")
            and levels("asks")
            and levels("bids")
        ),
        15,
        "every kind, and book changes on both sides",
    )
    for name, prefix in (
        ("match_real.jsonl", "/market/match"),
        ("ticker_real.jsonl", "/market/ticker"),
    ):
        real = json.loads(frames(KUCOIN / name)[0])
        ours = data_frames(client, prefix)[0]
        assert shape(ours) == shape(real), name
    # Real updates change one side each: take the shape of each side from an update that has it
    real = [json.loads(f) for f in frames(KUCOIN / "level2_update_real.jsonl")]

    def merged(updates: list[dict[str, Any]]) -> Any:
        out = {}
        for side in ("asks", "bids"):
            full = shape(next(m for m in updates if m["data"]["changes"][side]))
            out[side] = full["data"]["changes"][side]
        full["data"]["changes"] = out
        return full

    want = merged(real)
    # `time` (ms) came in 2022, after the 2021 recording; the documented example has it
    doc = json.loads(frames(KUCOIN / "level2_update_doc.jsonl")[0])
    want["data"]["time"] = shape(doc["data"]["time"])
    assert merged(data_frames(client, "/market/level2")) == want
    assert {m["subject"] for m in of_type(client, "message")} == {
        "trade.l3match",
        "trade.ticker",
        "trade.l2update",
    }
    transport.disconnect()


async def test_rest_snapshot_and_symbols(server: SimServer) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{server.rest_url}/api/v1/market/orderbook/level2_20"
        async with http.get(url, params={"symbol": "BTC-USDT"}) as r:
            ours = await r.json()
        async with http.get(url, params={"symbol": "NOPE-USDT"}) as r:
            assert r.status == 400 and (await r.json())["code"] != "200000"
        async with http.get(f"{server.rest_url}/api/v2/symbols") as r:
            symbols = (await r.json())["data"]
    real = json.loads((KUCOIN / "level2_snapshot_rest_BCHSV-USDT_real.json").read_text())
    assert shape(ours) == shape(real)
    assert len(ours["data"]["bids"]) == 20 and len(ours["data"]["asks"]) == 20
    btc = next(s for s in symbols if s["symbol"] == "BTC-USDT")
    assert (btc["baseCurrency"], btc["quoteCurrency"]) == ("BTC", "USDT")
    assert (btc["priceIncrement"], btc["baseIncrement"]) == ("0.01", "0.00001")


async def test_sequences_are_consistent_with_the_snapshot_and_the_book() -> None:
    """Snapshot + every level2 update after it, applied with Decimals, is the simulator's book;
    updates chain without a gap; each change's sequence lies inside its update's range."""
    sim = KucoinSim()
    async with SimServer(sim, rate=300) as srv:
        transport, client = await connect(srv)
        subscribe(transport, 1, "/market/level2:ETH-USDT")
        await until(lambda: len(data_frames(client, "/market/level2")) >= 5, 10, "updates")
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{srv.rest_url}/api/v1/market/orderbook/level2_100", params={"symbol": "ETH-USDT"}
            ) as r,
        ):
            snap = (await r.json())["data"]
        await until(lambda: len(data_frames(client, "/market/level2")) >= 60, 10, "more")
        srv.paused_market = True
        await until(
            lambda: (
                data_frames(client, "/market/level2")[-1]["data"]["sequenceEnd"]
                == sim.symbols["ETH-USDT"].update_id
            ),
            5,
            "the last update",
        )
        transport.disconnect()
    books = [{Decimal(p): Decimal(q) for p, q in snap[side]} for side in ("bids", "asks")]
    last = int(snap["sequence"])
    for m in data_frames(client, "/market/level2"):
        d = m["data"]
        if d["sequenceEnd"] <= last:
            continue
        assert d["sequenceStart"] == last + 1
        for book, side in zip(books, ("bids", "asks")):
            for p, q, seq in d["changes"][side]:
                assert d["sequenceStart"] <= int(seq) <= d["sequenceEnd"]
                if Decimal(q):
                    book[Decimal(p)] = Decimal(q)
                else:
                    book.pop(Decimal(p), None)
        last = d["sequenceEnd"]
    want = sim.control(["book"], {"symbol": "ETH-USDT"})
    assert last == want["update_id"]
    for book, side in zip(books, ("bids", "asks")):
        assert book == {Decimal(p): Decimal(q) for p, q in want[side]}


async def test_welcome_acks_pongs_and_errors(server: SimServer) -> None:
    transport, client = await connect(server, "conn-7")
    subscribe(transport, 1, "/market/match:BTC-USDT")
    send(transport, {"id": "p1", "type": "ping"})
    subscribe(transport, 2, "/market/match:ETH-UrSDT")
    subscribe(transport, 3, "/market/klines:BTC-USDT")
    send(
        transport,
        {"id": 4, "type": "unsubscribe", "topic": "/market/match:BTC-USDT", "response": True},
    )
    send(transport, {"id": 5, "type": "dance"})
    send(transport, {"id": 6, "type": "subscribe", "topic": "/market/ticker:BTC-USDT"})
    transport.send(picows.WSMsgType.TEXT, b"{not json")

    def answers() -> list[dict[str, Any]]:
        return [m for m in client.json() if m["type"] != "message"]

    await until(lambda: len(answers()) >= 8, 5, "answers")
    got = answers()
    assert got[:7] == [
        {"id": "conn-7", "type": "welcome"},
        {"id": "1", "type": "ack"},
        {"id": "p1", "type": "pong"},
        {
            "id": 2,
            "type": "error",
            "code": 404,
            "data": "topic /market/match:ETH-UrSDT is not found",
        },
        {
            "id": 3,
            "type": "error",
            "code": 404,
            "data": "topic /market/klines:BTC-USDT is not found",
        },
        {"id": "4", "type": "ack"},
        {"id": 5, "type": "error", "code": 415, "data": "command type is invalid"},
    ]
    assert got[7]["type"] == "error" and got[7]["id"] == "conn-7", "no ack without `response`"
    assert len(got) == 8
    transport.disconnect()


async def test_unknown_and_expired_tokens_are_refused() -> None:
    sim = KucoinSim(token_ttl=0.2)
    async with SimServer(sim, rate=0) as srv:
        url = await token_url(srv)
        _, refused = await RawClient.connect(url.replace("token=", "token=forged"))
        await until(lambda: refused.closed, 5, "the close")
        assert refused.json() == [
            {"id": "c1", "type": "error", "code": 401, "data": "token is invalid"}
        ]
        await until(lambda: min(sim.tokens.values()) <= time.monotonic(), 5, "the token's expiry")
        _, expired = await RawClient.connect(url)
        await until(lambda: expired.closed, 5, "the close")
        assert expired.json()[0]["data"] == "token is expired"
        transport, _fresh = await connect(srv)  # a new token works
        assert sim.refused == 2 and len(sim.tokens_used) == 1
        transport.disconnect()


async def test_tokens_can_be_expired_on_demand(server: SimServer) -> None:
    url = await token_url(server)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.rest_url}/_sim/tokens/expire") as r,
    ):
        assert (await r.json())["expired"] == 1
    _, client = await RawClient.connect(url)
    await until(lambda: client.closed, 5, "the close")
    assert client.json()[0]["code"] == 401


async def test_a_client_that_stops_pinging_is_closed() -> None:
    sim = KucoinSim(ping_interval_ms=100, ping_timeout_ms=100)
    async with SimServer(sim, rate=0) as srv:
        _quiet_t, quiet = await connect(srv, "quiet")
        busy_t, busy = await connect(srv, "busy")
        n = 0

        def ping_and_check() -> bool:
            nonlocal n
            n += 1
            send(busy_t, {"id": str(n), "type": "ping"})
            return quiet.closed

        await until(ping_and_check, 5, "the silent client to be closed")
        assert quiet.json()[-1] == {
            "id": "quiet",
            "type": "error",
            "code": 400,
            "data": "ping timeout",
        }
        assert not busy.closed and of_type(busy, "pong")
        busy_t.disconnect()


async def test_more_than_100_topics_per_request_is_refused(server: SimServer) -> None:
    sim = server.venue
    transport, client = await connect(server)
    subscribe(transport, 9, "/market/match:" + ",".join(["BTC-USDT"] * 101))
    await until(lambda: of_type(client, "error"), 5, "the answer")
    (err,) = of_type(client, "error")
    assert (err["id"], err["code"]) == (9, 509)
    assert err["data"] == "exceed max subscription count limitation of 100 per time"
    assert sim.violations == {"topics_per_request": 1}  # type: ignore[attr-defined]
    transport.disconnect()


async def test_each_symbol_of_a_topic_counts_against_the_connection_limit() -> None:
    sim = KucoinSim(max_topics=3)
    async with SimServer(sim, rate=0) as srv:
        transport, client = await connect(srv)
        subscribe(transport, 1, "/market/match:BTC-USDT,ETH-USDT")
        subscribe(transport, 2, "/market/level2:BTC-USDT,ETH-USDT")
        subscribe(transport, 3, "/market/level2:BTC-USDT")
        await until(lambda: len(client.frames) >= 4, 5, "answers")
        ack, err, ack3 = client.json()[1:4]
        assert ack == {"id": "1", "type": "ack"} and ack3 == {"id": "3", "type": "ack"}
        assert (err["id"], err["code"]) == (2, 509)
        assert err["data"] == "exceed max subscription count limitation of 3 per session"
        assert sim.violations == {"topics_per_connection": 1}
        transport.disconnect()


async def test_more_than_100_messages_in_10_seconds_closes_the_connection() -> None:
    sim = KucoinSim()
    async with SimServer(sim, rate=0) as srv:
        transport, client = await connect(srv)
        for i in range(101):
            send(transport, {"id": str(i), "type": "ping"})
        await until(lambda: client.closed, 5, "the venue to close the connection")
        assert len(of_type(client, "pong")) == 100
        assert of_type(client, "error")[-1]["data"] == "exceed max permits per second"
        assert sim.violations == {"messages_per_10s": 1}


async def test_a_message_before_the_welcome_is_a_violation() -> None:
    sim = KucoinSim(welcome_delay=0.3)
    async with SimServer(sim, rate=0) as srv:
        transport, client = await RawClient.connect(await token_url(srv))
        send(transport, {"id": "early", "type": "ping"})
        await until(lambda: of_type(client, "welcome"), 5, "the welcome")
        assert sim.violations == {"before_welcome": 1}
        transport.disconnect()


async def test_skip_leaves_a_sequence_gap_and_shutdown_has_no_notice() -> None:
    sim = KucoinSim()
    async with SimServer(sim, rate=200) as srv:
        transport, client = await connect(srv)
        subscribe(transport, 1, "/market/level2:BTC-USDT")
        await until(lambda: data_frames(client, "/market/level2"), 10, "an update")
        sim.skip(3)
        n = len(data_frames(client, "/market/level2"))
        await until(lambda: len(data_frames(client, "/market/level2")) > n + 1, 10, "more")
        ups = [m["data"] for m in data_frames(client, "/market/level2")]
        gaps = [b["sequenceStart"] - a["sequenceEnd"] - 1 for a, b in itertools.pairwise(ups)]
        assert sorted(set(gaps)) == [0, 3] and gaps.count(3) == 1
        assert sim.shutdown_notice() is None
        transport.disconnect()


@pytest.mark.parametrize(
    "kind", ["truncated", "invalid_utf8", "oversize", "unknown_type", "wrong_types"]
)
def test_malformed_frames_are_bad_in_the_named_way(kind: str) -> None:
    frame = KucoinSim().malformed(kind)
    if kind == "invalid_utf8":
        with pytest.raises(UnicodeDecodeError):
            frame.decode()
        return
    if kind == "truncated":
        with pytest.raises(json.JSONDecodeError):
            json.loads(frame)
        return
    msg = json.loads(frame)
    if kind == "oversize":
        assert len(frame) > 2 << 20
    elif kind == "unknown_type":
        assert msg["topic"].startswith("/market/mystery:")
    else:
        assert msg["topic"] == "/market/match:BTC-USDT" and msg["data"]["sequence"] is True
