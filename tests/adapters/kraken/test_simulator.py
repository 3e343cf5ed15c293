"""The Kraken simulator speaks v2: frames with the fields and JSON types of the real captures,
checksums computed the venue's way, one answer per pair, errors with their text, ping/pong,
the `skip` and `corrupt` faults, the AssetPairs instruments."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import aiohttp
import picows
import pytest

from adapters.kraken import VENUE
from adapters.kraken.simulator import KrakenSim
from adapters.simkit import SimServer
from tests.adapters.kraken.test_parse import TextBook, text_json
from tests.e2e.harness import until
from tests.support import FIXTURES, RawClient, frames, shape

KR = FIXTURES / "kraken"


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(KrakenSim(), rate=400) as srv:
        yield srv


def send(transport: picows.WSTransport, obj: object) -> None:
    transport.send(picows.WSMsgType.TEXT, json.dumps(obj).encode())


def subscribe(
    transport: picows.WSTransport,
    channel: str,
    *symbols: str,
    method: str = "subscribe",
    req_id: int | None = None,
    **params: Any,
) -> None:
    msg: dict[str, Any] = {
        "method": method,
        "params": {"channel": channel, "symbol": list(symbols), **params},
    }
    if req_id is not None:
        msg["req_id"] = req_id
    send(transport, msg)


def kind_of(msg: dict[str, Any]) -> tuple[str, str]:
    if "channel" in msg:
        return msg["channel"], msg.get("type", "-")
    return msg.get("method", "?"), "ok" if msg.get("success", True) else "error"


def real(name: str, index: int = 0) -> dict[str, Any]:
    return dict(json.loads(frames(KR / name)[index]))


REAL = {
    ("status", "update"): real("status_observed.jsonl"),
    ("heartbeat", "-"): real("heartbeat.jsonl"),
    ("book", "snapshot"): real("book_snapshot_real.jsonl"),
    ("book", "update"): real("book_update_real.jsonl", 2),  # a bid and an ask... see below
    ("trade", "snapshot"): real("trade_observed.jsonl"),
    ("ticker", "snapshot"): real("ticker_observed.jsonl"),
    ("ticker", "update"): real("ticker_observed.jsonl"),  # the 2026 fields
}


def level_shapes(msg: dict[str, Any]) -> set[str]:
    d = msg["data"][0]
    return {json.dumps(shape(lv)) for lv in d["bids"] + d["asks"]}


async def test_frames_have_the_fields_and_types_of_real_ones(server: SimServer) -> None:
    transport, client = await RawClient.connect(server.ws_url + "/v2")
    subscribe(transport, "book", "BTC/USD", depth=10, snapshot=True)
    subscribe(transport, "trade", "BTC/USD", snapshot=True)
    subscribe(transport, "ticker", "BTC/USD")

    def seen() -> set[tuple[str, str]]:
        return {kind_of(m) for m in client.json()}

    await until(lambda: set(REAL) | {("trade", "update")} <= seen(), 10, "every kind")
    for key, want in REAL.items():
        ours = next(m for m in client.json() if kind_of(m) == key)
        assert list(ours) == list(want), key
        if key[0] == "book":
            assert list(ours["data"][0]) == list(want["data"][0])
            assert (
                level_shapes(ours) == level_shapes(want) == {'{"price": "float", "qty": "float"}'}
            )
            assert type(ours["data"][0]["checksum"]) is int
        elif key[0] != "heartbeat":
            assert shape(ours) == shape(want), key
    trade_update = next(m for m in client.json() if kind_of(m) == ("trade", "update"))
    assert shape(trade_update) == shape(real("trade_observed.jsonl"))
    # answers: the observed ack shapes (sent without req_id, as those were)
    acks = [m for m in client.json() if kind_of(m) == ("subscribe", "ok")]
    assert [a["result"]["channel"] for a in acks] == ["book", "trade", "ticker"]
    assert shape(acks[0]) == shape(real("subscribe_ack_observed.jsonl", 0))
    assert list(acks[0]["result"]) == list(real("subscribe_ack_observed.jsonl", 0)["result"])
    assert shape(acks[2]) == shape(real("subscribe_ack_observed.jsonl", 1))
    assert list(acks[2]["result"]) == list(real("subscribe_ack_observed.jsonl", 1)["result"])
    status = client.json()[0]
    assert kind_of(status) == ("status", "update"), "the status frame comes first"
    assert status["data"][0]["system"] == "online"
    transport.disconnect()


async def test_errors_pongs_and_answers_per_pair() -> None:
    async with SimServer(KrakenSim(enforce_limits=False), rate=0) as srv:
        transport, client = await RawClient.connect(srv.ws_url)
        subscribe(transport, "trade", "NOPE/USD")
        send(transport, {"method": "ping", "req_id": 101})
        subscribe(transport, "trade", "BTC/USD", "ETH/USD", req_id=7, snapshot=True)
        subscribe(transport, "trade", "ETH/USD", method="unsubscribe", req_id=8)
        subscribe(transport, "trade", "ETH/USD", method="unsubscribe", req_id=9)

        def answers() -> list[dict[str, Any]]:
            return [m for m in client.json() if m.get("channel") != "heartbeat"]

        await until(lambda: len(answers()) >= 9, 10, "answers")
        srv.venue.reject_next(1)
        subscribe(transport, "ticker", "SOL/USD", req_id=10)
        await until(lambda: len(answers()) >= 10, 10, "the refusal")
        status, err, pong, ack1, snap1, ack2, snap2, unsub, notfound, rejected = answers()
        assert status["channel"] == "status"
        assert shape(err) == shape(real("error_observed.jsonl"))
        assert list(err) == list(real("error_observed.jsonl"))
        assert err["error"] == "Currency pair not supported NOPE/USD"
        assert shape(pong) == shape(real("ping_pong.jsonl", 1)) and pong["req_id"] == 101
        assert (ack1["req_id"], ack1["result"]["symbol"], snap1["channel"]) == (
            7,
            "BTC/USD",
            "trade",
        )
        assert (ack2["req_id"], ack2["result"]["symbol"], snap2["type"]) == (
            7,
            "ETH/USD",
            "snapshot",
        )
        assert (unsub["method"], unsub["req_id"], unsub["success"]) == ("unsubscribe", 8, True)
        assert unsub["result"] == {"channel": "trade", "symbol": "ETH/USD"}
        assert (notfound["req_id"], notfound["success"], notfound["error"]) == (
            9,
            False,
            "Subscription Not Found",
        )
        assert (rejected["req_id"], rejected["error"]) == (
            10,
            "Currency pair not supported SOL/USD",
        )
        transport.disconnect()


async def test_the_message_limit_is_an_error_and_a_close() -> None:
    async with SimServer(KrakenSim(), rate=0) as srv:
        transport, client = await RawClient.connect(srv.ws_url)
        for i in range(11):
            send(transport, {"method": "ping", "req_id": i})
        await until(lambda: client.closed, 10, "the close")
        assert client.json()[-1] == {"error": "Exceeded msg rate"}
        assert srv.venue.violations == {"messages_per_second": 1}


class Follower:
    """A client's book from the simulator's frames, checked the venue's way on every one."""

    def __init__(self, depth: int) -> None:
        self.book = TextBook(depth)
        self.checked = 0  # book messages
        self.mismatches: list[int] = []  # their numbers

    def feed(self, frame: bytes) -> None:
        msg = text_json(frame)
        data = msg["data"][0]
        self.book.apply(data, msg["type"] == "snapshot")
        if self.book.checksum() != int(data["checksum"]):
            self.mismatches.append(self.checked)
        self.checked += 1


