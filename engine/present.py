"""Records as plain dicts (JSON lines for `wsm tail`, the API), with exact decimal text."""

from __future__ import annotations

from typing import Any

from engine.records import ConnState, Flag, GapReason, Kind, Record, Side, format_decimal
from engine.symbols import SymbolTable

_KIND_NAMES = {k.value: k.name.lower() for k in Kind}
_TRADE_SIDES = {Side.BUY: "buy", Side.SELL: "sell"}
_BOOK_SIDES = {Side.BUY: "bid", Side.SELL: "ask"}


def _enum_name(enum_type: Any, value: int) -> str:
    try:
        return str(enum_type(value).name.lower())
    except ValueError:
        return str(value)


class Presenter:
    """Turns records into dicts, resolving names and decimals through the symbol table."""

    def __init__(self, symbols: SymbolTable | None) -> None:
        self.symbols = symbols

    def _number(self, value: float, decimals: int | None) -> str | float:
        return value if decimals is None else format_decimal(value, decimals)

    def to_dict(self, rec: Record) -> dict[str, Any]:
        info = self.symbols.get(rec.symbol) if self.symbols is not None else None
        pdec = info.price_decimals if info else None
        sdec = info.size_decimals if info else None
        exchange = (
            self.symbols.exchange_name(rec.exchange) if self.symbols is not None else rec.exchange
        )
        out: dict[str, Any] = {
            "seq": rec.seq,
            "kind": _KIND_NAMES.get(rec.kind, str(rec.kind)),
            "exchange": exchange,
            "symbol": info.symbol if info else (rec.symbol or None),
            "exch_ts": rec.exch_ts,
            "recv_ts": rec.recv_ts,
        }
        kind = rec.kind
        if kind == Kind.TRADE:
            out["side"] = _TRADE_SIDES.get(Side(rec.side)) if rec.side in (1, 2) else None
            out["price"] = self._number(rec.price, pdec)
            out["size"] = self._number(rec.size, sdec)
            out["trade_id"] = rec.ref
        elif kind == Kind.BBO:
            out["bid_price"] = self._number(rec.price, pdec)
            out["bid_size"] = self._number(rec.size, sdec)
            out["ask_price"] = self._number(rec.ask_price, pdec)
            out["ask_size"] = self._number(rec.ask_size, sdec)
        elif kind == Kind.BOOK_LEVEL:
            out["side"] = _BOOK_SIDES.get(Side(rec.side)) if rec.side in (1, 2) else None
            out["price"] = self._number(rec.price, pdec)
            out["size"] = self._number(rec.size, sdec)
            out["update_id"] = rec.ref
            out["snapshot"] = bool(rec.flags & Flag.SNAPSHOT)
        elif kind in (Kind.SNAPSHOT_BEGIN, Kind.SNAPSHOT_END):
            out["update_id"] = rec.ref
            out["levels"] = rec.aux
        elif kind == Kind.GAP:
            out["reason"] = _enum_name(GapReason, rec.aux)
            out["update_id"] = rec.ref
            out["exchange_wide"] = bool(rec.flags & Flag.EXCHANGE_WIDE)
        elif kind == Kind.STATUS:
            out["connection"] = rec.ref
            out["state"] = _enum_name(ConnState, rec.aux)
            out["previous"] = _enum_name(ConnState, rec.extra) if rec.extra else None
        out["last"] = bool(rec.flags & Flag.LAST)
        return out

    def to_text(self, rec: Record) -> str:
        d = self.to_dict(rec)
        head = f"{d['seq']:>10} {d['exchange']:<9} {d['kind']:<14} {d['symbol'] or '-':<12}"
        skip = {"seq", "exchange", "kind", "symbol", "exch_ts", "recv_ts", "last"}
        rest = " ".join(f"{k}={v}" for k, v in d.items() if k not in skip)
        return f"{head} {rest}"
