"""The OKX simulator speaks OKX: frames with the fields and JSON types of the real (and
documented) ones, acks and errors, text ping/pong, consistent seqId/prevSeqId and checksums,
and its faults (a skipped id, a corrupted level, checksum 0, the 64008 notice)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import picows
import pytest

from adapters.okx import VENUE
from adapters.okx.simulator import OkxSim
from adapters.okx.venue import checksum
from adapters.simkit import SimServer
from tests.e2e.harness import until
from tests.support import FIXTURES, RawClient, frames, shape

OKX = FIXTURES / "okx"


def doc(name: str, i: int = 0) -> dict[str, Any]:
    return dict(json.loads(frames(OKX / name)[i]))


def send(transport: picows.WSTransport, obj: object) -> None:
    transport.send(picows.WSMsgType.TEXT, json.dumps(obj).encode())


def subscribe(transport: picows.WSTransport, pairs: list[tuple[str, str]], **extra: Any) -> None:
    args = [{"channel": c, "instId": i} for c, i in pairs]
    send(transport, extra | {"op": "subscribe", "args": args})


def messages(client: RawClient) -> list[dict[str, Any]]:
    return [json.loads(f) for f in client.frames if f != b"pong"]


def pushes(client: RawClient, channel: str, action: str | None = None) -> list[dict[str, Any]]:
    return [
        m
        for m in messages(client)
        if "data" in m
        and m["arg"]["channel"] == channel
        and (action is None or m.get("action") == action)
    ]


async def rest(server: SimServer, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(server.rest_url + path) as r:
        assert r.status == 200
        return await r.json(content_type=None)


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(OkxSim(), rate=400) as srv:
        yield srv


async def connect(server: SimServer) -> tuple[Any, RawClient]:
    return await RawClient.connect(f"{server.ws_url}/ws/v5/public")


async def test_frames_have_the_fields_and_types_of_the_real_ones(server: SimServer) -> None:
    transport, client = await connect(server)
    channels = ("trades", "tickers", "bbo-tbt", "books", "books5")
    subscribe(transport, [(c, "BTC-USDT") for c in channels], id="1512")
    await until(
        lambda: all(pushes(client, c) for c in channels) and len(pushes(client, "books")) > 5,
        10,
        "a frame of every channel",
    )
    (trade, *_) = pushes(client, "trades")
    assert shape(trade) == shape(doc("trades_doc.jsonl"))
    assert shape(pushes(client, "tickers")[0]) == shape(doc("tickers_real.jsonl", 2))
    assert shape(pushes(client, "bbo-tbt")[0]) == shape(doc("books_doc.jsonl", 2))
    assert shape(pushes(client, "books5")[0]) == shape(doc("books_doc.jsonl", 3))
    (snapshot,) = pushes(client, "books", "snapshot")
    assert shape(snapshot) == shape(doc("books_doc.jsonl", 0))
    update = next(
        m for m in pushes(client, "books", "update") if m["data"][0]["bids"] + m["data"][0]["asks"]
    )
    want = doc("books_doc.jsonl", 1)
    assert update.keys() == want.keys() and update["data"][0].keys() == want["data"][0].keys()
    for key in ("ts", "checksum", "prevSeqId", "seqId"):
        assert type(update["data"][0][key]) is type(want["data"][0][key])
    levels = update["data"][0]["bids"] + update["data"][0]["asks"]
    assert levels and all(shape(lv) == ["str"] and len(lv) == 4 for lv in levels)
    acks = [m for m in messages(client) if m.get("event") == "subscribe"]
    assert [a["arg"]["channel"] for a in acks] == list(channels), "one ack per channel"
    assert all(shape(a) == shape(doc("subscribe_ack_doc.jsonl")) for a in acks)
    assert {a["id"] for a in acks} == {"1512"}
    transport.disconnect()


async def test_acks_without_id_like_the_recording_and_errors(server: SimServer) -> None:
    transport, client = await connect(server)
    subscribe(transport, [("tickers", "ETH-USDT")])
    send(
        transport, {"id": "7", "op": "subscribe", "args": [{"channel": "books", "instId": "NOPE"}]}
    )
    transport.send(picows.WSMsgType.TEXT, b'{"op": "subscribe", "argss":[]}')
    await until(lambda: len([m for m in messages(client) if "event" in m]) >= 3, 5, "answers")
    server.venue.reject_next(1)
    subscribe(transport, [("trades", "ETH-USDT")], id="8")
    send(
        transport,
        {"id": "9", "op": "unsubscribe", "args": [{"channel": "tickers", "instId": "ETH-USDT"}]},
    )
    await until(lambda: len([m for m in messages(client) if "event" in m]) >= 5, 5, "answers")
    answers = [m for m in messages(client) if "event" in m]
    first = answers[0]
    assert shape(first) == shape(doc("subscribe_ack_real.jsonl")) | {"connId": "str"}
    errors = answers[1:4]
    assert all(shape(e).keys() <= shape(doc("error_doc.jsonl")).keys() for e in errors)
    assert [(e.get("id"), e["code"]) for e in errors] == [
        ("7", "60018"),
        (None, "60012"),
        ("8", "60012"),
    ]
    assert errors[0]["msg"] == "Wrong URL or channel:books,instId:NOPE doesn't exist."
    assert errors[2]["msg"].startswith("Invalid request")
    assert answers[4] | {"connId": ""} == {
        "id": "9",
        "event": "unsubscribe",
        "arg": {"channel": "tickers", "instId": "ETH-USDT"},
        "connId": "",
    }
    assert server.stats()["subscriptions"] == [[]]
    transport.disconnect()


async def test_text_ping_is_answered_with_text_pong(server: SimServer) -> None:
    transport, client = await connect(server)
    transport.send(picows.WSMsgType.TEXT, b"ping")
    await until(lambda: b"pong" in client.frames, 5, "pong")
    assert client.frames == [b"pong"] and server.venue.pings == 1
    transport.disconnect()


def apply(book: tuple[dict[Decimal, list[str]], ...], data: dict[str, Any]) -> None:
    for side, key in zip(book, ("bids", "asks"), strict=True):
        for level in data[key]:
            if Decimal(level[1]):
                side[Decimal(level[0])] = level
            else:
                side.pop(Decimal(level[0]), None)


def crc_of(book: tuple[dict[Decimal, list[str]], ...]) -> int:
    bids = [book[0][p] for p in sorted(book[0], reverse=True)]
    asks = [book[1][p] for p in sorted(book[1])]
    return checksum(bids, asks)


async def follow_book(server: SimServer, symbol: str, n: int) -> tuple[Any, RawClient]:
    transport, client = await connect(server)
    subscribe(transport, [("books", symbol)])
    await until(lambda: len(pushes(client, "books")) > n, 10, f"{n} book updates")
    return transport, client


async def test_books_are_consistent_checksummed_and_end_as_the_simulator_s(
    server: SimServer,
) -> None:
    transport, client = await follow_book(server, "BTC-USDT", 100)
    server.paused_market = True
    book: tuple[dict[Decimal, list[str]], ...] = ({}, {})
    last = None
    count = 0
    for m in pushes(client, "books"):
        (d,) = m["data"]
        if m["action"] == "snapshot":
            assert d["prevSeqId"] == -1
        else:
            assert d["prevSeqId"] == last, "every update names the one before"
            assert d["seqId"] >= d["prevSeqId"]
        apply(book, d)
        assert d["checksum"] != 0 and crc_of(book) == d["checksum"]
        last = d["seqId"]
        count += 1
    assert count > 100
    want = await rest(server, "/_sim/book?symbol=BTC-USDT")
    for side, key in zip(book, ("bids", "asks"), strict=True):
        assert {p: Decimal(lv[1]) for p, lv in side.items()} == {
            Decimal(p): Decimal(q) for p, q in want[key]
        }
    assert want["update_id"] == last or want["update_id"] > last  # a skip-free, quiet book
    transport.disconnect()


async def test_a_quiet_book_sends_a_no_change_update() -> None:
    async with SimServer(OkxSim(keepalive=0.1), rate=0) as server:
        transport, client = await follow_book(server, "ETH-USDT", 2)
        snap, update, *_ = pushes(client, "books")
        assert update["data"][0] | {"ts": ""} == {
            "asks": [],
            "bids": [],
            "ts": "",
            "checksum": snap["data"][0]["checksum"],
            "prevSeqId": snap["data"][0]["seqId"],
            "seqId": snap["data"][0]["seqId"],
        }
        transport.disconnect()


async def test_checksums_can_be_off() -> None:
    async with SimServer(OkxSim(checksums="0"), rate=400) as server:
        transport, client = await follow_book(server, "BTC-USDT", 20)
        assert {m["data"][0]["checksum"] for m in pushes(client, "books")} == {0}
        transport.disconnect()


async def test_skip_makes_a_prev_seq_id_gap(server: SimServer) -> None:
    transport, client = await follow_book(server, "BTC-USDT", 3)
    server.skip(5)
    n = len(pushes(client, "books"))
    await until(lambda: len(pushes(client, "books")) > n + 3, 10, "more updates")
    seqs = [(m["data"][0]["prevSeqId"], m["data"][0]["seqId"]) for m in pushes(client, "books")]
    breaks = [i for i in range(1, len(seqs)) if seqs[i][0] != seqs[i - 1][1]]
    assert len(breaks) == 1 and seqs[breaks[0]][0] - seqs[breaks[0] - 1][1] == 5
    transport.disconnect()


async def test_corrupt_sends_one_wrong_level_under_the_true_checksum(server: SimServer) -> None:
    transport, client = await follow_book(server, "BTC-USDT", 3)
    assert (await rest(server, "/_sim/corrupt?symbol=BTC-USDT"))["ok"] is True
    await until(lambda: server.venue.corrupted == 1, 10, "the corrupted update")
    n = len(pushes(client, "books"))
    await until(lambda: len(pushes(client, "books")) > n + 3, 10, "more updates")
    book: tuple[dict[Decimal, list[str]], ...] = ({}, {})
    mismatches = []
    for i, m in enumerate(pushes(client, "books")):
        apply(book, m["data"][0])
        if crc_of(book) != m["data"][0]["checksum"]:
            mismatches.append(i)
    assert mismatches and mismatches == list(range(mismatches[0], mismatches[0] + len(mismatches)))
    assert server.venue.corrupted == 1
    transport.disconnect()


async def test_the_shutdown_notice_is_the_documented_one(server: SimServer) -> None:
    assert json.loads(server.venue.shutdown_notice() or b"") == doc("notice_doc.jsonl")


async def test_rest_instruments_and_book_parse_with_the_adapter(server: SimServer) -> None:
    server.paused_market = True  # the REST book and the simulator's, at one moment
    body = await rest(server, "/api/v5/public/instruments?instType=SPOT")
    instruments = VENUE.parse_instruments(json.dumps(body).encode())
    by_symbol = {i.venue_symbol: i for i in instruments}
    assert len(by_symbol) == 5
    btc = by_symbol["BTC-USDT"]
    assert (btc.base, btc.quote, btc.price_decimals, btc.size_decimals) == ("BTC", "USDT", 2, 5)
    snap_body = await rest(server, "/api/v5/market/books?instId=ETH-USDT&sz=400")
    snap = VENUE.parse_snapshot(json.dumps(snap_body).encode())
    want = await rest(server, "/_sim/book?symbol=ETH-USDT")
    assert sorted(snap.bids) == sorted((float(p), float(q)) for p, q in want["bids"])
    assert sorted(snap.asks) == sorted((float(p), float(q)) for p, q in want["asks"])
    assert shape(snap_body["data"][0]["bids"]) == [["str"]]


def test_malformed_frames_fail_as_intended() -> None:
    sim = OkxSim()
    for kind in ("truncated", "invalid_utf8", "oversize", "unknown_type", "wrong_types"):
        assert sim.malformed(kind)
    with pytest.raises(ValueError):
        sim.malformed("nope")


def test_blasted_frames_parse_and_chain_on_a_synchronised_book() -> None:
    import numpy as np

    from engine.records import Kind
    from engine.streams import RouteTable, make_stream
    from tests.support import Events, ListSink

    sim = OkxSim()
    sink, events, routes = ListSink(), Events(), RouteTable()
    streams = {}
    for sid, channel in enumerate(("trades", "orderbook"), 1):
        ch = VENUE.spec.channel(channel)
        assert ch is not None
        streams[channel] = make_stream(VENUE, ch, "BTC-USDT", sid, sink, lambda s: None)
        routes.add(streams[channel])
    session = VENUE.session(routes, sink, events)
    streams["orderbook"].book.start()
    sym = sim.symbols["BTC-USDT"]
    session.on_message(sim._book_frame(sym, "snapshot", *sim._levels(sym, 400), 0), 0)
    rng = np.random.default_rng(7)
    for name in ("trades:BTC-USDT", "books:BTC-USDT"):
        bs = sim.blast_stream(name)
        assert bs is not None
        template = bs.templates[True]
        for _ in range(2):  # two chunks: ids continue
            rows = template.render(50, bs.fill(50, 1_700_000_000_000, rng))
            for row in rows:
                session.on_message(row.tobytes()[template.frame_size - template.payload_size :], 1)
    assert events.errors == []
    trades = sink.of(Kind.TRADE)
    assert len(trades) == 100 and [t.ref for t in trades] == list(
        range(trades[0].ref, trades[0].ref + 100)
    )
    book = streams["orderbook"].book
    assert (book.counters.deltas, book.counters.gaps) == (100, 0)
    assert sim.blast_stream("tickers:BTC-USDT") is None and sim.blast_stream("trades:NOPE") is None


async def test_a_connection_where_nothing_flows_is_cut_and_a_busy_one_is_not() -> None:
    async with SimServer(OkxSim(idle_close=0.5), rate=400) as server:
        quiet_transport, quiet = await connect(server)
        busy_transport, busy = await connect(server)
        subscribe(busy_transport, [("trades", "BTC-USDT"), ("books", "BTC-USDT")])
        await until(lambda: quiet.closed, 5, "the quiet connection cut")
        n = len(busy.frames)
        await until(lambda: len(busy.frames) > n + 100, 10, "the busy one still fed")
        assert not busy.closed and server.venue.violations == {"idle_close": 1}
        busy_transport.disconnect()
        quiet_transport.disconnect()
