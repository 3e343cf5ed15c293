"""The Bybit simulator speaks v5 public: frames with the fields and JSON types of the real
captures (spot and linear), acks and errors, pongs, limits, `u` continuity that the adapter's
own session follows to the simulator's book, and the `u=1` restart."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import picows
import pytest

from adapters.bybit import LINEAR_VENUE, VENUE
from adapters.bybit.simulator import BybitSim
from adapters.simkit import SimServer
from engine.records import Kind, format_decimal
from engine.streams import RouteTable, make_stream
from tests.e2e.harness import until
from tests.support import FIXTURES, Events, ListSink, RawClient, frames, shape

BY = FIXTURES / "bybit"
VENUES = {"spot": VENUE, "linear": LINEAR_VENUE}


@pytest.fixture(params=["spot", "linear"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[SimServer]:
    async with SimServer(BybitSim(category=request.param), rate=400) as srv:
        yield srv


def category(server: SimServer) -> str:
    return str(server.venue.category)  # type: ignore[attr-defined]


async def connect(server: SimServer) -> tuple[picows.WSTransport, RawClient]:
    return await RawClient.connect(f"{server.ws_url}/v5/public/{category(server)}")


def send(transport: picows.WSTransport, obj: object) -> None:
    transport.send(picows.WSMsgType.TEXT, json.dumps(obj).encode())


def real(name: str, index: int = 0, cat: str = "") -> dict[str, Any]:
    path = BY / cat / name if cat else BY / name
    return dict(json.loads(frames(path)[index]))


def of(client: RawClient, prefix: str, type_: str | None = None) -> list[dict[str, Any]]:
    return [
        m
        for m in client.json()
        if str(m.get("topic", "")).startswith(prefix) and (type_ is None or m["type"] == type_)
    ]


def both_sides(deltas: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A delta that changes both sides (an empty list has no item type to compare)."""
    return next((m for m in deltas if m["data"]["b"] and m["data"]["a"]), None)


async def test_frames_have_the_fields_and_types_of_real_ones(server: SimServer) -> None:
    cat = category(server)
    transport, client = await connect(server)
    topics = [f"{k}.BTCUSDT" for k in ("publicTrade", "orderbook.200", "orderbook.50")]
    send(transport, {"op": "subscribe", "args": topics})
    send(transport, {"op": "subscribe", "args": ["tickers.BTCUSDT", "orderbook.1.BTCUSDT"]})
    await until(lambda: both_sides(of(client, "orderbook.200", "delta")), 10, "deltas")
    await until(lambda: of(client, "publicTrade"), 10, "trades")
    await until(lambda: len(of(client, "orderbook.1")) >= 2, 10, "tops")
    acks = [m for m in client.json() if "op" in m]
    assert [shape(a) for a in acks] == [shape(real("subscribe_ack_real.jsonl", 0, cat))] * 2
    assert acks[0]["ret_msg"] == ("subscribe" if cat == "spot" else "")
    pairs = [
        (of(client, "orderbook.200", "snapshot")[0], real("orderbook_snapshot_real.jsonl", 0, cat)),
        (of(client, "orderbook.50", "snapshot")[0], real("orderbook_snapshot_real.jsonl", 0, cat)),
        (of(client, "orderbook.1")[-1], real("orderbook_snapshot_real.jsonl", 0, cat)),
        (
            both_sides(of(client, "orderbook.200", "delta")),
            real("orderbook_delta_real.jsonl", 0, cat),
        ),
        (of(client, "publicTrade")[-1], real("public_trade_real.jsonl", 0, cat)),
    ]
    for ours, want in pairs:
        assert shape(ours) == shape(want), ours["topic"]
        assert list(ours) == list(want), "the same key order (spot: ts before type)"
    ticker = of(client, "tickers", "snapshot")[0]
    want = real("tickers_real.jsonl", 0, cat)
    assert list(ticker) == list(want)
    fields = shape(want["data"])
    assert {k: v for k, v in shape(ticker["data"]).items()} == {
        k: fields[k] for k in ticker["data"]
    }, "a subset of the real fields, with their types"
    if cat == "spot":
        assert ticker["data"].keys() == want["data"].keys()
        trade = of(client, "publicTrade")[-1]["data"][0]
        assert trade["i"].isdigit(), "spot trade ids are numeric strings"
    else:
        assert {"bid1Price", "bid1Size", "ask1Price", "ask1Size"} <= ticker["data"].keys()
        await until(lambda: of(client, "tickers", "delta"), 10, "ticker deltas")
        delta = of(client, "tickers", "delta")[-1]
        assert list(delta) == list(real("tickers_real.jsonl", 3, cat))
    transport.disconnect()


