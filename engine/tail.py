"""`wsm tail`: a subscriber that prints an exchange's records as they arrive."""

from __future__ import annotations

import sys
from typing import TextIO

import orjson

from engine.errors import RingError
from engine.present import Presenter
from engine.ring import RingReader, Start
from engine.symbols import SymbolTable


def tail(
    exchange: str,
    *,
    instance: str = "default",
    symbol: str | None = None,
    count: int | None = None,
    as_json: bool = False,
    start: Start = "newest",
    timeout: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print records until `count` were printed, `timeout` seconds pass idle, or the ring closes.

    Returns how many records were printed."""
    reader = RingReader(exchange, instance=instance, start=start)
    try:
        symbols: SymbolTable | None = SymbolTable(instance)
    except RingError:
        symbols = None
    want = _symbol_id(symbols, reader.exchange_id, symbol)
    presenter = Presenter(symbols)
    printed = 0
    try:
        for rec in reader.records(timeout=timeout):
            if want is not None and rec.symbol != want:
                continue
            if as_json:
                out.write(orjson.dumps(presenter.to_dict(rec)).decode())
            else:
                out.write(presenter.to_text(rec))
            out.write("\n")
            printed += 1
            if count is not None and printed >= count:
                break
        out.flush()
    finally:
        if reader.lost:
            print(f"wsm tail: lost {reader.lost} records (lapped)", file=sys.stderr)
        reader.close()
        if symbols is not None:
            symbols.close()
    return printed


def _symbol_id(symbols: SymbolTable | None, exchange_id: int, symbol: str | None) -> int | None:
    if symbol is None:
        return None
    if symbols is None:
        raise RingError("--symbol needs the symbol registry, and the engine has none running")
    for spelling in (symbol, symbol.replace("/", "-").upper()):
        info = symbols.lookup(exchange_id, spelling)
        if info is not None:
            return info.id
    raise RingError(f"unknown symbol {symbol!r} on {symbols.exchange_name(exchange_id)}")
