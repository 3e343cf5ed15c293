"""A random-walk market for simulators: one order book per symbol with consistent update ids.

Prices and sizes are integers in units of the symbol's tick and lot, so every number the
simulator prints is exact. Each market event is a trade (which takes liquidity from the best
level) or a quote change near the top of the book; every level change takes one update id,
so a client that applies every change in order ends with exactly the simulator's book.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def fmt(units: int, decimals: int, pad_to: int | None = None) -> str:
    """`units` of 10**-decimals as decimal text, right-padded with zeros to `pad_to` places."""
    if decimals == 0:
        text = str(units)
        return text if not pad_to else f"{text}.{'0' * pad_to}"
    whole, frac = divmod(units, 10**decimals)
    frac_text = f"{frac:0{decimals}d}"
    if pad_to is not None and pad_to > decimals:
        frac_text += "0" * (pad_to - decimals)
    return f"{whole}.{frac_text}"


@dataclass
class Change:
    side: str  # "bid" | "ask"
    price: int
    size: int  # 0 removes the level


@dataclass
class Trade:
    id: int
    price: int
    size: int
    taker: str  # "buy" | "sell"


@dataclass
class Event:
    first_id: int
    last_id: int
    changes: list[Change]
    trade: Trade | None = None
    top_changed: bool = False


@dataclass
class SimSymbol:
    venue_symbol: str
    base: str
    quote: str
    price: float  # starting mid
    price_decimals: int
    size_decimals: int
    depth: int = 20
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    update_id: int = 1_000_000
    trade_id: int = 5_000_000

    def __post_init__(self) -> None:
        mid = round(self.price * 10**self.price_decimals)
        unit = 10**self.size_decimals
        rng = random.Random(self.venue_symbol)
        for i in range(1, self.depth + 1):
            self.bids[mid - i] = rng.randint(unit // 100 + 1, 5 * unit)
            self.asks[mid + i] = rng.randint(unit // 100 + 1, 5 * unit)

    def best_bid(self) -> int:
        return max(self.bids)

    def best_ask(self) -> int:
        return min(self.asks)

    def top(self) -> tuple[int, int, int, int]:
        b, a = self.best_bid(), self.best_ask()
        return b, self.bids[b], a, self.asks[a]

    def _set(self, side: str, price: int, size: int, changes: list[Change]) -> None:
        book = self.bids if side == "bid" else self.asks
        if size:
            book[price] = size
        else:
            book.pop(price, None)
        self.update_id += 1
        changes.append(Change(side, price, size))

    def step(self, rng: random.Random) -> Event:
        """One market event."""
        first = self.update_id + 1
        before = self.top()
        changes: list[Change] = []
        trade = None
        if rng.random() < 0.3:
            trade = self._trade(rng, changes)
        else:
            self._quote(rng, changes)
        self._refill(rng, changes)
        return Event(first, self.update_id, changes, trade, self.top() != before)

    def _trade(self, rng: random.Random, changes: list[Change]) -> Trade:
        taker = "buy" if rng.random() < 0.5 else "sell"
        side, price = ("ask", self.best_ask()) if taker == "buy" else ("bid", self.best_bid())
        book = self.asks if side == "ask" else self.bids
        size = rng.randint(1, book[price])
        self._set(side, price, book[price] - size, changes)
        self.trade_id += 1
        return Trade(self.trade_id, price, size, taker)

    def _quote(self, rng: random.Random, changes: list[Change]) -> None:
        side = "bid" if rng.random() < 0.5 else "ask"
        unit = 10**self.size_decimals
        if side == "bid":
            price = self.best_ask() - rng.randint(1, self.depth)
            book = self.bids
        else:
            price = self.best_bid() + rng.randint(1, self.depth)
            book = self.asks
        if price in book and rng.random() < 0.3:
            self._set(side, price, 0, changes)
        else:
            self._set(side, price, rng.randint(1, 5 * unit), changes)

    def _refill(self, rng: random.Random, changes: list[Change]) -> None:
        unit = 10**self.size_decimals
        while len(self.bids) < self.depth // 2 or not self.bids:
            price = (min(self.bids) if self.bids else self.best_ask()) - 1
            self._set("bid", price, rng.randint(1, 5 * unit), changes)
        while len(self.asks) < self.depth // 2 or not self.asks:
            price = (max(self.asks) if self.asks else self.best_bid()) + 1
            self._set("ask", price, rng.randint(1, 5 * unit), changes)
        while len(self.bids) > 2 * self.depth:
            self._set("bid", min(self.bids), 0, changes)
        while len(self.asks) > 2 * self.depth:
            self._set("ask", max(self.asks), 0, changes)

    def snapshot(self, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return bids, asks


DEFAULT_SYMBOLS = (
    ("BTCUSDT", "BTC", "USDT", 65000.0, 2, 5),
    ("ETHUSDT", "ETH", "USDT", 3400.0, 2, 4),
    ("SOLUSDT", "SOL", "USDT", 150.0, 2, 3),
    ("XRPUSDT", "XRP", "USDT", 0.6, 4, 0),
    ("ETHBTC", "ETH", "BTC", 0.052, 5, 4),
)


def sim_symbols(
    rows: tuple[tuple[str, str, str, float, int, int], ...],
    *,
    extra: int,
    quote: str,
    spell: Callable[[str, str], str],
    respell: bool = False,
) -> dict[str, SimSymbol]:
    """A simulator's markets by venue symbol: `rows` (venue symbol, base, quote, price, price
    and size decimals), then `extra` synthetic ones `S0000`, `S0001`, ... quoted in `quote`
    and named `spell(base, quote)`; `respell` names every row that way (venues whose names
    differ from `DEFAULT_SYMBOLS`'). Ids start from the clock, so a restarted simulator
    continues upwards."""
    base_id = time.time_ns() // 1_000_000
    rows = rows + tuple(
        (spell(f"S{i:04d}", quote), f"S{i:04d}", quote, 1.0 + i % 97, 4, 2) for i in range(extra)
    )
    out = {}
    for name, base, quo, price, price_decimals, size_decimals in rows:
        name = spell(base, quo) if respell else name
        out[name] = SimSymbol(
            name,
            base,
            quo,
            price,
            price_decimals,
            size_decimals,
            update_id=base_id * 100,
            trade_id=base_id * 10,
        )
    return out
