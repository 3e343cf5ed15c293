from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.errors import RingError
from engine.symbols import Market, SymbolRegistry, SymbolTable


@pytest.fixture
def registry(instance: str) -> Iterator[SymbolRegistry]:
    reg = SymbolRegistry.create(instance, capacity=8)
    reg.register_exchange(1, "binance")
    reg.register_exchange(3, "bybit")
    yield reg
    reg.close()


def add(reg: SymbolRegistry, exchange_id: int, venue: str, symbol: str) -> int:
    base, quote = symbol.split("-")
    return reg.add(
        exchange_id=exchange_id,
        symbol=symbol,
        venue_symbol=venue,
        price_decimals=2,
        size_decimals=6,
        base=base,
        quote=quote,
    ).id


def test_entries_are_visible_to_readers_by_id_and_by_either_spelling(
    registry: SymbolRegistry, instance: str
) -> None:
    btc = add(registry, 1, "BTCUSDT", "BTC-USDT")
    table = SymbolTable(instance)
    eth = registry.add(
        exchange_id=3,
        symbol="ETH-USDT",
        venue_symbol="ETHUSDT",
        price_decimals=2,
        size_decimals=5,
        base="ETH",
        quote="USDT",
        market=Market.LINEAR,
    ).id
    assert (btc, eth) == (1, 2)
    info = table.get(eth)  # added after the table opened: found by refreshing
    assert info is not None
    assert (info.exchange_id, info.symbol, info.venue_symbol) == (3, "ETH-USDT", "ETHUSDT")
    assert (info.price_decimals, info.size_decimals, info.market) == (2, 5, Market.LINEAR)
    assert table.lookup(1, "BTCUSDT") == table.lookup(1, "BTC-USDT") == table.get(btc)
    assert table.lookup(3, "BTC-USDT") is None
    assert table.exchange_name(3) == "bybit"
    assert table.exchange_id("binance") == 1
    assert table.get(0) is None
    table.close()


def test_add_is_idempotent_per_exchange_and_venue_symbol(registry: SymbolRegistry) -> None:
    assert add(registry, 1, "BTCUSDT", "BTC-USDT") == add(registry, 1, "BTCUSDT", "BTC-USDT")
    assert add(registry, 3, "BTCUSDT", "BTC-USDT") != add(registry, 1, "BTCUSDT", "BTC-USDT")


def test_registry_refuses_bad_entries(registry: SymbolRegistry) -> None:
    with pytest.raises(RingError, match="longer than 48 bytes"):
        add(registry, 1, "X" * 49, "A-B")
    with pytest.raises(RingError, match="decimals"):
        registry.add(
            exchange_id=1,
            symbol="A-B",
            venue_symbol="AB",
            price_decimals=30,
            size_decimals=1,
            base="A",
            quote="B",
        )
    with pytest.raises(RingError, match="exchange id"):
        registry.register_exchange(64, "toolarge")
    for i in range(8):
        add(registry, 1, f"S{i}", "A-B")
    with pytest.raises(RingError, match="is full"):
        add(registry, 1, "S9", "A-B")


def test_table_without_an_engine_says_so(instance: str) -> None:
    with pytest.raises(RingError, match="no symbol registry"):
        SymbolTable(instance)


def test_registry_of_a_live_engine_is_not_replaced(registry: SymbolRegistry, instance: str) -> None:
    import struct

    from engine import shm

    seg = shm.Segment.open(registry.name)
    struct.pack_into("<Q", seg.buf, 32, 1)  # owned by pid 1, which is alive
    seg.close()
    with pytest.raises(RingError, match="in use by a running engine"):
        SymbolRegistry.create(instance)
