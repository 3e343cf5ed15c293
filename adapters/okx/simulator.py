"""The OKX v5 public side of the protocol, for tests, demos and benchmarks.

Speaks what a client of `wss://ws.okx.com:8443/ws/v5/public` sees: `{"op":"subscribe"|
"unsubscribe","args":[{"channel","instId"},..]}` (an optional `id`, echoed), answered by one
`{"event":"subscribe","arg":{..},"connId":..}` per channel, or `{"event":"error","code","msg"}`
(60012 invalid request, 60018 unknown channel or instrument, 60014 too frequent); the text
`ping` answered by the text `pong`; the close of a connection on which nothing flowed for 30 s
(`idle_close`); the service
upgrade notice (64008) before a cut. Channels `trades` (every trade, with `count`, `source` and
`seqId` as OKX sends them now), `tickers` (at most every 100 ms per instrument), `bbo-tbt`
(every change of the best levels), `books` (a snapshot of the whole book on subscribing, then
every change at once: `seqId`/`prevSeqId` and a CRC32 `checksum` of the best 25 levels, as the
recorded frames carry it; an update with `prevSeqId == seqId` and no levels when a book was
quiet for a second) and `books5`. Numbers are decimal strings without trailing zeros. REST:
`/api/v5/public/instruments?instType=SPOT` and `/api/v5/market/books?instId=..&sz=..`.

Limits, as documented: 3 connection requests per second per IP, 480 subscribe/unsubscribe
requests per hour per connection, 64 KB of args per request; past them the simulator counts a
violation (`/_sim/stats`) and answers 60014 for the requests.

Options (`wsm simulate --option NAME=VALUE`): `checksums=0` sends checksum 0 (none) on every
book message; `keepalive` (seconds of quiet before a no-change book update, 0: never);
`ws_snapshot=0` sends no `books` snapshot on subscribing (only updates: a client must take its
first book from REST).

The REST book is what OKX answers: `asks`, `bids` and `ts`, the book's generation time (the
`ts` of the last `books` update in it), no `seqId` and no checksum. Book updates of a symbol
carry strictly increasing `ts` (OKX pushes `books` every 100 ms), so an update is in a REST
book exactly when its `ts` is not later. `/_sim/stats` counts the REST book requests per
instrument (`rest_books`).
Faults of its own: `GET /_sim/corrupt?symbol=..&count=1`: the next book update of the symbol
(of each, without `symbol`) carries one wrong level size under the true checksum.
"""

from __future__ import annotations

import random
import time
import zlib
from collections import defaultdict, deque
from typing import Any

import numpy as np
import orjson

from adapters.simkit.blast import BlastStream, FrameTemplate, Values, dec_width
from adapters.simkit.market import DEFAULT_SYMBOLS, Event, SimSymbol, fmt, sim_symbols
from adapters.simkit.server import SimClient, SimServer

CHANNELS = ("trades", "tickers", "bbo-tbt", "books", "books5")
MAX_REQUESTS_PER_HOUR = 480
MAX_CONNECTIONS_PER_SECOND = 3
MAX_ARGS_BYTES = 64 * 1024
IDLE_CLOSE = 30.0
NOTICE = (
    b'{"event":"notice","code":"64008","msg":"The connection will soon be closed for a '
    b'service upgrade. Please reconnect.","connId":"a4d3ae55"}'
)


def num(units: int, decimals: int) -> str:
    """OKX prints numbers without trailing zeros ("30236", "0.0002")."""
    text = fmt(units, decimals)
    return text.rstrip("0").rstrip(".") if "." in text else text


def crc(bids: list[list[str]], asks: list[list[str]]) -> int:
    parts: list[str] = []
    for i in range(max(len(bids), len(asks))):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


