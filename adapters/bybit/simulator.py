"""The Bybit v5 public side of the protocol (spot or linear), for tests, demos and benchmarks.

Speaks what a client of `stream.bybit.com/v5/public/{spot,linear}` sees: `op` `subscribe` and
`unsubscribe` with their acks (`success`, `ret_msg`, `conn_id`, `req_id`, `op`; spot says
`"ret_msg":"subscribe"` and echoes `req_id` only when sent, linear says `""` and always has
`req_id`), the observed error for an unknown topic (`error:handler not found,topic:<topic>`,
the whole request refused), `ping` answered with the category's pong, and the topics
`publicTrade.*`, `tickers.*`, `orderbook.{1,50,200}.*`. Books: a `snapshot` on every
subscription, then `delta`s batched per `book_interval` whose `u` rises by one per message of
each topic; `orderbook.1` is a snapshot of the top at every change. REST
`/v5/market/instruments-info?category=`. Bybit announces nothing before it cuts a connection.

Limits enforced (counted in `violations` and refused): spot at most 10 args per request
(`max_args`), linear at most 21,000 characters of args; `max_topics` per connection (Bybit
documents none for public streams: the default matches the adapter's cap). The texts of these
two refusals are invented (no capture has them).

Restart: `GET /_sim/restart?symbol=BTCUSDT` (every symbol without `symbol`) replays Bybit's
service restart: the market moves on without publishing those changes (`moves` steps), then
every book topic of the symbol starts again at `u=1` with a snapshot of the new book.

Options (`wsm simulate --option NAME=VALUE`): `category` (`spot` | `linear`), `max_topics`,
`max_args`, `book_interval` (seconds).

Blast mode (`blast_stream`): `publicTrade` (one trade a message, always a "Buy": the template
has no text choice), `orderbook.1` and `orderbook.{50,200}` deltas of 5 levels a side, with
`u` continuing the topic's own, so a client subscribed in a quiet market follows them.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict, deque
from typing import Any

import numpy as np
import orjson

from adapters.simkit.blast import BlastStream, FrameTemplate, Values, dec_width
from adapters.simkit.market import DEFAULT_SYMBOLS, Event, SimSymbol, fmt, sim_symbols
from adapters.simkit.server import SimClient, SimServer

DEPTHS = (1, 50, 200)
MAX_ARGS_CHARS = 21_000


def num(units: int, decimals: int) -> str:
    """Spot prints numbers without trailing zeros ("65239", "0.09948")."""
    text = fmt(units, decimals)
    return text.rstrip("0").rstrip(".") if "." in text else text


def padded(units: int, decimals: int) -> str:
    """Linear prints the instrument's decimals ("65095.30", "0.005"), and "0" for nothing."""
    return fmt(units, decimals) if units else "0"