async def test_acks_echo_req_id_errors_say_why_and_pings_get_the_categorys_pong(
    server: SimServer,
) -> None:
    cat = category(server)
    transport, client = await connect(server)
    send(transport, {"req_id": "7", "op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
    send(transport, {"req_id": "8", "op": "subscribe", "args": ["liquidations.BTCUSDT"]})
    send(transport, {"req_id": "9", "op": "unsubscribe", "args": ["publicTrade.BTCUSDT"]})
    send(transport, {"req_id": "100001", "op": "ping"})
    await until(lambda: len(client.frames) >= 4, 10, "answers")
    ok, bad, unsub, pong = client.json()[:4]
    assert (ok["success"], ok["req_id"], ok["op"]) == (True, "7", "subscribe")
    assert bad == {
        "success": False,
        "ret_msg": "error:handler not found,topic:liquidations.BTCUSDT",
        "conn_id": ok["conn_id"],
        "req_id": "8",
        "op": "subscribe",
    }
    assert shape(bad) == shape(real("error_observed.jsonl", 1))
    assert (unsub["success"], unsub["req_id"], unsub["op"]) == (True, "9", "unsubscribe")
    want = real("ping_pong_doc.jsonl", 1 if cat == "spot" else 2)
    assert list(pong) == list(want) and shape(pong) == shape(want)
    assert pong["ret_msg"] == "pong" and server.venue.pings == 1  # type: ignore[attr-defined]
    # the adapter's session reads every one of them
    events = Events()
    session = VENUES[cat].session(RouteTable(), ListSink(), events)
    for f in client.frames[:4]:
        session.on_message(f, 0)
    assert events.acks == [
        (7, True, None, "subscribe" if cat == "spot" else ""),
        (8, False, None, "error:handler not found,topic:liquidations.BTCUSDT"),
        (9, True, None, "unsubscribe" if cat == "spot" else ""),
    ]
    assert events.pongs == 1 and events.errors == []
    transport.disconnect()


async def test_limits_refuse_and_count(server: SimServer) -> None:
    cat = category(server)
    transport, client = await connect(server)
    many = [f"publicTrade.S{i:04d}USDT" for i in range(11)]
    server.venue.symbols.update(  # type: ignore[attr-defined]
        {s.rpartition(".")[2]: server.venue._order[0] for s in many}  # type: ignore[attr-defined]
    )
    send(transport, {"req_id": "1", "op": "subscribe", "args": many})
    await until(lambda: client.frames, 10, "an answer")
    (answer,) = client.json()
    if cat == "spot":
        assert (answer["success"], answer["ret_msg"]) == (False, "error:args size >10")
        assert server.venue.violations == {"args_per_request": 1}  # type: ignore[attr-defined]
    else:
        assert answer["success"] is True, "linear limits the characters of args, not their count"
    transport.disconnect()


def replay_session(cat: str, topics: list[str]):  # type: ignore[no-untyped-def]
    venue = VENUES[cat]
    sink, events, routes, requested = ListSink(), Events(), RouteTable(), []
    for sid, topic in enumerate(topics, 1):
        kind, _, symbol = topic.rpartition(".")
        ch = venue.spec.channel(kind)
        assert ch is not None
        routes.add(make_stream(venue, ch, symbol, sid, sink, requested.append))
    return venue.session(routes, sink, events), sink, events, routes, requested


async def quiesce(server: SimServer, client: RawClient) -> None:
    server.paused_market = True
    seen = [-1]

    def quiet() -> bool:  # no new frame since the last look (batched deltas flushed)
        before, seen[0] = seen[0], len(client.frames)
        return before == seen[0]

    await until(quiet, 10, "quiet")


def assert_book(server: SimServer, routes: RouteTable, sym: str) -> None:
    want = server.venue.control(["book"], {"symbol": sym})  # type: ignore[attr-defined]
    sync = routes.get(f"orderbook.200.{sym}").book
    info = server.venue.symbols[sym]  # type: ignore[attr-defined]

    def text(side: dict[float, float]) -> dict[str, str]:
        return {
            format_decimal(p, info.price_decimals): format_decimal(q, info.size_decimals)
            for p, q in side.items()
        }

    assert text(sync.book.bids) == dict(map(tuple, want["bids"]))
    assert text(sync.book.asks) == dict(map(tuple, want["asks"]))


async def test_the_adapter_follows_u_to_the_simulators_book_and_through_a_restart(
    server: SimServer,
) -> None:
    cat = category(server)
    transport, client = await connect(server)
    send(transport, {"op": "subscribe", "args": ["orderbook.200.ETHUSDT", "orderbook.1.ETHUSDT"]})
    await until(lambda: len(of(client, "orderbook.200", "delta")) >= 20, 10, "deltas")
    us = [m["data"]["u"] for m in of(client, "orderbook.200")]
    assert us == list(range(us[0], us[0] + len(us))), "u rises by one per message"
    assert server.venue.control(["restart"], {"symbol": "ETHUSDT"}) == {  # type: ignore[attr-defined]
        "ok": True,
        "restarted": 1,
    }
    await until(lambda: len(of(client, "orderbook.200", "delta")) >= 30, 10, "more deltas")
    after = [m for m in of(client, "orderbook.200") if m["data"]["u"] < us[0]]
    assert after[0]["type"] == "snapshot" and after[0]["data"]["u"] == 1
    assert [m["data"]["u"] for m in after] == list(range(1, len(after) + 1))
    session, sink, events, routes, requested = replay_session(
        cat, ["orderbook.200.ETHUSDT", "orderbook.1.ETHUSDT"]
    )
    await quiesce(server, client)
    for f in client.frames:
        session.on_message(f, 1)
    assert events.gaps == [] and sink.of(Kind.GAP) == [] and requested == []
    assert session.restarts == 1 and len(sink.of(Kind.SNAPSHOT_END)) == 1
    assert events.errors == [] and len(events.acks) == 1
    assert_book(server, routes, "ETHUSDT")
    bbo = sink.of(Kind.BBO)[-1]
    sync = routes.get("orderbook.200.ETHUSDT").book.book
    assert (bbo.price, bbo.ask_price) == (sync.best_bid(), sync.best_ask())
    transport.disconnect()


async def test_skip_makes_the_next_delta_skip_u(server: SimServer) -> None:
    transport, client = await connect(server)
    send(transport, {"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]})
    await until(lambda: len(of(client, "orderbook.50", "delta")) >= 3, 10, "deltas")
    server.skip(3)
    n = len(of(client, "orderbook.50"))
    await until(lambda: len(of(client, "orderbook.50")) >= n + 2, 10, "after the skip")
    us = [m["data"]["u"] for m in of(client, "orderbook.50")]
    steps = [b - a for a, b in itertools.pairwise(us)]
    assert sorted(steps)[-1] == 4 and steps.count(4) == 1 and set(steps) == {1, 4}
    transport.disconnect()


@pytest.mark.parametrize(
    "kind", ["truncated", "invalid_utf8", "oversize", "unknown_type", "wrong_types"]
)
def test_every_malformed_kind_is_one_parse_error_for_the_adapter(kind: str) -> None:
    sim = BybitSim()
    session, sink, events, _, _ = replay_session("spot", ["publicTrade.BTCUSDT"])
    frame = sim.malformed(kind)
    if kind == "oversize":
        assert len(frame) > 1 << 20  # the engine drops it before the session sees it
        return
    session.on_message(frame, 1)
    assert len(events.errors) == 1 and sink.records == []


async def test_instruments_info_gives_the_simulators_symbols(server: SimServer) -> None:
    cat = category(server)
    venue = VENUES[cat]
    async with (
        aiohttp.ClientSession() as http,
        http.get(venue.instruments_url(server.rest_url)) as resp,
    ):
        body = await resp.read()
    got = {i.symbol: (i.venue_symbol, i.price_decimals, i.size_decimals) for i in
           venue.parse_instruments(body)}  # fmt: skip
    assert got == {
        "BTC-USDT": ("BTCUSDT", 2, 5),
        "ETH-USDT": ("ETHUSDT", 2, 4),
        "SOL-USDT": ("SOLUSDT", 2, 3),
        "XRP-USDT": ("XRPUSDT", 4, 0),
        "ETH-BTC": ("ETHBTC", 5, 4),
    }


@pytest.mark.parametrize("cat", ["spot", "linear"])
@pytest.mark.parametrize("kind", ["publicTrade", "orderbook.1", "orderbook.200"])
def test_blast_frames_are_distinct_and_the_adapter_takes_every_one(cat: str, kind: str) -> None:
    from tests.bench.test_blast import split_frames

    sim = BybitSim(category=cat)
    topic = f"{kind}.BTCUSDT"
    stream = sim.blast_stream(topic)
    assert stream is not None and sim.blast_stream("tickers.BTCUSDT") is None
    session, sink, events, routes, requested = replay_session(cat, [topic])
    if kind == "orderbook.200":  # what the subscription started with
        session.on_message(sim._book(sim.symbols["BTCUSDT"], kind, "snapshot", 10**18), 1)
    rng = np.random.default_rng(1)
    msgs = []
    for _ in range(3):  # ids continue across chunks
        values = stream.fill(400, 1_786_310_816_618, rng)
        for f in split_frames(stream.templates[True].render(400, values).tobytes()):
            msgs.append(json.loads(f))
            session.on_message(f, 1)
    real_frame = real(
        {"publicTrade": "public_trade_real.jsonl"}.get(kind, "orderbook_snapshot_real.jsonl"),
        0,
        cat,
    )
    assert list(msgs[0]) == list(real_frame) and len(msgs) == 1200
    assert len({json.dumps(m, sort_keys=True) for m in msgs}) == 1200
    assert events.errors == [] and events.gaps == [] and requested == []
    if kind == "publicTrade":
        assert len(sink.of(Kind.TRADE)) == 1200
        ids = [int(m["data"][0]["i"].rpartition("-")[2]) for m in msgs]
        assert ids == sorted(set(ids))
    elif kind == "orderbook.1":
        assert len(sink.of(Kind.BBO)) == 1200
    else:
        assert routes.get(topic).book.counters.deltas == 1200 and not sink.of(Kind.GAP)
    if kind != "publicTrade":
        us = [m["data"]["u"] for m in msgs]
        assert us == list(range(us[0], us[0] + 1200))
