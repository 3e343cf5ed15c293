"""A synthetic market writer: random-walk trades and quotes straight into a ring.

Used by benchmarks and tests that need a writer process without a network in between.
"""

from __future__ import annotations

import random
import time

from engine.records import Flag, Kind, Side
from engine.ring import Ring, RingWriter
from engine.symbols import SymbolRegistry

SYMBOLS = (("BTC-USDT", 65000.0), ("ETH-USDT", 3400.0), ("SOL-USDT", 150.0))


def register(registry: SymbolRegistry, exchange_id: int, exchange: str) -> list[int]:
    registry.register_exchange(exchange_id, exchange)
    ids = []
    for sym, _ in SYMBOLS:
        base, quote = sym.split("-")
        info = registry.add(
            exchange_id=exchange_id,
            symbol=sym,
            venue_symbol=sym.replace("-", ""),
            price_decimals=2,
            size_decimals=6,
            base=base,
            quote=quote,
        )
        ids.append(info.id)
    return ids


def run(
    writer: RingWriter,
    symbol_ids: list[int],
    *,
    rate: float,
    duration: float | None,
    seed: int = 1,
) -> int:
    """Write about `rate` events per second (a trade and a quote each); returns records written."""
    rng = random.Random(seed)
    prices = [p for _, p in SYMBOLS]
    trade_id = 0
    start = time.monotonic()
    period = 1.0 / rate
    next_at = start
    while duration is None or time.monotonic() - start < duration:
        i = rng.randrange(len(symbol_ids))
        prices[i] = round(max(prices[i] * (1 + rng.gauss(0, 0.0002)), 0.01), 2)
        now = time.time_ns()
        trade_id += 1
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        size = round(rng.uniform(0.0001, 2.0), 6)
        writer.append(
            Kind.TRADE, side, Flag.LAST, symbol_ids[i], now, now, prices[i], size, trade_id, 0
        )
        spread = round(prices[i] * 0.0001, 2) or 0.01
        writer.append_bbo(
            Flag.LAST,
            symbol_ids[i],
            now,
            now,
            prices[i],
            round(rng.uniform(0.1, 5), 6),
            round(prices[i] + spread, 2),
            round(rng.uniform(0.1, 5), 6),
        )
        writer.commit()
        if trade_id % 1000 == 0:
            writer.heartbeat()
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return writer.next_seq


def serve(
    instance: str, exchange: str, exchange_id: int, rate: float, duration: float | None
) -> None:
    """Create the ring and registry, write until stopped, clean up."""
    registry = SymbolRegistry.create(instance)
    ring = Ring.create(instance=instance, exchange=exchange, exchange_id=exchange_id)
    try:
        ids = register(registry, exchange_id, exchange)
        with RingWriter(instance=instance, exchange=exchange) as writer:
            run(writer, ids, rate=rate, duration=duration)
    except KeyboardInterrupt:
        pass
    finally:
        ring.close()
        registry.close()
