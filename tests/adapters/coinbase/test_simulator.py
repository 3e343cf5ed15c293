"""The Coinbase simulator speaks Advanced Trade: frames shaped like the real captures, one
sequence per connection, cumulative acks and error frames, the subscribe deadline, the limits."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import picows
import pytest

from adapters.coinbase import VENUE
from adapters.coinbase.simulator import CoinbaseSim
from adapters.simkit import SimServer
from tests.e2e.harness import until
from tests.support import FIXTURES, RawClient, frames, shape

AT = FIXTURES / "coinbase" / "advanced_trade"


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(CoinbaseSim(), rate=400) as srv:
        yield srv


def send(transport: picows.WSTransport, obj: object) -> None:
    transport.send(picows.WSMsgType.TEXT, json.dumps(obj).encode())


def subscribe(
    transport: picows.WSTransport, channel: str, *products: str, kind: str = "subscribe"
) -> None:
    send(transport, {"type": kind, "product_ids": list(products), "channel": channel})


def kind_of(msg: dict[str, Any]) -> tuple[str, str]:
    events = msg.get("events") or [{}]
    return msg.get("channel", msg.get("type", "?")), events[0].get("type", "-")


def real(path_name: str, index: int = 0) -> dict[str, Any]:
    return dict(json.loads(frames(AT / path_name)[index]))


REAL = {
    ("l2_data", "snapshot"): "l2_data_snapshot_ETH-USD_real.jsonl",
    ("l2_data", "update"): "l2_data_update_real.jsonl",
    ("market_trades", "snapshot"): "market_trades_snapshot_real.jsonl",
    ("market_trades", "update"): "market_trades_update_real.jsonl",
    ("ticker", "snapshot"): "ticker_real.jsonl",
    ("ticker", "update"): "ticker_real.jsonl",
    ("heartbeats", "-"): "heartbeats_real.jsonl",
    ("subscriptions", "-"): "subscriptions_ack_real.jsonl",
}


def real_frame(key: tuple[str, str]) -> dict[str, Any]:
    for f in frames(AT / REAL[key]):
        msg = json.loads(f)
        if kind_of(msg) == key:
            return dict(msg)
    raise AssertionError(key)


async def test_frames_have_the_fields_and_types_of_real_ones(server: SimServer) -> None:
    transport, client = await RawClient.connect(server.ws_url)
    for channel in ("heartbeats", "level2", "market_trades", "ticker"):
        subscribe(transport, channel, "BTC-USD")

    def seen() -> list[tuple[str, str]]:
        return [kind_of(m) for m in client.json()]

    await until(lambda: set(REAL) <= set(seen()), 10, "every kind")
    assert seen().count(("subscriptions", "-")) == 4
    for key in REAL:
        ours = [m for m in client.json() if kind_of(m) == key][-1]
        want = real_frame(key)
        if key[0] == "subscriptions":  # the recording also subscribed candles
            want = real("subscriptions_ack_real.jsonl", 4)
            del want["events"][0]["subscriptions"]["candles"]
        assert shape(ours) == shape(want), key
        assert list(ours) == ["channel", "timestamp", "sequence_num", "events"] == list(want)
    transport.disconnect()


async def test_one_sequence_per_connection_across_all_channels(server: SimServer) -> None:
    connections = [await RawClient.connect(server.ws_url) for _ in range(2)]
    for transport, _ in connections:
        subscribe(transport, "heartbeats")
        subscribe(transport, "level2", "BTC-USD", "ETH-USD")
        subscribe(transport, "market_trades", "BTC-USD")
    await until(lambda: all(len(c.frames) > 50 for _, c in connections), 10, "traffic")
    for transport, client in connections:
        seqs = [m["sequence_num"] for m in client.json()]
        assert seqs == list(range(len(seqs)))
        assert len({m["channel"] for m in client.json()}) >= 4
        transport.disconnect()


async def test_skip_makes_the_next_frame_jump(server: SimServer) -> None:
    transport, client = await RawClient.connect(server.ws_url)
    subscribe(transport, "market_trades", "BTC-USD", "ETH-USD", "SOL-USD")
    await until(lambda: len(client.frames) > 5, 10, "trades")
    server.skip(3)
    before = len(client.frames)
    await until(lambda: len(client.frames) > before + 2, 10, "more trades")
    seqs = [m["sequence_num"] for m in client.json()]
    jumps = [b - a for a, b in itertools.pairwise(seqs) if b != a + 1]
    assert jumps == [4]
    transport.disconnect()


async def test_acks_are_cumulative_and_errors_say_why() -> None:
    sim = CoinbaseSim(enforce_limits=False)  # nine messages at once
    async with SimServer(sim, rate=0) as srv:
        transport, client = await RawClient.connect(srv.ws_url)
        subscribe(transport, "heartbeats")
        subscribe(transport, "ticker", "BTC-USD", "ETH-USD")
        subscribe(transport, "ticker", "ETH-USD", kind="unsubscribe")
        send(transport, {"type": "subscribe", "product_ids": ["NOPE-USD"], "channel": "ticker"})
        send(transport, {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "candles"})
        send(transport, {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["level2"]})
        send(transport, {"type": "hello"})
        transport.send(picows.WSMsgType.TEXT, b"{not json")
        await until(lambda: len(client.frames) >= 9, 5, "answers")
        got = client.json()
        acks = [m["events"][0]["subscriptions"] for m in got if m.get("channel") == "subscriptions"]
        assert acks == [
            {"heartbeats": ["heartbeats"]},
            {"heartbeats": ["heartbeats"], "ticker": ["BTC-USD", "ETH-USD"]},
            {"heartbeats": ["heartbeats"], "ticker": ["BTC-USD"]},
        ]
        kinds = [kind_of(m) for m in got]
        assert kinds[:4] == [
            ("subscriptions", "-"),
            ("ticker", "snapshot"),
            ("ticker", "snapshot"),
            ("subscriptions", "-"),
        ], "the snapshots come before the ack, as recorded"
        refusals = [m for m in got if m.get("type") == "error"]
        assert [sorted(e) for e in refusals] == [["message", "type"]] * 5
        assert "NOPE-USD" in refusals[0]["message"] and "candles" in refusals[1]["message"]
        sim.reject_next(1)
        subscribe(transport, "level2", "BTC-USD")

        def errors() -> list[dict[str, Any]]:
            return [m for m in client.json() if m.get("type") == "error"]

        await until(lambda: len(errors()) == 6, 5, "the rejection")
        assert errors()[-1] == {"type": "error", "message": "Failed to subscribe"}
        transport.disconnect()


async def test_a_connection_that_does_not_subscribe_in_time_is_closed() -> None:
    assert CoinbaseSim().subscribe_deadline == 5.0
    sim = CoinbaseSim(subscribe_deadline=0.3)
    async with SimServer(sim, rate=0) as srv:
        _idle, idle_client = await RawClient.connect(srv.ws_url)
        busy, busy_client = await RawClient.connect(srv.ws_url)
        subscribe(busy, "heartbeats")
        await until(lambda: idle_client.closed, 5, "the idle connection to be closed")
        assert not busy_client.closed
        assert sim.violations == {"subscribe_deadline": 1}
        busy.disconnect()


async def test_more_than_eight_messages_a_second_per_address_closes_the_connection() -> None:
    sim = CoinbaseSim()
    async with SimServer(sim, rate=0) as srv:
        (t1, c1), (t2, c2) = [await RawClient.connect(srv.ws_url) for _ in range(2)]
        for _i in range(5):  # two connections, one address: 10 messages
            subscribe(t1, "ticker", "BTC-USD")
            subscribe(t2, "ticker", "ETH-USD")
        await until(lambda: c1.closed or c2.closed, 5, "the venue to close a connection")
        assert sim.violations["messages_per_second"] >= 1


async def test_more_than_thirty_level2_products_on_one_connection_is_refused() -> None:
    sim = CoinbaseSim(extra_symbols=40, enforce_limits=False)
    async with SimServer(sim, rate=0) as srv:
        transport, client = await RawClient.connect(srv.ws_url)
        products = [f"S{i:04d}-USD" for i in range(31)]
        subscribe(transport, "level2", *products[:30])
        subscribe(transport, "level2", products[30])
        subscribe(transport, "market_trades", *products)  # other channels have no such cap
        await until(lambda: any(m.get("type") == "error" for m in client.json()), 5, "refusal")
        await until(
            lambda: sum(m.get("channel") == "subscriptions" for m in client.json()) == 2, 5, "acks"
        )
        errors = [m for m in client.json() if m.get("type") == "error"]
        assert errors == [
            {"type": "error", "message": "too many L2 streams requested in a single session"}
        ]
        assert sim.violations == {"level2_per_connection": 1}
        assert not client.closed, "the connection stays open, as observed"
        transport.disconnect()


async def test_more_than_eight_connections_a_second_are_refused() -> None:
    sim = CoinbaseSim()
    async with SimServer(sim, rate=0) as srv:
        opened, refused = [], 0
        while not refused and len(opened) < 100:  # nine within a second, however slow we are
            try:
                opened.append(await RawClient.connect(srv.ws_url))
            except picows.WSError:
                refused += 1
        assert refused == 1 and sim.violations == {"connections_per_second": 1}
        assert len(opened) >= 8
        for transport, _ in opened:
            transport.disconnect()


async def test_heartbeats_every_second_with_a_counter_and_the_heartbeat_faults(
    server: SimServer,
) -> None:
    transport, client = await RawClient.connect(server.ws_url)
    subscribe(transport, "heartbeats")

    def beats() -> list[dict[str, Any]]:
        return [m for m in client.json() if m.get("channel") == "heartbeats"]

    await until(lambda: len(beats()) >= 2, 5, "two heartbeats")
    counters = [m["events"][0]["heartbeat_counter"] for m in beats()]
    assert counters[1] == counters[0] + 1
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.rest_url}/_sim/heartbeat", params={"skip": "2"}) as r:
            assert r.status == 200
        await until(lambda: len(beats()) >= 3, 5, "a third heartbeat")
        assert beats()[2]["events"][0]["heartbeat_counter"] == counters[1] + 3
        async with http.get(f"{server.rest_url}/_sim/heartbeat", params={"lose": "1"}) as r:
            assert r.status == 200
        await until(lambda: len(beats()) >= 4, 5, "a heartbeat after the lost one")
    b3, b4 = beats()[2:4]
    assert b4["events"][0]["heartbeat_counter"] == b3["events"][0]["heartbeat_counter"] + 2
    seqs = [m["sequence_num"] for m in client.json()]
    assert [b - a for a, b in itertools.pairwise(seqs) if b != a + 1] == [2], (
        "its number is used up"
    )
    transport.disconnect()


async def test_rest_products_and_the_adapter_agree(server: SimServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.rest_url}/api/v3/brokerage/market/products") as r:
            body = await r.read()
        async with http.get(f"{server.rest_url}/api/v3/brokerage/market/products/ETH-USD") as r:
            eth = await r.json()
        async with http.get(f"{server.rest_url}/api/v3/brokerage/market/products/NOPE") as r:
            assert r.status == 404
    instruments = {i.venue_symbol: i for i in VENUE.parse_instruments(body)}
    assert set(instruments) == set(server.venue.symbols)  # type: ignore[attr-defined]
    btc = instruments["BTC-USD"]
    assert (btc.symbol, btc.price_decimals, btc.size_decimals) == ("BTC-USD", 2, 8)
    assert (eth["quote_increment"], eth["base_increment"]) == ("0.01", "0.00000001")
    assert json.loads(body)["num_products"] == len(instruments)


def test_malformed_frames_and_no_shutdown_notice() -> None:
    sim = CoinbaseSim()
    for kind in ("truncated", "invalid_utf8", "unknown_type", "wrong_types"):
        assert len(sim.malformed(kind)) < 1000
    assert len(sim.malformed("oversize")) > VENUE.spec.limits.max_message_bytes  # type: ignore[operator]
    assert sim.shutdown_notice() is None
    with pytest.raises(ValueError, match="nope"):
        sim.malformed("nope")