def sim_book(answer: dict[str, Any]) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return (
        {Decimal(p): Decimal(q) for p, q in answer["bids"]},
        {Decimal(p): Decimal(q) for p, q in answer["asks"]},
    )


async def book_of(srv: SimServer, symbol: str, depth: int) -> Any:
    async with aiohttp.ClientSession() as http:
        params = {"symbol": symbol, "depth": str(depth)}
        async with http.get(f"{srv.rest_url}/_sim/book", params=params) as resp:
            return await resp.json()


@pytest.mark.parametrize("depth", [10, 25])
async def test_every_checksum_is_the_venues_and_the_book_is_the_simulators(
    server: SimServer, depth: int
) -> None:
    transport, client = await RawClient.connect(server.ws_url)
    subscribe(transport, "book", "BTC/USD", "ETH/USD", depth=depth)
    follow = {s: Follower(depth) for s in ("BTC/USD", "ETH/USD")}

    def books() -> list[bytes]:
        return [f for f in client.frames if f.startswith(b'{"channel":"book"')]

    await until(lambda: len(books()) > 200, 20, "book traffic")
    server.paused_market = True  # no market event from now on: the book stays as it is
    want = {s: sim_book(await book_of(server, s, depth)) for s in follow}

    def caught_up() -> bool:
        for f in books()[sum(f.checked for f in follow.values()) :]:
            follow[json.loads(f)["data"][0]["symbol"]].feed(f)
        return all(fol.book.decimals() == want[s] for s, fol in follow.items())

    await until(caught_up, 10, "the client's books to equal the simulator's")
    for symbol, fol in follow.items():
        assert fol.mismatches == [], symbol
        sides = [len(side) for side in want[symbol]]
        # the market keeps 10 to 40 levels a side: depth 10 is always full
        assert all(n == depth for n in sides) if depth == 10 else all(n <= depth for n in sides)
    assert sum(f.checked for f in follow.values()) > 200
    transport.disconnect()


