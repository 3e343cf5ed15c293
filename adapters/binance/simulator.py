"""The Binance side of the protocol, for tests, demos and benchmarks.

Speaks what a client of `stream.binance.com` sees: `/ws` (raw) and `/stream` (combined,
`{"stream":..,"data":..}`) endpoints, `?streams=a/b` in the URL, the JSON method protocol
(SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY/GET_PROPERTY combined) with acks and
the documented error codes, server pings, the 5-messages-per-second and 1024-streams limits,
`trade`, `aggTrade`, `bookTicker`, `depth` and `depth@100ms` streams from a random-walk market
with consistent update ids, the REST `exchangeInfo` and `depth` endpoints, and
`serverShutdown`. `futures=True` gives the USD-M shapes (`pu`, `T`, bookTicker `E`).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict, deque
from typing import Any

import numpy as np
import orjson

from adapters.simkit.blast import BlastStream, FrameTemplate, Values, dec_width
from adapters.simkit.market import DEFAULT_SYMBOLS, Event, SimSymbol, fmt, sim_symbols
from adapters.simkit.server import SimClient, SimServer

PAD = 8  # Binance prints prices and sizes with 8 decimals
MAX_STREAMS = 1024
MAX_MESSAGES_PER_SECOND = 5
KINDS = ("trade", "aggTrade", "bookTicker", "depth", "depth@100ms")


class BinanceSim:
    name = "binance"

    def __init__(
        self,
        symbols: tuple[tuple[str, str, str, float, int, int], ...] = DEFAULT_SYMBOLS,
        *,
        seed: int = 1,
        futures: bool = False,
        enforce_limits: bool = True,
        extra_symbols: int = 0,
    ) -> None:
        self.rng = random.Random(seed)
        self.futures = futures
        self.enforce_limits = enforce_limits
        self.symbols = sim_symbols(
            symbols, extra=extra_symbols, quote="USDT", spell=lambda b, q: b + q
        )
        self._order = list(self.symbols.values())
        self.pending: dict[str, dict[str, dict[tuple[str, int], int]]] = {
            k: defaultdict(dict) for k in ("depth@100ms", "depth")
        }
        self.pending_first: dict[str, dict[str, int]] = {"depth@100ms": {}, "depth": {}}
        self.pending_prev: dict[str, int] = {s: sym.update_id for s, sym in self.symbols.items()}
        self.last_flush = {"depth@100ms": 0.0, "depth": 0.0}
        self.agg_id = {s: sym.trade_id for s, sym in self.symbols.items()}
        self.subscribe_log: list[tuple[float, int]] = []  # (time, streams) per request
        self.violations: dict[str, int] = defaultdict(int)
        self.requests = 0
        self.reject = 0
        self.trade_log: dict[str, deque[tuple[int, str, str, bool]]] = defaultdict(
            lambda: deque(maxlen=100_000)
        )
        self.server: SimServer | None = None
        self._blast: dict[str, BlastStream | None] = {}

    def attach(self, server: SimServer) -> None:
        self.server = server

    # -- REST ---------------------------------------------------------------------------

    def http(self, method: str, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        prefix = "/fapi/v1" if self.futures else "/api/v3"
        if path == f"{prefix}/exchangeInfo":
            return 200, self._exchange_info()
        if path == f"{prefix}/depth":
            sym = self.symbols.get(query.get("symbol", ""))
            if sym is None:
                return 400, b'{"code":-1121,"msg":"Invalid symbol."}'
            return 200, self._depth_snapshot(sym, int(query.get("limit", "100")))
        if path in (f"{prefix}/ping",):
            return 200, b"{}"
        return None

    def _exchange_info(self) -> bytes:
        return orjson.dumps(
            {
                "timezone": "UTC",
                "serverTime": time.time_ns() // 1_000_000,
                "symbols": [
                    {
                        "symbol": s.venue_symbol,
                        "status": "TRADING",
                        "baseAsset": s.base,
                        "quoteAsset": s.quote,
                        "baseAssetPrecision": 8,
                        "quotePrecision": 8,
                        **(
                            {
                                "pair": s.venue_symbol,
                                "contractType": "PERPETUAL",
                                "marginAsset": s.quote,
                            }
                            if self.futures
                            else {}
                        ),
                        "filters": [
                            {
                                "filterType": "PRICE_FILTER",
                                "minPrice": fmt(1, s.price_decimals, PAD),
                                "maxPrice": "1000000.00000000",
                                "tickSize": fmt(1, s.price_decimals, PAD),
                            },
                            {
                                "filterType": "LOT_SIZE",
                                "minQty": fmt(1, s.size_decimals, PAD),
                                "maxQty": "9000000.00000000",
                                "stepSize": fmt(1, s.size_decimals, PAD),
                            },
                        ],
                    }
                    for s in self.symbols.values()
                ],
            }
        )

    def _depth_snapshot(self, sym: SimSymbol, limit: int) -> bytes:
        bids, asks = sym.snapshot(limit)
        pd, sd = sym.price_decimals, sym.size_decimals
        body: dict[str, Any] = {"lastUpdateId": sym.update_id}
        if self.futures:
            now = time.time_ns() // 1_000_000
            body |= {"E": now, "T": now}
        body["bids"] = [[fmt(p, pd, PAD), fmt(q, sd, PAD)] for p, q in bids]
        body["asks"] = [[fmt(p, pd, PAD), fmt(q, sd, PAD)] for p, q in asks]
        return orjson.dumps(body)

    # -- WebSocket protocol ---------------------------------------------------------------

    def accepts(self, path: str) -> bool:
        return path in ("/ws", "/stream") or path.startswith("/ws/")

    def on_connect(self, client: SimClient, path: str, query: dict[str, str]) -> None:
        client.state["combined"] = path == "/stream"
        streams = query.get("streams", "")
        if path.startswith("/ws/"):
            streams = path[4:]
        if streams:
            client.subscribe(streams.split("/"))

    def on_text(self, client: SimClient, text: bytes) -> None:
        if self.enforce_limits and self._over_rate(client):
            self.violations["messages_per_second"] += 1
            client.close(1008)
            return
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            client.send(b'{"code":3,"msg":"Invalid JSON: expected value at line 1 column 1"}')
            return
        if not isinstance(req, dict) or "method" not in req:
            client.send(b'{"code":2,"msg":"Invalid request: missing field `method`"}')
            return
        rid = req.get("id")
        if rid is not None and not isinstance(rid, int | str):
            client.send(
                b'{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"}'
            )
            return
        self.requests += 1
        self._method(client, req["method"], req.get("params", []), rid)

    def _over_rate(self, client: SimClient) -> bool:
        now = client.recv_times[-1]
        recent = [t for t in client.recv_times[-(MAX_MESSAGES_PER_SECOND + 1) :] if now - t < 1.0]
        return len(recent) > MAX_MESSAGES_PER_SECOND

    def _method(self, client: SimClient, method: str, params: Any, rid: Any) -> None:
        ok = orjson.dumps({"result": None, "id": rid})
        if method == "SUBSCRIBE":
            if self.reject:
                self.reject -= 1
                client.send(
                    orjson.dumps(
                        {"code": 2, "msg": "Invalid request: too many parameters", "id": rid}
                    )
                )
                return
            if len(client.subs | set(params)) > MAX_STREAMS:
                self.violations["streams_per_connection"] += 1
                client.send(
                    orjson.dumps(
                        {
                            "code": 2,
                            "msg": f"Invalid request: more than {MAX_STREAMS} streams",
                            "id": rid,
                        }
                    )
                )
                return
            self.subscribe_log.append((time.monotonic(), len(params)))
            client.subscribe(params)
            client.send(ok)
        elif method == "UNSUBSCRIBE":
            client.unsubscribe(params)
            client.send(ok)
        elif method == "LIST_SUBSCRIPTIONS":
            client.send(orjson.dumps({"result": sorted(client.subs), "id": rid}))
        elif method == "SET_PROPERTY" and params[:1] == ["combined"]:
            client.state["combined"] = bool(params[1])
            client.send(ok)
        elif method == "GET_PROPERTY" and params[:1] == ["combined"]:
            client.send(orjson.dumps({"result": client.state["combined"], "id": rid}))
        else:
            variants = (
                "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
            )
            client.send(
                orjson.dumps(
                    {
                        "code": 2,
                        "msg": f"Invalid request: unknown variant {method}, expected one of "
                        f"{variants}",
                        "id": rid,
                    }
                )
            )

    # -- market data ----------------------------------------------------------------------

    def tick(self, now_ns: int, events: int) -> None:
        for _ in range(events):
            sym = self.rng.choice(self._order)
            self._publish(sym, sym.step(self.rng), now_ns)
        now = time.monotonic()
        for kind, period in (("depth@100ms", 0.1), ("depth", 1.0)):
            if now - self.last_flush[kind] >= period:
                self.last_flush[kind] = now
                self._flush_depth(kind, now_ns)

    def _send(self, stream: str, payload: bytes) -> None:
        assert self.server is not None
        wrapped = b'{"stream":"%s","data":%s}' % (stream.encode(), payload)
        self.server.broadcast(stream, lambda c: wrapped if c.state["combined"] else payload)

    def _publish(self, sym: SimSymbol, ev: Event, now_ns: int) -> None:
        ms = now_ns // 1_000_000
        low = sym.venue_symbol.lower()
        pd, sd = sym.price_decimals, sym.size_decimals
        if ev.trade is not None:
            t = ev.trade
            p, q = fmt(t.price, pd, PAD), fmt(t.size, sd, PAD)
            maker_buys = t.taker == "sell"
            self.trade_log[sym.venue_symbol].append((t.id, p, q, maker_buys))
            if self.futures:
                trade = {
                    "e": "trade",
                    "E": ms,
                    "T": ms,
                    "s": sym.venue_symbol,
                    "t": t.id,
                    "p": p,
                    "q": q,
                    "X": "MARKET",
                    "m": maker_buys,
                }
            else:
                trade = {
                    "e": "trade",
                    "E": ms,
                    "s": sym.venue_symbol,
                    "t": t.id,
                    "p": p,
                    "q": q,
                    "T": ms,
                    "m": maker_buys,
                    "M": True,
                }
            self._send(f"{low}@trade", orjson.dumps(trade))
            self.agg_id[sym.venue_symbol] += 1
            agg: dict[str, Any] = {
                "e": "aggTrade",
                "E": ms,
                "a": self.agg_id[sym.venue_symbol],
                "s": sym.venue_symbol,
                "p": p,
                "q": q,
                "f": t.id,
                "l": t.id,
                "T": ms,
                "m": maker_buys,
            }
            if not self.futures:
                agg["M"] = True
            self._send(f"{low}@aggTrade", orjson.dumps(agg))
        for kind in ("depth@100ms", "depth"):
            pending = self.pending[kind][sym.venue_symbol]
            self.pending_first[kind].setdefault(sym.venue_symbol, ev.first_id)
            for c in ev.changes:
                pending[(c.side, c.price)] = c.size
        if ev.top_changed:
            b, bq, a, aq = sym.top()
            ticker: dict[str, Any] = {
                "u": sym.update_id,
                "s": sym.venue_symbol,
                "b": fmt(b, pd, PAD),
                "B": fmt(bq, sd, PAD),
                "a": fmt(a, pd, PAD),
                "A": fmt(aq, sd, PAD),
            }
            if self.futures:
                ticker = {"e": "bookTicker", **ticker, "T": ms, "E": ms}
            self._send(f"{low}@bookTicker", orjson.dumps(ticker))

    def _flush_depth(self, kind: str, now_ns: int) -> None:
        ms = now_ns // 1_000_000
        for venue_symbol, changes in self.pending[kind].items():
            if not changes:
                continue
            sym = self.symbols[venue_symbol]
            pd, sd = sym.price_decimals, sym.size_decimals
            first = self.pending_first[kind].pop(venue_symbol)
            bids = [
                [fmt(p, pd, PAD), fmt(q, sd, PAD)] for (s, p), q in changes.items() if s == "bid"
            ]
            asks = [
                [fmt(p, pd, PAD), fmt(q, sd, PAD)] for (s, p), q in changes.items() if s == "ask"
            ]
            msg: dict[str, Any] = {"e": "depthUpdate", "E": ms}
            if self.futures:
                msg |= {
                    "T": ms,
                    "s": venue_symbol,
                    "U": first,
                    "u": sym.update_id,
                    "pu": self.pending_prev_for(kind, venue_symbol, sym.update_id),
                }
            else:
                msg |= {"s": venue_symbol, "U": first, "u": sym.update_id}
            msg |= {"b": bids, "a": asks}
            changes.clear()
            self._send(f"{venue_symbol.lower()}@{kind}", orjson.dumps(msg))

    def pending_prev_for(self, kind: str, venue_symbol: str, last: int) -> int:
        key = f"{kind}:{venue_symbol}"
        prev = self.pending_prev.get(key, self.symbols[venue_symbol].update_id)
        self.pending_prev[key] = last
        return prev

    def skip(self, n: int) -> None:
        """The next diff of every symbol misses `n` update ids."""
        for sym in self.symbols.values():
            for kind in self.pending_first:
                self.pending_first[kind].pop(sym.venue_symbol, None)
                self.pending[kind][sym.venue_symbol].clear()
            sym.update_id += n

    def malformed(self, kind: str) -> bytes:
        stream = f"{self._order[0].venue_symbol.lower()}@trade"
        if kind == "truncated":
            return b'{"stream":"%s","data":{"e":"trade","E":1,"t":' % stream.encode()
        if kind == "invalid_utf8":
            return b'{"stream":"%s","data":"\xff\xfe"}' % stream.encode()
        if kind == "oversize":
            return b'{"stream":"%s","data":"%s"}' % (stream.encode(), b"x" * (2 << 20))
        if kind == "unknown_type":
            return b'{"stream":"%s@mystery","data":{"e":"mystery"}}' % stream.encode()
        if kind == "wrong_types":
            return (
                b'{"stream":"%s","data":{"e":"trade","E":"soon","t":"x","p":1,"q":[],'
                b'"T":null,"m":"yes"}}' % stream.encode()
            )
        raise ValueError(f"unknown malformed kind {kind!r}")

    def shutdown_notice(self) -> bytes:
        return b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":%d}}' % (
            time.time_ns() // 1_000_000
        )

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "violations": dict(self.violations),
            "subscribe_requests": len(self.subscribe_log),
            "update_ids": {s: sym.update_id for s, sym in self.symbols.items()},
        }

    def reject_next(self, count: int) -> None:
        self.reject += count

    def control(self, parts: list[str], query: dict[str, str]) -> Any:
        sym = self.symbols.get(query.get("symbol", ""))
        if parts == ["book"] and sym is not None:
            pd, sd = sym.price_decimals, sym.size_decimals
            return {
                "update_id": sym.update_id,
                "bids": [[fmt(p, pd), fmt(q, sd)] for p, q in sorted(sym.bids.items())],
                "asks": [[fmt(p, pd), fmt(q, sd)] for p, q in sorted(sym.asks.items())],
            }
        if parts == ["trades"] and sym is not None:
            return [list(t) for t in self.trade_log[sym.venue_symbol]]
        return None

    def book(self, venue_symbol: str) -> tuple[dict[int, int], dict[int, int]]:
        sym = self.symbols[venue_symbol]
        return dict(sym.bids), dict(sym.asks)

    # -- blast mode (benchmarks) ----------------------------------------------------------

    def blast_stream(self, name: str) -> BlastStream | None:
        """Pre-encoded frames of stream `name` for `adapters.simkit.blast` (None: not blastable).
        Ids continue from the simulated market's counters, so they keep increasing."""
        if name not in self._blast:
            low, _, kind = name.partition("@")
            sym = self.symbols.get(low.upper())
            self._blast[name] = None if sym is None else _blast_stream(self, sym, name, kind)
        return self._blast[name]


