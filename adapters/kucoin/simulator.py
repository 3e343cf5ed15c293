"""The KuCoin spot side of the protocol, for tests, demos and benchmarks.

Speaks what a client of KuCoin's classic WebSocket sees: `POST /api/v1/bullet-public` hands out
a token and an `instanceServers` endpoint pointing at this simulator, with the ping interval and
timeout to use; a connection to `<endpoint>?token=..&connectId=..` with an unknown or expired
token gets a 401 error frame and is closed, a good one gets `welcome`. Then `subscribe` and
`unsubscribe` (acked when `response` is true; documented error frames: 404 unknown topic, 509
limits), `ping`/`pong`, and a close with `ping timeout` for a client that stops pinging. Limits:
100 topics per request, 300 per connection (each symbol of a topic counts), 100 client
messages per 10 s. Topics `/market/match`, `/market/ticker` (at most every 100 ms per symbol)
and `/market/level2` (every change at once, `sequenceStart`/`sequenceEnd` and per-change
sequences consistent with the REST snapshots `/api/v1/market/orderbook/level2_20|100`), and the
symbols lists `/api/v2/symbols` and `/api/v1/symbols`. KuCoin sends no shutdown notice.

Options (`wsm simulate --option NAME=VALUE`): `ping_interval_ms`, `ping_timeout_ms`,
`token_ttl` (seconds), `max_topics`, `welcome_delay` (seconds). `GET /_sim/tokens/expire`
expires every token issued so far.
"""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
import time
from collections import defaultdict, deque
from typing import Any

import orjson

from adapters.simkit.market import DEFAULT_SYMBOLS, Event, SimSymbol, fmt, sim_symbols
from adapters.simkit.server import SimClient, SimServer

TOPICS = {  # topic prefix -> the frames' subject
    "/market/match": "trade.l3match",
    "/market/ticker": "trade.ticker",
    "/market/level2": "trade.l2update",
}
MAX_TOPICS_PER_REQUEST = 100
MAX_MESSAGES = 100  # client messages ...
MESSAGE_WINDOW = 10.0  # ... per this many seconds


def num(units: int, decimals: int) -> str:
    """KuCoin prints numbers without trailing zeros ("242.649", "5")."""
    text = fmt(units, decimals)
    return text.rstrip("0").rstrip(".") if "." in text else text


def error(rid: Any, code: int, text: str) -> bytes:
    return orjson.dumps({"id": rid, "type": "error", "code": code, "data": text})