class BybitSim:
    name = "bybit"

    def __init__(
        self,
        symbols: tuple[tuple[str, str, str, float, int, int], ...] = DEFAULT_SYMBOLS,
        *,
        seed: int = 1,
        extra_symbols: int = 0,
        category: str = "spot",
        max_topics: int = 200,
        max_args: int = 10,
        book_interval: float = 0.02,
    ) -> None:
        if category not in ("spot", "linear"):
            raise ValueError(f"unknown category {category!r}")
        self.rng = random.Random(seed)
        self.category = category
        self.linear = category == "linear"
        self.name = "bybit-linear" if self.linear else "bybit"
        self.max_topics = int(max_topics)
        self.max_args = int(max_args)
        self.book_interval = float(book_interval)
        self.num = padded if self.linear else num
        self.symbols = sim_symbols(
            symbols, extra=extra_symbols, quote="USDT", spell=lambda b, q: b + q
        )
        self._order = list(self.symbols.values())
        # per book topic: its `u` (one per message), starting where a long-running topic would
        self.u: dict[str, int] = {}
        self.pending: dict[str, dict[tuple[str, int], int]] = defaultdict(dict)  # per symbol
        self.last_flush = 0.0
        self.skips: dict[str, int] = {}  # book topic -> ids the next delta skips
        self.seq = time.time_ns() // 1_000_000 * 1000  # the cross sequence, from the clock too
        self.last_trade = {v: (s.best_bid(), 10**s.size_decimals) for v, s in self.symbols.items()}
        self.trade_log: dict[str, deque[tuple[int, str, str, bool]]] = defaultdict(
            lambda: deque(maxlen=100_000)
        )
        self.violations: dict[str, int] = defaultdict(int)
        self.subscribe_log: list[tuple[float, int]] = []
        self.requests = 0
        self.pings = 0
        self.reject = 0
        self.restarts = 0
        self.server: SimServer | None = None
        self._blast: dict[str, BlastStream | None] = {}

    def attach(self, server: SimServer) -> None:
        self.server = server

    # -- REST -----------------------------------------------------------------------------

    def http(self, method: str, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        if path == "/v5/market/instruments-info":
            if query.get("category") != self.category:
                body = {"retCode": 10001, "retMsg": "params error", "result": {}, "time": 0}
                return 200, orjson.dumps(body)
            return 200, self._instruments()
        return None

    def _instruments(self) -> bytes:
        items = []
        for v, s in self.symbols.items():
            step = fmt(1, s.size_decimals) if s.size_decimals else "1"
            tick = fmt(1, s.price_decimals) if s.price_decimals else "1"
            item: dict[str, Any] = {"symbol": v}
            if self.linear:
                item |= {
                    "contractType": "LinearPerpetual",
                    "status": "Trading",
                    "baseCoin": s.base,
                    "quoteCoin": s.quote,
                    "priceScale": str(s.price_decimals),
                    "priceFilter": {"minPrice": tick, "maxPrice": "1999999", "tickSize": tick},
                    "lotSizeFilter": {"maxOrderQty": "1000", "minOrderQty": step, "qtyStep": step},
                }
            else:
                item |= {
                    "baseCoin": s.base,
                    "quoteCoin": s.quote,
                    "innovation": "0",
                    "status": "Trading",
                    "marginTrading": "utaOnly",
                    "lotSizeFilter": {
                        "basePrecision": step,
                        "quotePrecision": "0.00000001",
                        "minOrderQty": step,
                        "maxOrderQty": "1000",
                        "minOrderAmt": "1",
                        "maxOrderAmt": "2000000",
                    },
                    "priceFilter": {"tickSize": tick},
                }
            items.append(item)
        result = {"category": self.category, "list": items, "nextPageCursor": ""}
        body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": 0}
        return orjson.dumps(body)

    # -- WebSocket protocol -----------------------------------------------------------------

    def accepts(self, path: str) -> bool:
        return path == f"/v5/public/{self.category}"

    def on_connect(self, client: SimClient, path: str, query: dict[str, str]) -> None:
        client.state["conn_id"] = f"{uuid.uuid4().hex[:20]}-{uuid.uuid4().hex[:5]}"

    def _answer(self, client: SimClient, op: str, ok: bool, text: str, rid: Any) -> bytes:
        msg: dict[str, Any] = {"success": ok, "ret_msg": text, "conn_id": client.state["conn_id"]}
        if self.linear:
            msg["req_id"] = rid if isinstance(rid, str) else ""
        elif isinstance(rid, str):
            msg["req_id"] = rid
        msg["op"] = op
        return orjson.dumps(msg)

    def on_text(self, client: SimClient, text: bytes) -> None:
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            client.send(self._answer(client, "", False, "error:invalid request", None))
            return
        if not isinstance(req, dict):
            client.send(self._answer(client, "", False, "error:invalid request", None))
            return
        op, rid = req.get("op"), req.get("req_id")
        if op == "ping":
            self.pings += 1
            # spot's pong carries no req_id (as documented), linear's always one
            client.send(self._answer(client, "ping", True, "pong", rid if self.linear else None))
        elif op in ("subscribe", "unsubscribe"):
            self.requests += 1
            self._subscribe(client, req, op)
        else:
            client.send(self._answer(client, str(op), False, f"error:unknown op {op}", rid))

    def _valid(self, topic: Any) -> bool:
        if not isinstance(topic, str):
            return False
        kind, _, symbol = topic.rpartition(".")
        known = ("publicTrade", "tickers", *(f"orderbook.{d}" for d in DEPTHS))
        return kind in known and symbol in self.symbols

    def _subscribe(self, client: SimClient, req: dict[str, Any], op: str) -> None:
        rid, args = req.get("req_id"), req.get("args")
        if not isinstance(args, list) or not args:
            client.send(self._answer(client, op, False, "error:args is required", rid))
            return
        bad = next((a for a in args if not self._valid(a)), None)
        if bad is not None:
            text = f"error:handler not found,topic:{bad}"
            client.send(self._answer(client, op, False, text, rid))
            return
        if not self.linear and len(args) > self.max_args:
            self.violations["args_per_request"] += 1
            text = f"error:args size >{self.max_args}"
            client.send(self._answer(client, op, False, text, rid))
            return
        if self.linear and len(orjson.dumps(args)) > MAX_ARGS_CHARS:
            self.violations["args_length"] += 1
            text = f"error:args length >{MAX_ARGS_CHARS}"
            client.send(self._answer(client, op, False, text, rid))
            return
        if op == "unsubscribe":
            client.unsubscribe(args)
            text = "" if self.linear else "unsubscribe"
            client.send(self._answer(client, op, True, text, rid))
            return
        if self.reject:
            self.reject -= 1
            text = f"error:handler not found,topic:{args[0]}"
            client.send(self._answer(client, op, False, text, rid))
            return
        if len(client.subs.union(args)) > self.max_topics:
            self.violations["topics_per_connection"] += 1
            text = f"error:topics per connection >{self.max_topics}"
            client.send(self._answer(client, op, False, text, rid))
            return
        self.subscribe_log.append((time.monotonic(), len(args)))
        client.subscribe(args)
        client.send(self._answer(client, op, True, "" if self.linear else "subscribe", rid))
        now_ns = time.time_ns()
        for topic in args:  # what a subscription starts with
            kind, _, symbol = topic.rpartition(".")
            sym = self.symbols[symbol]
            if kind.startswith("orderbook."):
                client.send(self._book(sym, kind, "snapshot", now_ns))
            elif kind == "tickers":
                client.send(self._ticker(sym, now_ns, None))

    # -- market data --------------------------------------------------------------------------

    def tick(self, now_ns: int, events: int) -> None:
        for _ in range(events):
            sym = self.rng.choice(self._order)
            self._publish(sym, sym.step(self.rng), now_ns)
        now = time.monotonic()
        if now - self.last_flush >= self.book_interval:
            self.last_flush = now
            self._flush(now_ns)

    def _send(self, topic: str, frame: bytes) -> None:
        assert self.server is not None
        self.server.broadcast(topic, lambda c: frame)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _publish(self, sym: SimSymbol, ev: Event, now_ns: int) -> None:
        vs = sym.venue_symbol
        self._next_seq()
        if ev.trade is not None:
            self._trade(sym, ev, now_ns)
        pending = self.pending[vs]
        for c in ev.changes:
            pending[(c.side, c.price)] = c.size
        if ev.top_changed:
            topic = f"orderbook.1.{vs}"
            if self._subscribed(topic):
                self._send(topic, self._book(sym, "orderbook.1", "snapshot", now_ns, bump=True))
            if self.linear:
                self._send(f"tickers.{vs}", self._ticker(sym, now_ns, "top"))

    def _subscribed(self, topic: str) -> bool:
        assert self.server is not None
        return bool(self.server.index.get(topic))

    def _trade(self, sym: SimSymbol, ev: Event, now_ns: int) -> None:
        assert ev.trade is not None
        t, vs, ms = ev.trade, sym.venue_symbol, now_ns // 1_000_000
        p, q = self.num(t.price, sym.price_decimals), self.num(t.size, sym.size_decimals)
        self.trade_log[vs].append((t.id, p, q, t.taker == "sell"))
        self.last_trade[vs] = (t.price, t.size)
        side = "Buy" if t.taker == "buy" else "Sell"
        if self.linear:
            trade: dict[str, Any] = {
                "T": ms,
                "s": vs,
                "S": side,
                "v": q,
                "p": p,
                "L": "PlusTick" if side == "Buy" else "MinusTick",
                "i": str(uuid.UUID(int=self.rng.getrandbits(128), version=5)),
                "BT": False,
                "RPI": False,
                "seq": self.seq,
            }
            frame = {"topic": f"publicTrade.{vs}", "type": "snapshot", "ts": ms, "data": [trade]}
        else:
            trade = {
                "i": str(t.id),
                "T": ms,
                "p": p,
                "v": q,
                "S": side,
                "seq": self.seq,
                "s": vs,
                "BT": False,
                "RPI": False,
            }
            frame = {"topic": f"publicTrade.{vs}", "ts": ms, "type": "snapshot", "data": [trade]}
        self._send(f"publicTrade.{vs}", orjson.dumps(frame))
        self._send(f"tickers.{vs}", self._ticker(sym, now_ns, "trade"))

    def _flush(self, now_ns: int) -> None:
        for vs, changes in self.pending.items():
            if not changes:
                continue
            sym = self.symbols[vs]
            for depth in DEPTHS[1:]:
                kind = f"orderbook.{depth}"
                if self._subscribed(f"{kind}.{vs}"):
                    self._send(f"{kind}.{vs}", self._delta(sym, kind, changes, now_ns))
                else:
                    self._bump(f"{kind}.{vs}")
            changes.clear()

    def _bump(self, topic: str) -> int:
        u = self.u.get(topic)
        if u is None:  # 8 digits with room to grow (blast templates have fixed widths)
            u = self.u[topic] = self.rng.randint(10_000_000, 20_000_000)
        u += 1 + self.skips.pop(topic, 0)
        self.u[topic] = u
        return u

    def _frame(self, topic: str, kind: str, data: dict[str, Any], ms: int) -> bytes:
        if self.linear:
            frame = {"topic": topic, "type": kind, "ts": ms, "data": data, "cts": ms - 1}
        else:
            frame = {"topic": topic, "ts": ms, "type": kind, "data": data, "cts": ms - 1}
        return orjson.dumps(frame)

    def _book(
        self, sym: SimSymbol, kind: str, type_: str, now_ns: int, *, bump: bool = False
    ) -> bytes:
        topic = f"{kind}.{sym.venue_symbol}"
        if bump or topic not in self.u:
            self._bump(topic)
        depth = int(kind.rpartition(".")[2])
        bids, asks = sym.snapshot(depth)
        pd, sd = sym.price_decimals, sym.size_decimals
        data = {
            "s": sym.venue_symbol,
            "b": [[self.num(p, pd), self.num(q, sd)] for p, q in bids],
            "a": [[self.num(p, pd), self.num(q, sd)] for p, q in asks],
            "u": self.u[topic],
            "seq": self.seq,
        }
        return self._frame(topic, type_, data, now_ns // 1_000_000)

    def _delta(
        self, sym: SimSymbol, kind: str, changes: dict[tuple[str, int], int], now_ns: int
    ) -> bytes:
        topic = f"{kind}.{sym.venue_symbol}"
        pd, sd = sym.price_decimals, sym.size_decimals
        sides: dict[str, list[list[str]]] = {"bid": [], "ask": []}
        for (side, price), size in sorted(changes.items(), key=lambda c: c[0][1]):
            sides[side].append([self.num(price, pd), self.num(size, sd)])
        sides["bid"].reverse()  # bids best (highest) first, asks lowest first
        data = {
            "s": sym.venue_symbol,
            "b": sides["bid"],
            "a": sides["ask"],
            "u": self._bump(topic),
            "seq": self.seq,
        }
        return self._frame(topic, "delta", data, now_ns // 1_000_000)

    def _ticker(self, sym: SimSymbol, now_ns: int, what: str | None) -> bytes:
        vs, ms = sym.venue_symbol, now_ns // 1_000_000
        pd, sd = sym.price_decimals, sym.size_decimals
        price, _ = self.last_trade[vs]
        last = self.num(price, pd)
        if not self.linear:
            data = {
                "symbol": vs,
                "lastPrice": last,
                "highPrice24h": last,
                "lowPrice24h": last,
                "prevPrice24h": last,
                "volume24h": "0",
                "turnover24h": "0",
                "price24hPcnt": "0",
                "usdIndexPrice": last,
            }
            frame = {"topic": f"tickers.{vs}", "ts": ms, "type": "snapshot", "cs": self.seq}
            return orjson.dumps({**frame, "data": data})
        b, bq, a, aq = sym.top()
        top = {
            "bid1Price": self.num(b, pd),
            "bid1Size": self.num(bq, sd),
            "ask1Price": self.num(a, pd),
            "ask1Size": self.num(aq, sd),
        }
        if what is None:
            data = {"symbol": vs, "tickDirection": "ZeroPlusTick", "lastPrice": last,
                    "markPrice": last, "indexPrice": last, **top}  # fmt: skip
            kind = "snapshot"
        elif what == "trade":
            data, kind = {"symbol": vs, "lastPrice": last}, "delta"
        else:
            data, kind = {"symbol": vs, **top}, "delta"
        body = {"topic": f"tickers.{vs}", "type": kind, "data": data, "cs": self.seq, "ts": ms}
        return orjson.dumps(body)

    # -- faults and control -------------------------------------------------------------------

    def restart(self, symbols: list[str], moves: int = 5) -> int:
        """Bybit's service restart: changes nobody hears of, then `u=1` snapshots."""
        now_ns = time.time_ns()
        self._flush(now_ns)  # what was published before the restart
        for vs in symbols:
            sym = self.symbols[vs]
            for _ in range(moves):
                ev = sym.step(self.rng)
                if ev.trade is not None:
                    self._trade(sym, ev, now_ns)  # trades still go out: only books restart
            self.pending[vs].clear()
            for depth in DEPTHS:
                topic = f"orderbook.{depth}.{vs}"
                self.u[topic] = 1
                self._send(topic, self._book(sym, f"orderbook.{depth}", "snapshot", now_ns))
        self.restarts += 1
        return len(symbols)

    def skip(self, n: int) -> None:
        """The next delta of every book topic skips `n` update ids."""
        for vs in self.symbols:
            for depth in DEPTHS[1:]:
                self.skips[f"orderbook.{depth}.{vs}"] = n

    def malformed(self, kind: str) -> bytes:
        topic = f"publicTrade.{self._order[0].venue_symbol}".encode()
        head = b'{"topic":"%s","ts":1,"type":"snapshot","data":' % topic
        if kind == "truncated":
            return head + b'[{"i":"1","T":'
        if kind == "invalid_utf8":
            return head + b'"\xff\xfe"}'
        if kind == "oversize":
            return head + b'"%s"}' % (b"x" * (2 << 20))
        if kind == "unknown_type":
            return b'{"topic":"mystery.BTCUSDT","ts":1,"type":"snapshot","data":{}}'
        if kind == "wrong_types":
            return head + b'[{"i":true,"T":"soon","p":[],"v":{},"S":1}]}'
        raise ValueError(f"unknown malformed kind {kind!r}")

    def shutdown_notice(self) -> bytes | None:
        return None  # Bybit announces nothing before it cuts a connection

    def reject_next(self, count: int) -> None:
        self.reject += count

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "violations": dict(self.violations),
            "subscribe_requests": len(self.subscribe_log),
            "max_args_per_request": max((n for _, n in self.subscribe_log), default=0),
            "pings": self.pings,
            "restarts": self.restarts,
            "update_ids": dict(self.u),
        }

    def control(self, parts: list[str], query: dict[str, str]) -> Any:
        if parts == ["restart"]:
            symbols = [query["symbol"]] if "symbol" in query else list(self.symbols)
            if not all(s in self.symbols for s in symbols):
                raise ValueError(f"unknown symbol {query.get('symbol')!r}")
            return {"ok": True, "restarted": self.restart(symbols, int(query.get("moves", "5")))}
        sym = self.symbols.get(query.get("symbol", ""))
        if parts == ["book"] and sym is not None:
            pd, sd = sym.price_decimals, sym.size_decimals
            return {
                "update_id": self.u.get(f"orderbook.200.{sym.venue_symbol}", 0),
                "bids": [[fmt(p, pd), fmt(q, sd)] for p, q in sorted(sym.bids.items())],
                "asks": [[fmt(p, pd), fmt(q, sd)] for p, q in sorted(sym.asks.items())],
            }
        if parts == ["trades"] and sym is not None:
            return [list(t) for t in self.trade_log[sym.venue_symbol]]
        return None

    # -- blast mode (benchmarks) ----------------------------------------------------------

    def blast_stream(self, name: str) -> BlastStream | None:
        """Pre-encoded frames of topic `name` for `adapters.simkit.blast` (None: not
        blastable). Ids continue from the simulated market's counters."""
        if name not in self._blast:
            kind, _, symbol = name.rpartition(".")
            sym = self.symbols.get(symbol)
            self._blast[name] = None if sym is None else _blast_stream(self, sym, name, kind)
        return self._blast[name]


BLAST_LEVELS = 5  # per side in a blasted delta: 10 level changes per message
_SPREAD = 20  # blasted prices stay within this many ticks of the top of the book


def _blast_stream(sim: BybitSim, sym: SimSymbol, topic: str, kind: str) -> BlastStream | None:
    pd, sd, vs = sym.price_decimals, sym.size_decimals, sym.venue_symbol
    bid, ask = sym.best_bid(), sym.best_ask()
    lo, hi = max(1, bid - _SPREAD), ask + _SPREAD
    whole = dec_width(hi, pd)
    floor = 10 ** (pd + whole - 1) if whole > 1 else 0  # no leading zero in "09.99"
    max_size = 5 * 10**sd

    def px(a: np.ndarray[Any, Any]) -> Any:
        return np.maximum(a, floor)

    def dec(name: str, units: int, decimals: int) -> str:
        return f'"{{{name}:{dec_width(units, decimals)}.{decimals}}}"'

    def envelope(type_: str, data: str, cts: bool) -> str:
        ts = '"ts":{ts:13}'
        head = f'"type":"{type_}",{ts}' if sim.linear else f'{ts},"type":"{type_}"'
        return f'{{"topic":"{topic}",{head},"data":{data}' + (',"cts":{cts:13}}' if cts else "}")

    seq_width = len(str(sim.seq))

    def next_seqs(n: int) -> Any:
        seqs = np.arange(sim.seq + 1, sim.seq + 1 + n, dtype=np.int64)
        sim.seq += n
        return seqs

    if kind == "publicTrade":
        price, size = dec("p", hi, pd), dec("v", max_size, sd)
        seq = f'"seq":{{seq:{seq_width}}}'
        if sim.linear:
            trade = (
                f'{{"T":{{T:13}},"s":"{vs}","S":"Buy","v":{size},"p":{price},"L":"PlusTick",'
                f'"i":"a9188a0a-82bc-50de-be60-{{i:12}}","BT":false,"RPI":false,{seq}}}'
            )
        else:
            width = len(str(sym.trade_id + 1))
            trade = (
                f'{{"i":"{{i:{width}}}","T":{{T:13}},"p":{price},"v":{size},"S":"Buy",{seq},'
                f'"s":"{vs}","BT":false,"RPI":false}}'
            )
        body = envelope("snapshot", f"[{trade}]", False)

        def fill_trade(n: int, now_ms: int, rng: np.random.Generator) -> Values:
            ids = np.arange(sym.trade_id + 1, sym.trade_id + 1 + n, dtype=np.int64)
            sym.trade_id += n
            now = np.int64(now_ms)
            return {
                "ts": now,
                "T": now,
                "i": ids if not sim.linear else 10**11 + ids % 10**11,
                "p": px(rng.integers(lo, hi + 1, n)),
                "v": rng.integers(1, max_size + 1, n),
                "seq": next_seqs(n),
            }

        return BlastStream(topic, {True: FrameTemplate(body.encode())}, fill_trade)
    if kind not in ("orderbook.1", "orderbook.50", "orderbook.200"):
        return None
    levels = 1 if kind == "orderbook.1" else BLAST_LEVELS
    if topic not in sim.u:
        sim._bump(topic)
    width = len(str(sim.u[topic] + 1))

    def side(name: str) -> str:
        return ",".join(
            f"[{dec(f'{name}p{i}', hi, pd)},{dec(f'{name}q{i}', max_size, sd)}]"
            for i in range(levels)
        )

    data = (
        f'{{"s":"{vs}","b":[{side("b")}],"a":[{side("a")}],"u":{{u:{width}}},'
        f'"seq":{{seq:{seq_width}}}}}'
    )
    body = envelope("snapshot" if levels == 1 else "delta", data, True)

    def fill_book(n: int, now_ms: int, rng: np.random.Generator) -> Values:
        first = sim.u[topic] + 1 + sim.skips.pop(topic, 0)  # a `skip` fault: ids missed
        sim.u[topic] = first + n - 1
        now = np.int64(now_ms)
        values: Values = {
            "ts": now,
            "cts": now - 1,
            "u": np.arange(first, first + n, dtype=np.int64),
            "seq": next_seqs(n),
        }
        for i in range(levels):
            values[f"bp{i}"] = px(bid - rng.integers(0, _SPREAD, n))
            values[f"ap{i}"] = ask + rng.integers(0, _SPREAD, n)
            for s in "ba":
                q = rng.integers(1, max_size + 1, n)
                values[f"{s}q{i}"] = q if levels == 1 else np.where(rng.random(n) < 0.1, 0, q)
        return values

    book_levels = 0 if levels == 1 else 2 * levels
    return BlastStream(topic, {True: FrameTemplate(body.encode())}, fill_book, levels=book_levels)