async def collect_mismatches(srv: SimServer, trigger: Any) -> tuple[Follower, int]:
    """The book messages' numbers whose checksum disagrees with a client's book, and the
    number of book messages before `trigger()`."""
    transport, client = await RawClient.connect(srv.ws_url)
    subscribe(transport, "book", "BTC/USD", depth=10)
    fol = Follower(10)

    def books() -> list[bytes]:
        return [f for f in client.frames if f.startswith(b'{"channel":"book"')]

    await until(lambda: len(books()) > 30, 10, "updates")
    await trigger()
    before = len(books())
    await until(lambda: len(books()) > before + 30, 10, "more updates")
    for f in books():
        fol.feed(f)
    transport.disconnect()
    return fol, before


async def test_skip_loses_an_update_that_the_next_checksum_shows(server: SimServer) -> None:
    async def trigger() -> None:
        server.skip(1)

    fol, before = await collect_mismatches(server, trigger)
    assert fol.mismatches and fol.mismatches[0] >= before, "none before the loss"
    assert server.venue.dropped_updates >= 1


def test_a_loss_the_market_undoes_is_counted_as_healed_and_not_shown() -> None:
    # The client lost the update that took its book from `have` to `moved`; the market then
    # goes back to `have`: nothing is left to show, so the update is sent and counted healed.
    sim = KrakenSim()
    sent: list[bytes] = []
    client = SimpleNamespace(state={"drop": {}, "lag": {}}, send=sent.append)
    have = ([(100.0, 1.0)], [(101.0, 2.0)])
    moved = ([(100.0, 1.5)], [(101.0, 2.0)])
    client.state["lag"]["BTC/USD"] = have  # where a skip left it
    levels = ([(100.0, 1.0)], [])  # what the market did: back to `have`
    sim._send_update(client, "BTC/USD", 10, moved, have, levels, b"frame")  # type: ignore[arg-type]
    assert (sent, sim.losses_healed, client.state["lag"]) == ([b"frame"], 1, {})
    assert sim.stats()["losses_healed"] == 1


async def test_corrupt_sends_one_level_one_unit_off(server: SimServer) -> None:
    async def trigger() -> None:
        async with aiohttp.ClientSession() as http:
            url = f"{server.rest_url}/_sim/corrupt"
            async with http.get(url, params={"symbol": "BTC/USD"}) as resp:
                assert (await resp.json())["ok"] is True

    fol, before = await collect_mismatches(server, trigger)
    assert fol.mismatches and fol.mismatches[0] >= before, "none before the fault"
    assert server.venue.corrupted == 1


async def test_asset_pairs_name_bitcoin_xbt_and_give_the_precision(server: SimServer) -> None:
    url = VENUE.instruments_url(server.rest_url)
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        body = await resp.read()
    answer = json.loads(body)
    assert answer["result"]["XBTUSD"]["wsname"] == "XBT/USD"
    insts = {i.venue_symbol: i for i in VENUE.parse_instruments(body)}
    assert set(insts) == {"BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "ETH/BTC"}
    btc = insts["BTC/USD"]
    assert (btc.symbol, btc.price_decimals, btc.size_decimals) == ("BTC-USD", 1, 8)


async def test_a_bbo_ticker_comes_with_every_change_of_the_best_bid_or_offer(
    server: SimServer,
) -> None:
    transport, client = await RawClient.connect(server.ws_url)
    subscribe(transport, "ticker", "BTC/USD", event_trigger="bbo", req_id=3)

    def tickers() -> list[dict[str, Any]]:
        return [m for m in client.json() if m.get("channel") == "ticker"]

    await until(lambda: len(tickers()) > 20, 10, "tickers")
    (ack,) = [m for m in client.json() if m.get("method") == "subscribe"]
    assert ack["result"]["event_trigger"] == "bbo" and ack["req_id"] == 3
    tops = [
        (t["data"][0]["bid"], t["data"][0]["bid_qty"], t["data"][0]["ask"], t["data"][0]["ask_qty"])
        for t in tickers()
    ]
    assert all(a != b for a, b in itertools.pairwise(tops)), "each one a change"
    transport.disconnect()
