"""Test doubles that are real implementations of small interfaces (never network or DB)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.records import Kind, Record

FIXTURES = Path(__file__).parent / "fixtures" / "exchanges"


class ListSink:
    """A `Sink` that keeps records in a list (what the ring would hold, without the ring)."""

    def __init__(self, exchange: int = 0) -> None:
        self.records: list[Record] = []
        self.exchange = exchange

    def append(
        self,
        kind: int,
        side: int,
        flags: int,
        symbol: int,
        exch_ts: int,
        recv_ts: int,
        price: float,
        size: float,
        ref: int,
        aux: int,
        extra: int = 0,
    ) -> None:
        self.records.append(
            Record(
                len(self.records),
                kind,
                self.exchange,
                side,
                flags,
                symbol,
                exch_ts,
                recv_ts,
                price,
                size,
                ref,
                aux,
                extra,
                0.0,
                0.0,
            )
        )

    def append_bbo(
        self,
        flags: int,
        symbol: int,
        exch_ts: int,
        recv_ts: int,
        bid_price: float,
        bid_size: float,
        ask_price: float,
        ask_size: float,
    ) -> None:
        self.records.append(
            Record(
                len(self.records),
                Kind.BBO,
                self.exchange,
                0,
                flags,
                symbol,
                exch_ts,
                recv_ts,
                bid_price,
                bid_size,
                0,
                0,
                0,
                ask_price,
                ask_size,
            )
        )

    def of(self, kind: Kind) -> list[Record]:
        return [r for r in self.records if r.kind == kind]


class Events:
    """A `SessionEvents` that remembers what it was told."""

    def __init__(self) -> None:
        self.acks: list[tuple[int, bool, Any, str]] = []
        self.errors: list[tuple[str, str]] = []
        self.notices: list[tuple[str, str]] = []
        self.listings: list[tuple[int, list[str]]] = []
        self.gaps: list[tuple[str | None, int]] = []
        self.pongs = 0
        self.welcomes = 0

    def on_ack(self, request_id: int, ok: bool, code: Any, message: str) -> None:
        self.acks.append((request_id, ok, code, message))

    def on_parse_error(self, channel: str, detail: str) -> None:
        self.errors.append((channel, detail))

    def on_notice(self, kind: str, message: str) -> None:
        self.notices.append((kind, message))

    def on_pong(self) -> None:
        self.pongs += 1

    def on_listing(self, request_id: int, streams: list[str]) -> None:
        self.listings.append((request_id, streams))

    def on_gap(self, stream: str | None, reason: int) -> None:
        self.gaps.append((stream, reason))

    def on_welcome(self) -> None:
        self.welcomes += 1


def frames(path: Path) -> list[bytes]:
    return [line.encode() for line in path.read_text().splitlines() if line.strip()]


def capture(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def book_from_records(
    records: list[Record], symbol: int
) -> tuple[dict[float, float], dict[float, float]]:
    """A subscriber's book rebuilt from the records of one symbol, as a reader would."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for r in records:
        if r.symbol != symbol:
            continue
        if r.kind in (Kind.SNAPSHOT_BEGIN, Kind.GAP):
            bids.clear()
            asks.clear()
        elif r.kind == Kind.BOOK_LEVEL:
            side = bids if r.side == 1 else asks
            if r.size:
                side[r.price] = r.size
            else:
                side.pop(r.price, None)
    return bids, asks


def shape(value: Any) -> Any:
    """The JSON shape of a value: keys and types, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


class RawClient:
    """A plain picows client that keeps every text frame it receives."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed = False

    @classmethod
    async def connect(cls, url: str) -> tuple[Any, RawClient]:
        import picows

        client = cls()

        class Listener(picows.WSListener):
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type == picows.WSMsgType.TEXT:
                    client.frames.append(frame.get_payload_as_bytes())

            def on_ws_disconnected(self, transport: Any) -> None:
                client.closed = True

        transport, _ = await picows.ws_connect(Listener, url)
        return transport, client

    def json(self) -> list[Any]:
        return [json.loads(f) for f in self.frames]