class OkxSim:
    name = "okx"

    def __init__(
        self,
        symbols: tuple[tuple[str, str, str, float, int, int], ...] = DEFAULT_SYMBOLS,
        *,
        seed: int = 1,
        extra_symbols: int = 0,
        checksums: bool | str = True,
        keepalive: float | str = 1.0,
        ws_snapshot: bool | str = True,
        ticker_interval: float = 0.1,
        enforce_limits: bool = True,
        idle_close: float | str = IDLE_CLOSE,
    ) -> None:
        self.idle_close = float(idle_close)
        self.rng = random.Random(seed)
        self.checksums = str(checksums).lower() not in ("0", "false", "no")
        self.keepalive = float(keepalive)
        self.ws_snapshot = str(ws_snapshot).lower() not in ("0", "false", "no")
        self.book_ts: dict[str, int] = {}  # symbol -> `ts` (ms) of its book's last update
        self.rest_books: dict[str, int] = defaultdict(int)  # REST book requests per symbol
        self.ticker_interval = ticker_interval
        self.enforce_limits = enforce_limits
        self.symbols = sim_symbols(
            symbols, extra=extra_symbols, quote="USDT", spell=lambda b, q: f"{b}-{q}", respell=True
        )
        self._order = list(self.symbols.values())
        self.last_trade = {v: (s.best_bid(), 10**s.size_decimals) for v, s in self.symbols.items()}
        self.open24h = {v: s.best_bid() for v, s in self.symbols.items()}
        self.volume = dict.fromkeys(self.symbols, 0)
        self.ticker_due: dict[str, float] = {}
        self.ticker_ts: dict[str, int] = {}
        self.ticker_dirty: set[str] = set()
        self.book_sent: dict[str, float] = {}  # symbol -> when its last book message went out
        self.top5: dict[str, Any] = {}
        self.trade_log: dict[str, deque[tuple[int, str, str, bool]]] = defaultdict(
            lambda: deque(maxlen=100_000)
        )
        self.corrupt: dict[str | None, int] = {}
        self.corrupted = 0
        self.reject = 0
        self.requests = 0
        self.pings = 0
        self.violations: dict[str, int] = defaultdict(int)
        self._connects: deque[float] = deque()
        self._conn_ids = 0
        self.server: SimServer | None = None
        self._blast: dict[str, BlastStream | None] = {}

    def attach(self, server: SimServer) -> None:
        self.server = server

    # -- REST -----------------------------------------------------------------------------

    def http(self, method: str, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        if path == "/api/v5/public/instruments":
            if query.get("instType") != "SPOT":
                return 200, b'{"code":"51000","msg":"Parameter instType error","data":[]}'
            return 200, orjson.dumps({"code": "0", "msg": "", "data": self._instruments()})
        if path == "/api/v5/market/books":
            sym = self.symbols.get(query.get("instId", ""))
            if sym is None:
                return 200, b'{"code":"51001","msg":"Instrument ID does not exist","data":[]}'
            depth = min(int(query.get("sz", "1")), 400)
            bids, asks = self._levels(sym, depth)
            self.rest_books[sym.venue_symbol] += 1
            # the book's generation time; the updates after it are stamped later
            ts = self.book_ts.setdefault(sym.venue_symbol, time.time_ns() // 1_000_000)
            data = {"asks": asks, "bids": bids, "ts": str(ts)}
            return 200, orjson.dumps({"code": "0", "msg": "", "data": [data]})
        return None

    def _instruments(self) -> list[dict[str, Any]]:
        return [
            {
                "instType": "SPOT",
                "instId": v,
                "uly": "",
                "instFamily": "",
                "baseCcy": s.base,
                "quoteCcy": s.quote,
                "settleCcy": "",
                "ctVal": "",
                "ctMult": "",
                "ctValCcy": "",
                "optType": "",
                "stk": "",
                "listTime": "1611916828000",
                "expTime": "",
                "lever": "10",
                "tickSz": fmt(1, s.price_decimals),
                "lotSz": fmt(1, s.size_decimals),
                "minSz": fmt(1, s.size_decimals),
                "ctType": "",
                "alias": "",
                "state": "live",
                "maxLmtSz": "9999999999",
                "maxMktSz": "1000000",
            }
            for v, s in self.symbols.items()
        ]

    # -- WebSocket protocol ---------------------------------------------------------------

    def accepts(self, path: str) -> bool:
        if path not in ("/ws/v5/public", "/", ""):
            return False
        now = time.monotonic()
        self._connects.append(now)
        while now - self._connects[0] >= 1.0:
            self._connects.popleft()
        if self.enforce_limits and len(self._connects) > MAX_CONNECTIONS_PER_SECOND:
            self.violations["connections_per_second"] += 1
        return True

    def on_connect(self, client: SimClient, path: str, query: dict[str, str]) -> None:
        self._conn_ids += 1
        client.state.update(conn_id=f"{self._conn_ids:08x}", ops=deque())

    def on_text(self, client: SimClient, text: bytes) -> None:
        if text == b"ping":
            self.pings += 1
            client.send(b"pong")
            return
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self._error(
                client, None, "60012", f"Invalid request: {text.decode(errors='replace')}"
            )
        if not isinstance(req, dict):
            return self._error(client, None, "60012", f"Invalid request: {text.decode()}")
        rid = req.get("id")
        rid = rid if isinstance(rid, str) else None
        op, args = req.get("op"), req.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            return self._error(client, rid, "60012", f"Invalid request: {text.decode()}")
        self.requests += 1
        if self._over_limits(client, text):
            return self._error(client, rid, "60014", "Requests too frequent.")
        pairs: list[tuple[str, str]] = []
        for arg in args:
            channel = arg.get("channel") if isinstance(arg, dict) else None
            inst = arg.get("instId") if isinstance(arg, dict) else None
            if channel not in CHANNELS or inst not in self.symbols:
                msg = f"Wrong URL or channel:{channel},instId:{inst} doesn't exist."
                return self._error(client, rid, "60018", msg)
            pairs.append((channel, inst))
        if op == "subscribe" and self.reject:
            self.reject -= 1
            return self._error(client, rid, "60012", f"Invalid request: {text.decode()}")
        for channel, inst in pairs:
            name = f"{channel}:{inst}"
            if op == "subscribe":
                client.subscribe([name])
            else:
                client.unsubscribe([name])
            ack: dict[str, Any] = {} if rid is None else {"id": rid}
            ack |= {"event": op, "arg": {"channel": channel, "instId": inst}}
            ack["connId"] = client.state["conn_id"]
            client.send(orjson.dumps(ack))
            if op == "subscribe":
                self._on_subscribed(client, channel, self.symbols[inst])

    def _over_limits(self, client: SimClient, text: bytes) -> bool:
        if not self.enforce_limits:
            return False
        ops: deque[float] = client.state["ops"]
        now = time.monotonic()
        ops.append(now)
        while now - ops[0] >= 3600.0:
            ops.popleft()
        if len(ops) > MAX_REQUESTS_PER_HOUR:
            self.violations["requests_per_hour"] += 1
            return True
        if len(text) > MAX_ARGS_BYTES:
            self.violations["request_bytes"] += 1
            return True
        return False

    def _error(self, client: SimClient, rid: str | None, code: str, msg: str) -> None:
        answer: dict[str, Any] = {} if rid is None else {"id": rid}
        answer |= {"event": "error", "code": code, "msg": msg}
        answer["connId"] = client.state.get("conn_id", "")
        client.send(orjson.dumps(answer))

    def _on_subscribed(self, client: SimClient, channel: str, sym: SimSymbol) -> None:
        now_ns = time.time_ns()
        if channel == "books" and self.ws_snapshot:
            client.send(self._book_frame(sym, "snapshot", *self._levels(sym, 400), now_ns))
        elif channel == "books5":
            client.send(self._books5(sym, now_ns))

    # -- market data ----------------------------------------------------------------------

    def tick(self, now_ns: int, events: int) -> None:
        now = time.monotonic()
        self._close_idle_clients(now)
        for _ in range(events):
            sym = self.rng.choice(self._order)
            self._publish(sym, sym.step(self.rng), now_ns)
        for vs in list(self.ticker_dirty):
            if now - self.ticker_due.get(vs, 0.0) >= self.ticker_interval:
                self.ticker_due[vs] = now
                self.ticker_dirty.discard(vs)
                self._ticker(self.symbols[vs], now_ns)
        if self.keepalive > 0:
            for vs, sym in self.symbols.items():
                if now - self.book_sent.get(vs, 0.0) >= self.keepalive:
                    self.book_sent[vs] = now
                    uid = sym.update_id
                    self._send(f"books:{vs}", self._book_frame(sym, "update", [], [], now_ns, uid))

    def _close_idle_clients(self, now: float) -> None:
        """OKX cuts a connection on which nothing flowed for 30 s, either way (a client with
        quiet subscriptions must ping). A stalled one hears nothing, not even the close."""
        assert self.server is not None
        for client in list(self.server.clients):
            if client.stalled or client.closing:
                continue
            state = client.state
            if client.sent != state.get("sent_seen"):
                state["sent_seen"] = client.sent
                state["active_at"] = now
            last = client.recv_times[-1] if client.recv_times else client.connected_at
            if now - max(last, state.get("active_at", 0.0)) > self.idle_close:
                self.violations["idle_close"] += 1
                client.close(4004)

    def _send(self, stream: str, frame: bytes) -> None:
        assert self.server is not None
        self.server.broadcast(stream, lambda c: frame)

    def _publish(self, sym: SimSymbol, ev: Event, now_ns: int) -> None:
        vs, pd, sd = sym.venue_symbol, sym.price_decimals, sym.size_decimals
        ts = str(now_ns // 1_000_000)
        if ev.trade is not None:
            t = ev.trade
            p, q = num(t.price, pd), num(t.size, sd)
            self.trade_log[vs].append((t.id, p, q, t.taker == "sell"))
            self.last_trade[vs] = (t.price, t.size)
            self.volume[vs] += t.size
            trade = {
                "instId": vs,
                "tradeId": str(t.id),
                "px": p,
                "sz": q,
                "side": t.taker,
                "ts": ts,
                "count": "1",
                "source": "0",
                "seqId": ev.first_id,
            }
            self._send(f"trades:{vs}", self._push("trades", vs, trade))
        self._book_update(sym, ev, now_ns)
        if ev.top_changed:
            self.ticker_dirty.add(vs)
            b, bq, a, aq = sym.top()
            bbo = {
                "asks": [[num(a, pd), num(aq, sd), "0", self._orders(a, aq)]],
                "bids": [[num(b, pd), num(bq, sd), "0", self._orders(b, bq)]],
                "ts": ts,
                "seqId": ev.last_id,
            }
            self._send(f"bbo-tbt:{vs}", self._push("bbo-tbt", vs, bbo))
        top5 = sym.snapshot(5)
        if top5 != self.top5.get(vs):
            self.top5[vs] = top5
            self._send(f"books5:{vs}", self._books5(sym, now_ns))

    def _book_update(self, sym: SimSymbol, ev: Event, now_ns: int) -> None:
        vs, pd, sd = sym.venue_symbol, sym.price_decimals, sym.size_decimals
        last: dict[tuple[str, int], int] = {}  # one change per price: its last
        for c in ev.changes:
            last.pop((c.side, c.price), None)
            last[(c.side, c.price)] = c.size
        bids = sorted(((p, q) for (s, p), q in last.items() if s == "bid"), reverse=True)
        asks = sorted((p, q) for (s, p), q in last.items() if s == "ask")
        bid_levels = [[num(p, pd), num(q, sd), "0", self._orders(p, q)] for p, q in bids]
        ask_levels = [[num(p, pd), num(q, sd), "0", self._orders(p, q)] for p, q in asks]
        self._corrupt(sym, bids, asks, bid_levels, ask_levels)
        frame = self._book_frame(
            sym, "update", bid_levels, ask_levels, now_ns, ev.last_id, prev=ev.first_id - 1
        )
        self.book_sent[vs] = time.monotonic()
        self._send(f"books:{vs}", frame)

    def _corrupt(
        self,
        sym: SimSymbol,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
        bid_levels: list[list[str]],
        ask_levels: list[list[str]],
    ) -> None:
        """A pending `corrupt` fault: one level inside the checksummed top 25 gets a wrong
        size (one lot more), while the checksum stays the true book's."""
        vs = sym.venue_symbol
        key: str | None
        if self.corrupt.get(vs):
            key = vs
        elif self.corrupt.get(None):
            key = None
        else:
            return
        top_bids, top_asks = sym.snapshot(25)
        for levels, raw, top, better in (
            (bid_levels, bids, top_bids, 1),
            (ask_levels, asks, top_asks, -1),
        ):
            for i, (p, q) in enumerate(raw):
                # inside the checksummed levels, or a removal that would be
                if len(top) < 25 or p * better >= top[-1][0] * better:
                    levels[i][1] = num(q + 1, sym.size_decimals)
                    levels[i][3] = "1"
                    self.corrupt[key] -= 1
                    self.corrupted += 1
                    return

    @staticmethod
    def _orders(price: int, size: int) -> str:
        return str(price % 7 + 1) if size else "0"

    def _levels(self, sym: SimSymbol, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        pd, sd = sym.price_decimals, sym.size_decimals
        bids, asks = sym.snapshot(depth)
        return (
            [[num(p, pd), num(q, sd), "0", self._orders(p, q)] for p, q in bids],
            [[num(p, pd), num(q, sd), "0", self._orders(p, q)] for p, q in asks],
        )

    def _checksum(self, sym: SimSymbol) -> int:
        if not self.checksums:
            return 0
        bids, asks = self._levels(sym, 25)
        return crc(bids, asks)

    def _book_frame(
        self,
        sym: SimSymbol,
        action: str,
        bids: list[list[str]],
        asks: list[list[str]],
        now_ns: int,
        seq: int | None = None,
        *,
        prev: int | None = None,
    ) -> bytes:
        seq = sym.update_id if seq is None else seq
        if prev is None:
            prev = -1 if action == "snapshot" else seq
        ts = now_ns // 1_000_000
        if action == "update":  # strictly increasing per symbol, past any REST book's
            ts = self.book_ts[sym.venue_symbol] = max(ts, self.book_ts.get(sym.venue_symbol, 0) + 1)
        data = {
            "asks": asks,
            "bids": bids,
            "ts": str(ts),
            "checksum": self._checksum(sym),
            "prevSeqId": prev,
            "seqId": seq,
        }
        arg = {"channel": "books", "instId": sym.venue_symbol}
        frame: dict[str, Any] = {"arg": arg, "action": action, "data": [data]}
        return orjson.dumps(frame)

    def _books5(self, sym: SimSymbol, now_ns: int) -> bytes:
        bids, asks = self._levels(sym, 5)
        data: dict[str, Any] = {"asks": asks, "bids": bids, "instId": sym.venue_symbol}
        data |= {"ts": str(now_ns // 1_000_000), "seqId": sym.update_id}
        return self._push("books5", sym.venue_symbol, data)

    @staticmethod
    def _push(channel: str, inst: str, data: dict[str, Any]) -> bytes:
        return orjson.dumps({"arg": {"channel": channel, "instId": inst}, "data": [data]})

    def _ticker(self, sym: SimSymbol, now_ns: int) -> None:
        vs, pd, sd = sym.venue_symbol, sym.price_decimals, sym.size_decimals
        b, bq, a, aq = sym.top()
        price, size = self.last_trade[vs]
        ts = max(now_ns // 1_000_000, self.ticker_ts.get(vs, 0) + 1)  # strictly increasing
        self.ticker_ts[vs] = ts
        open_ = num(self.open24h[vs], pd)
        vol = self.volume[vs]
        ticker = {
            "instType": "SPOT",
            "instId": vs,
            "last": num(price, pd),
            "lastSz": num(size, sd),
            "askPx": num(a, pd),
            "askSz": num(aq, sd),
            "bidPx": num(b, pd),
            "bidSz": num(bq, sd),
            "open24h": open_,
            "high24h": num(max(price, self.open24h[vs]), pd),
            "low24h": num(min(price, self.open24h[vs]), pd),
            "volCcy24h": num(vol * price // 10**sd, pd),
            "vol24h": num(vol, sd),
            "sodUtc0": open_,
            "sodUtc8": open_,
            "ts": str(ts),
        }
        self._send(f"tickers:{vs}", self._push("tickers", vs, ticker))

    # -- faults and inspection ------------------------------------------------------------

    def skip(self, n: int) -> None:
        """The next book update of every symbol names a `prevSeqId` `n` ids past the last."""
        for sym in self.symbols.values():
            sym.update_id += n

    def malformed(self, kind: str) -> bytes:
        vs = self._order[0].venue_symbol
        head = b'{"arg":{"channel":"trades","instId":"%s"},"data":' % vs.encode()
        if kind == "truncated":
            return head + b'[{"instId":"%s","tradeId":' % vs.encode()
        if kind == "invalid_utf8":
            return head + b'[{"side":"\xff\xfe"}]}'
        if kind == "oversize":
            return head + b'[{"pad":"%s"}]}' % (b"x" * (2 << 20))
        if kind == "unknown_type":
            return b'{"arg":{"channel":"mystery","instId":"%s"},"data":[{}]}' % vs.encode()
        if kind == "wrong_types":
            return head + b'[{"instId":1,"tradeId":[],"px":{},"sz":null,"side":2,"ts":true}]}'
        raise ValueError(f"unknown malformed kind {kind!r}")

    def shutdown_notice(self) -> bytes | None:
        return NOTICE

    def reject_next(self, count: int) -> None:
        self.reject += count

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "pings": self.pings,
            "violations": dict(self.violations),
            "corrupted": self.corrupted,
            "rest_books": dict(self.rest_books),
            "update_ids": {s: sym.update_id for s, sym in self.symbols.items()},
        }

    # -- blast mode (benchmarks) ----------------------------------------------------------

    def blast_stream(self, name: str) -> BlastStream | None:
        """Pre-encoded frames of `trades:<instId>` and `books:<instId>` for
        `adapters.simkit.blast` (None: not blastable). Ids continue from the simulated market's
        counters; blasted book updates chain `prevSeqId` and carry checksum 0 (none), and
        their numbers are fixed-width (zero padded), which OKX's text never is."""
        if name not in self._blast:
            channel, _, inst = name.partition(":")
            sym = self.symbols.get(inst)
            ok = sym is not None and channel in ("trades", "books")
            self._blast[name] = _blast_stream(sym, channel) if ok and sym else None
        return self._blast[name]

    def control(self, parts: list[str], query: dict[str, str]) -> Any:
        if parts == ["corrupt"]:
            symbol = query.get("symbol")
            if symbol is not None and symbol not in self.symbols:
                raise ValueError(f"unknown symbol {symbol!r}")
            self.corrupt[symbol] = self.corrupt.get(symbol, 0) + int(query.get("count", "1"))
            return {"ok": True}
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


BLAST_LEVELS = 5  # per side in a blasted book update: 10 level changes per message
_SPREAD = 20  # blasted prices stay within this many ticks of the top of the book


def _blast_stream(sym: SimSymbol, channel: str) -> BlastStream:
    pd, sd = sym.price_decimals, sym.size_decimals
    bid, ask = sym.best_bid(), sym.best_ask()
    lo, hi = max(1, bid - _SPREAD), ask + _SPREAD
    whole = dec_width(hi, pd)
    floor = 10 ** (pd + whole - 1) if whole > 1 else 0  # no leading zero in a price

    def px(a: np.ndarray[Any, Any]) -> Any:
        return np.maximum(a, floor)

    max_size = 5 * 10**sd
    price = f"{{p:{whole}.{pd}}}"
    size = f"{{q:{dec_width(max_size, sd)}.{sd}}}"
    vs = sym.venue_symbol
    arg = f'{{"arg":{{"channel":"{channel}","instId":"{vs}"}},'
    if channel == "trades":
        tid = len(str(sym.trade_id + 1))
        body = (
            f'{arg}"data":[{{"instId":"{vs}","tradeId":"{{t:{tid}}}","px":"{price}",'
            f'"sz":"{size}","side":"buy","ts":"{{T:13}}","count":"1","source":"0",'
            f'"seqId":{{s:{tid}}}}}]}}'
        )

        def fill_trade(n: int, now_ms: int, rng: np.random.Generator) -> Values:
            ids = np.arange(sym.trade_id + 1, sym.trade_id + 1 + n, dtype=np.int64)
            sym.trade_id += n
            return {
                "T": np.int64(now_ms),
                "t": ids,
                "s": ids,
                "p": px(rng.integers(lo, hi + 1, n)),
                "q": rng.integers(1, max_size + 1, n),
            }

        return BlastStream(f"trades:{vs}", _shapes(body), fill_trade)
    width = len(str(sym.update_id + 1))

    def levels(side: str) -> str:
        return ",".join(
            f'["{{{side}p{i}:{whole}.{pd}}}","{{{side}q{i}:{dec_width(max_size, sd)}.{sd}}}",'
            f'"0","1"]'
            for i in range(BLAST_LEVELS)
        )

    body = (
        f'{arg}"action":"update","data":[{{"asks":[{levels("a")}],"bids":[{levels("b")}],'
        f'"ts":"{{T:13}}","checksum":0,"prevSeqId":{{pu:{width}}},"seqId":{{u:{width}}}}}]}}'
    )

    def fill_books(n: int, now_ms: int, rng: np.random.Generator) -> Values:
        seq = sym.update_id + 1 + np.arange(n, dtype=np.int64)
        sym.update_id += n
        values: Values = {"T": np.int64(now_ms), "u": seq, "pu": seq - 1}
        for i in range(BLAST_LEVELS):
            values[f"bp{i}"] = px(bid - rng.integers(0, _SPREAD, n))
            values[f"ap{i}"] = ask + rng.integers(0, _SPREAD, n)
            for side in "ba":
                q = rng.integers(1, max_size + 1, n)
                values[f"{side}q{i}"] = np.where(rng.random(n) < 0.1, 0, q)
        return values

    return BlastStream(f"books:{vs}", _shapes(body), fill_books, levels=2 * BLAST_LEVELS)


def _shapes(body: str) -> dict[bool, FrameTemplate]:
    template = FrameTemplate(body.encode())
    return {True: template, False: template}
