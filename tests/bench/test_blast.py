"""Blast mode: distinct, increasing, well-framed messages that the engine accepts in full."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from adapters.binance.simulator import BinanceSim
from adapters.simkit.blast import FrameTemplate, ws_header
from engine.config import EngineConfig, ExchangeConfig
from engine.db import DatabaseConfig
from engine.manager import WebSocketManager
from engine.records import Flag, Kind
from tests.e2e.harness import SimProc, until


def split_frames(data: bytes) -> list[bytes]:
    """Parse a byte stream of unmasked server frames; fails on anything torn or masked."""
    out, pos = [], 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b0 == 0x81, f"not a final text frame at {pos}: {b0:#x}"
        assert not b1 & 0x80, "server frames are not masked"
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            n, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif n == 127:
            n, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        assert pos + n <= len(data), "torn frame"
        out.append(data[pos : pos + n])
        pos += n
    return out


def test_header_lengths() -> None:
    assert ws_header(5) == b"\x81\x05"
    assert ws_header(300) == b"\x81\x7e\x01\x2c"
    assert ws_header(70_000)[:2] == b"\x81\x7f"


def test_template_patches_every_field() -> None:
    tpl = FrameTemplate(b'{"t":{t:5},"p":"{p:3.2}000","q":"{q:1.0}.0","m":{m:bool}}')
    rows = tpl.render(
        3,
        {
            "t": np.array([10000, 10001, 99999]),
            "p": np.array([12345, 100, 99999]),
            "q": np.array([0, 5, 9]),
            "m": np.array([True, False, True]),
        },
    )
    msgs = [json.loads(m) for m in split_frames(rows.tobytes())]
    assert msgs == [
        {"t": 10000, "p": "123.45000", "q": "0.0", "m": True},
        {"t": 10001, "p": "001.00000", "q": "5.0", "m": False},
        {"t": 99999, "p": "999.99000", "q": "9.0", "m": True},
    ]
    with pytest.raises(ValueError, match="leading zero"):
        tpl.render(1, {"t": np.array([9999]), "p": 1, "q": 1, "m": True})


@pytest.mark.parametrize("futures", [False, True])
@pytest.mark.parametrize("kind", ["trade", "aggTrade", "bookTicker", "depth@100ms"])
def test_binance_blast_frames_are_distinct_and_increasing(kind: str, futures: bool) -> None:
    sim = BinanceSim(futures=futures)
    stream = sim.blast_stream(f"btcusdt@{kind}")
    assert stream is not None
    rng = np.random.default_rng(1)
    seen: list[dict[str, Any]] = []
    for _ in range(3):  # ids continue across chunks
        values = stream.fill(400, 1_700_000_000_000, rng)
        frames = split_frames(stream.templates[True].render(400, values).tobytes())
        seen += [json.loads(f) for f in frames]
    assert all(m["stream"] == f"btcusdt@{kind}" for m in seen)
    data = [m["data"] for m in seen]
    key = {"trade": "t", "aggTrade": "a", "bookTicker": "u", "depth@100ms": "U"}[kind]
    ids = [d[key] for d in data]
    assert all(b > a for a, b in pairwise(ids))
    assert len({json.dumps(d, sort_keys=True) for d in data}) == len(data)
    if kind == "depth@100ms":
        assert all(d["u"] - d["U"] == 9 and len(d["b"]) == len(d["a"]) == 5 for d in data)
        if futures:  # U = pu = previous u: bridges a snapshot taken in a quiet moment
            assert all(b["U"] == b["pu"] == a["u"] for a, b in pairwise(data))
        else:
            assert all(b["U"] == a["u"] + 1 for a, b in pairwise(data))
    raw = split_frames(
        stream.templates[False].render(1, stream.fill(1, 1_700_000_000_000, rng)).tobytes()
    )
    assert "stream" not in json.loads(raw[0])


async def _raw_read(sim: SimProc, path: str, count: int) -> list[bytes]:
    """A plain socket client: HTTP upgrade, then every byte the blast sends, as frames."""
    host, port = sim.ws_url[len("ws://") :].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in head.split(b"\r\n")[0]
    await until(sim.stats, 10, "the subscription")
    started = await sim.control("blast", rate="max", count=count, chunk=10_000)
    assert started["clients"] == 1
    data = b""
    frames: list[bytes] = []
    while len(frames) < count:
        data += await asyncio.wait_for(reader.read(1 << 20), 10)
        try:
            frames = split_frames(data)
        except AssertionError:
            continue  # a frame split across reads: read on
    writer.close()
    return frames


@pytest.mark.slow
async def test_blast_on_the_wire_is_well_framed() -> None:
    sim = await SimProc("binance", rate=0).start()
    try:
        frames = await _raw_read(sim, "/ws/btcusdt@trade", 5000)
        msgs = [json.loads(f) for f in frames]
        assert len(msgs) == 5000
        ids = [m["t"] for m in msgs]
        assert ids == list(range(ids[0], ids[0] + 5000))
        stats = (await sim.stats())["blast"]
        assert stats["sent"] == 5000 and stats["done"]
    finally:
        await sim.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("exchange", "channel", "count"),
    [
        ("binance", "trades", 20_000),
        ("binance", "orderbook", 2_000),
        ("binance-usdm", "orderbook", 2_000),
    ],
)
async def test_engine_accepts_a_blast_in_full(
    instance: str, exchange: str, channel: str, count: int
) -> None:
    sim = await SimProc(exchange, rate=0).start()
    config = EngineConfig(
        database=DatabaseConfig(enabled=False),  # benchmarks measure the engine, not Postgres
        instance=instance,
        stats_interval=0.2,
        exchanges={exchange: ExchangeConfig(ws_url=sim.ws_url, rest_url=sim.rest_url)},
    )
    try:
        async with WebSocketManager(config) as manager:
            await manager.connect_to_exchange(exchange, "c1")
            await manager.subscribe(exchange, "c1", channel=channel, symbols=["BTC/USDT"])
            await manager.wait_for("c1")
            with manager.reader(exchange, start="oldest") as reader:
                records: list[Any] = []

                def snapshot_in() -> bool:
                    records.extend(reader.read())
                    return channel == "trades" or any(r.kind == Kind.SNAPSHOT_END for r in records)

                await until(snapshot_in, 10, "the book snapshot")
                await sim.control("blast", rate="max", count=count)
                if channel == "trades":
                    want = Kind.TRADE
                    per = 1
                else:
                    want = Kind.BOOK_LEVEL
                    per = 10

                def counted() -> list[Any]:
                    return [r for r in records if r.kind == want and not r.flags & Flag.SNAPSHOT]

                def complete() -> bool:
                    records.extend(reader.read())
                    return len(counted()) >= count * per

                await until(complete, 60, f"{count} messages in the ring")
                await asyncio.sleep(0.3)
                records.extend(reader.read())
                got = counted()
                assert len(got) == count * per
                assert not [r for r in records if r.kind == Kind.GAP]
                refs = [r.ref for r in got if r.flags & Flag.LAST]
                assert len(refs) == count
                assert all(b > a for a, b in pairwise(refs))
                assert reader.lost == 0
        stats = (await sim.stats())["blast"]
        assert stats["sent"] == count
    finally:
        await sim.stop()