class KucoinSim:
    name = "kucoin"
    rest_server = True  # POST /api/v1/bullet-public: REST gets a listener of its own

    def __init__(
        self,
        symbols: tuple[tuple[str, str, str, float, int, int], ...] = DEFAULT_SYMBOLS,
        *,
        seed: int = 1,
        extra_symbols: int = 0,
        ping_interval_ms: int = 18_000,
        ping_timeout_ms: int = 10_000,
        token_ttl: float = 24 * 3600.0,
        max_topics: int = 300,
        welcome_delay: float = 0.0,
        ticker_interval: float = 0.1,
    ) -> None:
        self.rng = random.Random(seed)
        self.ping_interval_ms = int(ping_interval_ms)
        self.ping_timeout_ms = int(ping_timeout_ms)
        self.token_ttl = float(token_ttl)
        self.max_topics = int(max_topics)
        self.welcome_delay = float(welcome_delay)
        self.ticker_interval = float(ticker_interval)
        self.symbols = sim_symbols(
            symbols, extra=extra_symbols, quote="USDT", spell=lambda b, q: f"{b}-{q}", respell=True
        )
        self._order = list(self.symbols.values())
        self.last_trade = {v: (s.best_bid(), 10**s.size_decimals) for v, s in self.symbols.items()}
        self.ticker_due: dict[str, float] = {}  # symbol -> when its ticker last went out
        self.ticker_dirty: set[str] = set()
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.tokens_used: deque[str] = deque(maxlen=1000)  # token of each accepted connection
        self.refused = 0
        self.pings = 0
        self.requests = 0
        self.reject = 0
        self.subscribe_log: list[tuple[float, int]] = []  # (time, topics) per request
        self.violations: dict[str, int] = defaultdict(int)
        self.trade_log: dict[str, deque[tuple[int, str, str, bool]]] = defaultdict(
            lambda: deque(maxlen=100_000)
        )
        self.server: SimServer | None = None

    def attach(self, server: SimServer) -> None:
        self.server = server

    # -- REST ---------------------------------------------------------------------------

    def http(self, method: str, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        if path == "/api/v1/bullet-public":
            if method != "POST":
                return 405, b'{"code":"400001","msg":"Please check the URL of your request."}'
            return 200, self._bullet()
        if path in ("/api/v2/symbols", "/api/v1/symbols"):
            return 200, self._symbols()
        if path in ("/api/v1/market/orderbook/level2_20", "/api/v1/market/orderbook/level2_100"):
            sym = self.symbols.get(query.get("symbol", ""))
            if sym is None:
                return 400, b'{"code":"400100","msg":"symbol not exists"}'
            return 200, self._snapshot(sym, int(path.rpartition("_")[2]))
        return None

    def _bullet(self) -> bytes:
        assert self.server is not None
        token = (
            base64.b64encode(secrets.token_bytes(48)).decode()
            + "."
            + base64.b64encode(secrets.token_bytes(16)).decode()
        )  # like KuCoin's: '+', '/' and '=' must survive the connection URL
        self.tokens[token] = time.monotonic() + self.token_ttl
        server = {
            "endpoint": f"{self.server.ws_url}/endpoint",
            "encrypt": False,
            "protocol": "websocket",
            "pingInterval": self.ping_interval_ms,
            "pingTimeout": self.ping_timeout_ms,
        }
        return orjson.dumps(
            {"code": "200000", "data": {"token": token, "instanceServers": [server]}}
        )

    def _symbols(self) -> bytes:
        return orjson.dumps(
            {
                "code": "200000",
                "data": [
                    {
                        "symbol": v,
                        "name": v,
                        "baseCurrency": s.base,
                        "quoteCurrency": s.quote,
                        "feeCurrency": s.quote,
                        "market": "USDS",
                        "baseMinSize": num(1, s.size_decimals),
                        "quoteMinSize": "0.1",
                        "baseMaxSize": "10000000000",
                        "quoteMaxSize": "99999999",
                        "baseIncrement": num(1, s.size_decimals),
                        "quoteIncrement": num(1, s.price_decimals),
                        "priceIncrement": num(1, s.price_decimals),
                        "priceLimitRate": "0.1",
                        "minFunds": "0.1",
                        "isMarginEnabled": False,
                        "enableTrading": True,
                    }
                    for v, s in self.symbols.items()
                ],
            }
        )

    def _snapshot(self, sym: SimSymbol, limit: int) -> bytes:
        bids, asks = sym.snapshot(limit)
        pd, sd = sym.price_decimals, sym.size_decimals
        data = {
            "time": time.time_ns() // 1_000_000,
            "sequence": str(sym.update_id),
            "bids": [[num(p, pd), num(q, sd)] for p, q in bids],
            "asks": [[num(p, pd), num(q, sd)] for p, q in asks],
        }
        return orjson.dumps({"code": "200000", "data": data})

    # -- WebSocket protocol ---------------------------------------------------------------

    def accepts(self, path: str) -> bool:
        return path in ("/endpoint", "/")

    def on_connect(self, client: SimClient, path: str, query: dict[str, str]) -> None:
        connect_id = query.get("connectId", "")
        client.state["connect_id"] = connect_id
        client.state["welcomed"] = False
        token = query.get("token", "")
        expiry = self.tokens.get(token)
        if expiry is None or expiry <= time.monotonic():
            self.refused += 1
            client.send(
                error(connect_id, 401, "token is invalid" if expiry is None else "token is expired")
            )
            client.close(1000)
            return
        self.tokens_used.append(token)
        if self.welcome_delay > 0:
            asyncio.get_running_loop().call_later(self.welcome_delay, self._welcome, client)
        else:
            self._welcome(client)

    def _welcome(self, client: SimClient) -> None:
        if self.server is None or client not in self.server.clients:
            return  # gone before its (delayed) welcome
        client.state["welcomed"] = True
        client.send(orjson.dumps({"id": client.state["connect_id"], "type": "welcome"}))

    def on_text(self, client: SimClient, text: bytes) -> None:
        if not client.state.get("welcomed"):
            self.violations["before_welcome"] += 1
        times = client.recv_times
        if len(times) > MAX_MESSAGES and times[-1] - times[-1 - MAX_MESSAGES] < MESSAGE_WINDOW:
            self.violations["messages_per_10s"] += 1
            client.send(error(client.state["connect_id"], 509, "exceed max permits per second"))
            client.close(1000)
            return
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            client.send(error(client.state["connect_id"], 400, "invalid JSON"))
            return
        if not isinstance(req, dict):
            client.send(error(client.state["connect_id"], 415, "command type is invalid"))
            return
        rid, kind = req.get("id"), req.get("type")
        if kind == "ping":
            self.pings += 1
            client.send(orjson.dumps({"id": rid, "type": "pong"}))
        elif kind in ("subscribe", "unsubscribe"):
            self.requests += 1
            self._subscribe(client, req, kind == "subscribe")
        else:
            client.send(error(rid, 415, "command type is invalid"))

    def _subscribe(self, client: SimClient, req: dict[str, Any], subscribe: bool) -> None:
        rid, topic = req.get("id"), req.get("topic")
        if not isinstance(topic, str) or not topic:
            client.send(error(rid, 406, "topic is required"))
            return
        prefix, _, names = topic.partition(":")
        symbols = names.split(",")
        if prefix not in TOPICS or not all(s in self.symbols for s in symbols):
            client.send(error(rid, 404, f"topic {topic} is not found"))
            return
        if len(symbols) > MAX_TOPICS_PER_REQUEST:
            self.violations["topics_per_request"] += 1
            client.send(error(rid, 509, "exceed max subscription count limitation of 100 per time"))
            return
        topics = [f"{prefix}:{s}" for s in symbols]
        if subscribe:
            if self.reject:
                self.reject -= 1
                client.send(error(rid, 404, f"topic {topic} is not found"))
                return
            if len(client.subs.union(topics)) > self.max_topics:
                self.violations["topics_per_connection"] += 1
                limit = f"exceed max subscription count limitation of {self.max_topics} per session"
                client.send(error(rid, 509, limit))
                return
            self.subscribe_log.append((time.monotonic(), len(topics)))
            client.subscribe(topics)
        else:
            client.unsubscribe(topics)
        if req.get("response"):
            client.send(orjson.dumps({"id": str(rid), "type": "ack"}))

    # -- market data ----------------------------------------------------------------------

    def tick(self, now_ns: int, events: int) -> None:
        now = time.monotonic()
        self._close_silent_clients(now)
        for _ in range(events):
            sym = self.rng.choice(self._order)
            self._publish(sym, sym.step(self.rng), now_ns)
        for venue_symbol in list(self.ticker_dirty):
            if now - self.ticker_due.get(venue_symbol, 0.0) >= self.ticker_interval:
                self.ticker_due[venue_symbol] = now
                self.ticker_dirty.discard(venue_symbol)
                self._ticker(self.symbols[venue_symbol], now_ns)

    def _close_silent_clients(self, now: float) -> None:
        """KuCoin closes a connection whose client stopped pinging (`ping timeout`). A stalled
        client is behind a dead network: nothing reaches it, not even the close."""
        assert self.server is not None
        limit = (self.ping_interval_ms + self.ping_timeout_ms) / 1000
        for client in list(self.server.clients):
            if client.stalled or client.closing:
                continue
            last = client.recv_times[-1] if client.recv_times else client.connected_at
            if now - last > limit:
                self.violations["ping_timeout"] += 1
                client.send(error(client.state.get("connect_id", ""), 400, "ping timeout"))
                client.close(1000)

    def _send(self, topic: str, data: bytes) -> None:
        assert self.server is not None
        prefix = topic.partition(":")[0]
        frame = b'{"type":"message","topic":"%s","subject":"%s","data":%s}' % (
            topic.encode(),
            TOPICS[prefix].encode(),
            data,
        )
        self.server.broadcast(topic, lambda c: frame)

    def _publish(self, sym: SimSymbol, ev: Event, now_ns: int) -> None:
        vs, pd, sd = sym.venue_symbol, sym.price_decimals, sym.size_decimals
        if ev.trade is not None:
            t = ev.trade
            p, q = num(t.price, pd), num(t.size, sd)
            self.trade_log[vs].append((ev.first_id, p, q, t.taker == "sell"))
            self.last_trade[vs] = (t.price, t.size)
            match = {
                "sequence": str(ev.first_id),  # the trade's own level change
                "type": "match",
                "symbol": vs,
                "side": t.taker,
                "price": p,
                "size": q,
                "tradeId": f"{t.id:024x}",
                "takerOrderId": secrets.token_hex(12),
                "makerOrderId": secrets.token_hex(12),
                "time": str(now_ns),
            }
            self._send(f"/market/match:{vs}", orjson.dumps(match))
        if ev.changes:
            self._send(f"/market/level2:{vs}", self._level2(sym, ev, now_ns))
        if ev.top_changed:
            self.ticker_dirty.add(vs)

    @staticmethod
    def _level2(sym: SimSymbol, ev: Event, now_ns: int) -> bytes:
        last: dict[tuple[str, int], tuple[int, int]] = {}  # one change per price: its last
        for i, c in enumerate(ev.changes):
            last.pop((c.side, c.price), None)
            last[(c.side, c.price)] = (c.size, ev.first_id + i)
        pd, sd = sym.price_decimals, sym.size_decimals
        sides: dict[str, list[list[str]]] = {"ask": [], "bid": []}
        for (side, price), (size, seq) in last.items():
            sides[side].append([num(price, pd), num(size, sd), str(seq)])
        data = {
            "changes": {"asks": sides["ask"], "bids": sides["bid"]},
            "sequenceEnd": ev.last_id,
            "sequenceStart": ev.first_id,
            "symbol": sym.venue_symbol,
            "time": now_ns // 1_000_000,
        }
        return orjson.dumps(data)

    def _ticker(self, sym: SimSymbol, now_ns: int) -> None:
        b, bq, a, aq = sym.top()
        pd, sd = sym.price_decimals, sym.size_decimals
        price, size = self.last_trade[sym.venue_symbol]
        ticker = {
            "sequence": str(sym.update_id),
            "price": num(price, pd),
            "size": num(size, sd),
            "bestAsk": num(a, pd),
            "bestAskSize": num(aq, sd),
            "bestBid": num(b, pd),
            "bestBidSize": num(bq, sd),
            "time": now_ns // 1_000_000,
        }
        self._send(f"/market/ticker:{sym.venue_symbol}", orjson.dumps(ticker))

    # -- faults ---------------------------------------------------------------------------

    def skip(self, n: int) -> None:
        """The next level2 update of every symbol misses `n` sequence numbers."""
        for sym in self.symbols.values():
            sym.update_id += n

    def malformed(self, kind: str) -> bytes:
        topic = f"/market/match:{self._order[0].venue_symbol}".encode()
        head = b'{"type":"message","topic":"%s","subject":"trade.l3match","data":' % topic
        if kind == "truncated":
            return head + b'{"sequence":"1","type":"match","price":'
        if kind == "invalid_utf8":
            return head + b'"\xff\xfe"}'
        if kind == "oversize":
            return head + b'"%s"}' % (b"x" * (2 << 20))
        if kind == "unknown_type":
            return b'{"type":"message","topic":"/market/mystery:BTC-USDT","subject":"x","data":{}}'
        if kind == "wrong_types":
            return head + b'{"sequence":true,"side":1,"price":[],"size":{},"time":null}}'
        raise ValueError(f"unknown malformed kind {kind!r}")

    def shutdown_notice(self) -> bytes | None:
        return None  # KuCoin announces nothing before it cuts a connection

    def reject_next(self, count: int) -> None:
        self.reject += count

    def expire_tokens(self) -> int:
        now = time.monotonic()
        for token in self.tokens:
            self.tokens[token] = min(self.tokens[token], now)
        return len(self.tokens)

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "violations": dict(self.violations),
            "subscribe_requests": len(self.subscribe_log),
            "max_topics_per_request": max((n for _, n in self.subscribe_log), default=0),
            "tokens_issued": len(self.tokens),
            "tokens_refused": self.refused,
            "pings": self.pings,
            "update_ids": {s: sym.update_id for s, sym in self.symbols.items()},
        }

    def control(self, parts: list[str], query: dict[str, str]) -> Any:
        if parts == ["tokens", "expire"]:
            return {"ok": True, "expired": self.expire_tokens()}
        if parts == ["tokens"]:
            return {"issued": len(self.tokens), "used": list(self.tokens_used)}
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
