"""Sessions share their decoder while the routing table is unchanged: a session is made per
socket, and a decoder over `msgspec.defstruct` types costs memory msgspec never gives back,
so one built per reconnect grew the workers without bound (the 35-minute soak)."""

from __future__ import annotations

from typing import Any

from adapters.binance.venue import VENUE
from engine.streams import RouteTable, make_stream


class Events:
    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


def _routes(*symbols: str) -> RouteTable:
    routes = RouteTable()
    for sym in symbols:
        routes.add(make_stream(VENUE, VENUE.spec.channel("trades"), sym, 1, None, lambda s: None))  # type: ignore[arg-type]
    return routes


def test_built_once_per_version_and_key_then_again_after_a_change() -> None:
    routes = _routes("BTCUSDT")
    built: list[int] = []

    def build() -> object:
        built.append(routes.version)
        return object()

    first = routes.cached("k", build)
    assert routes.cached("k", build) is first and built == [1]
    other = routes.cached("other", build)
    assert other is not first and built == [1, 1]
    routes.add(make_stream(VENUE, VENUE.spec.channel("trades"), "ETHUSDT", 2, None, lambda s: None))  # type: ignore[arg-type]
    assert routes.cached("k", build) is not first and built == [1, 1, 2]


def test_reconnects_of_one_shard_share_the_binance_decoder_and_still_route() -> None:
    routes, shard = _routes("BTCUSDT"), Events()
    sink = type(
        "Sink", (), {"append": lambda self, *a: None, "append_bbo": lambda self, *a: None}
    )()
    a = VENUE.session(routes, sink, shard)  # type: ignore[arg-type]
    b = VENUE.session(routes, sink, shard)  # type: ignore[arg-type]
    c = VENUE.session(routes, sink, Events())  # type: ignore[arg-type]  # another shard
    assert a._decode == b._decode and a._decode != c._decode
    frame = (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,'
        b'"p":"1.5","q":"2","T":1000,"m":true,"M":true}}'
    )
    assert b.on_message(frame, 5) == 1000 * 1_000_000
    assert routes.get("btcusdt@trade").count == 1  # type: ignore[union-attr]