DEPTH_LEVELS = 5  # per side in a blasted depth update: 10 level changes per message
_SPREAD = 20  # blasted prices stay within this many ticks of the top of the book


def _num(name: str, value: int) -> str:
    return f"{{{name}:{len(str(value))}}}"


def _dec(name: str, max_units: int, decimals: int) -> str:
    """A decimal placeholder printed like Binance (8 decimals, zero padded)."""
    pad = "0" * (PAD - decimals) if decimals else "." + "0" * PAD
    return f'"{{{name}:{dec_width(max_units, decimals)}.{decimals}}}{pad}"'


def _blast_stream(sim: BinanceSim, sym: SimSymbol, name: str, kind: str) -> BlastStream | None:
    pd, sd = sym.price_decimals, sym.size_decimals
    bid, ask = sym.best_bid(), sym.best_ask()
    lo, hi = max(1, bid - _SPREAD), ask + _SPREAD
    whole = dec_width(hi, pd)
    floor = 10 ** (pd + whole - 1) if whole > 1 else 0  # no leading zero in "09.99"

    def px(a: np.ndarray[Any, Any]) -> Any:
        return np.maximum(a, floor)

    max_size = 5 * 10**sd
    price, size = _dec("p", hi, pd), _dec("q", max_size, sd)
    vs = sym.venue_symbol
    fut = sim.futures
    if kind in ("trade", "aggTrade"):
        tid = sym.trade_id + 1
        if kind == "trade":
            head = f'"e":"trade","E":{{E:13}},"s":"{vs}","t":{_num("t", tid)},'
            tail = ',"X":"MARKET","m":{m:bool}}' if fut else ',"T":{T:13},"m":{m:bool},"M":true}'
            body = "{" + head + f'"p":{price},"q":{size}' + tail
            if fut:
                body = "{" + f'"e":"trade","E":{{E:13}},"T":{{T:13}},"s":"{vs}",'
                body += f'"t":{_num("t", tid)},"p":{price},"q":{size}' + tail
        else:
            aid = sim.agg_id[vs] + 1
            body = (
                f'{{"e":"aggTrade","E":{{E:13}},"a":{_num("a", aid)},"s":"{vs}","p":{price},'
                f'"q":{size},"f":{_num("f", tid)},"l":{_num("l", tid)},"T":{{T:13}},'
                f'"m":{{m:bool}}' + ("}" if fut else ',"M":true}')
            )

        def fill_trade(n: int, now_ms: int, rng: np.random.Generator) -> Values:
            ids = np.arange(sym.trade_id + 1, sym.trade_id + 1 + n, dtype=np.int64)
            sym.trade_id += n
            values: Values = {
                "E": np.int64(now_ms),
                "T": np.int64(now_ms),
                "t": ids,
                "f": ids,
                "l": ids,
                "p": px(rng.integers(lo, hi + 1, n)),
                "q": rng.integers(1, max_size + 1, n),
                "m": rng.random(n) < 0.5,
            }
            if kind == "aggTrade":
                first = sim.agg_id[vs] + 1
                values["a"] = np.arange(first, first + n, dtype=np.int64)
                sim.agg_id[vs] += n
            return values

        return BlastStream(name, _shapes(name, body), fill_trade)
    uid = sym.update_id + 1
    if kind == "bookTicker":
        bid_q, ask_q = _dec("B", max_size, sd), _dec("A", max_size, sd)
        quote = (
            f'"u":{_num("u", uid)},"s":"{vs}","b":{_dec("b", hi, pd)},"B":{bid_q},'
            f'"a":{_dec("a", hi, pd)},"A":{ask_q}'
        )
        body = f'{{"e":"bookTicker",{quote},"T":{{T:13}},"E":{{E:13}}}}' if fut else f"{{{quote}}}"

        # Its own counter: advancing the book's update id would show as gaps in blasted depth.
        ticker_id = [uid - 1]

        def fill_ticker(n: int, now_ms: int, rng: np.random.Generator) -> Values:
            ids = np.arange(ticker_id[0] + 1, ticker_id[0] + 1 + n, dtype=np.int64)
            ticker_id[0] += n
            return {
                "u": ids,
                "E": np.int64(now_ms),
                "T": np.int64(now_ms),
                "b": px(bid - rng.integers(0, _SPREAD, n)),
                "a": ask + rng.integers(0, _SPREAD, n),
                "B": rng.integers(1, max_size + 1, n),
                "A": rng.integers(1, max_size + 1, n),
            }

        return BlastStream(name, _shapes(name, body), fill_ticker)
    if kind in ("depth", "depth@100ms"):
        per = 2 * DEPTH_LEVELS
        width = len(str(uid + per))

        def levels(side: str) -> str:
            return ",".join(
                f"[{_dec(f'{side}p{i}', hi, pd)},{_dec(f'{side}q{i}', max_size, sd)}]"
                for i in range(DEPTH_LEVELS)
            )

        ids = f'"U":{{U:{width}}},"u":{{u:{width}}}'
        head = '"e":"depthUpdate","E":{E:13},'  # timestamps: 13 digits until the year 2286
        if fut:
            head += f'"T":{{T:13}},"s":"{vs}",{ids},"pu":{{pu:{width}}}'
        else:
            head += f'"s":"{vs}",{ids}'
        body = f'{{{head},"b":[{levels("b")}],"a":[{levels("a")}]}}'

        # Spot: U = previous u + 1. USD-M: U = previous u (= pu), so that the first event
        # after a REST snapshot taken in a quiet moment still has U <= lastUpdateId <= u, the
        # venue's bridging rule.
        step = per - 1 if fut else per

        def fill_depth(n: int, now_ms: int, rng: np.random.Generator) -> Values:
            first = sym.update_id + (0 if fut else 1) + step * np.arange(n, dtype=np.int64)
            sym.update_id += step * n
            now = np.int64(now_ms)
            values: Values = {"E": now, "T": now, "U": first, "u": first + per - 1}
            values["pu"] = first if fut else first - 1
            for i in range(DEPTH_LEVELS):
                values[f"bp{i}"] = px(bid - rng.integers(0, _SPREAD, n))
                values[f"ap{i}"] = ask + rng.integers(0, _SPREAD, n)
                for side in "ba":
                    q = rng.integers(1, max_size + 1, n)
                    values[f"{side}q{i}"] = np.where(rng.random(n) < 0.1, 0, q)
            return values

        return BlastStream(name, _shapes(name, body), fill_depth, levels=per)
    return None


def _shapes(stream: str, body: str) -> dict[bool, FrameTemplate]:
    """Combined-stream (`{"stream":..,"data":..}`) and raw templates of one message."""
    raw = body.encode()
    combined = b'{"stream":"%s","data":%s}' % (stream.encode(), raw)
    return {True: FrameTemplate(combined), False: FrameTemplate(raw)}
