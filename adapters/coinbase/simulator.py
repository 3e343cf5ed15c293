"""The Coinbase Advanced Trade side of the protocol, for tests, demos and benchmarks.

Speaks what a client of `advanced-trade-ws.coinbase.com` sees: one channel per subscribe or
unsubscribe message, a cumulative `subscriptions` answer to each, `{"type":"error"}` frames,
the close of a connection that has not subscribed within 5 s, `heartbeats` every second with
a `heartbeat_counter`, and one `sequence_num` per connection across all channels. `level2`
(frames on `l2_data`) sends the whole book as a snapshot then updates batched every 50 ms;
`market_trades` sends the 100 most recent trades then every trade (with the maker's side, as
the venue does); `ticker` sends the best bid and offer when they or the last price change.
Prices and sizes are decimal strings without trailing zeros. The REST products endpoint lists
the instruments. Limits, as documented or observed: 8 client messages and 8 connections per
second per IP address (every client of a simulator shares one address), 30 `level2` products
per connection. What the venue does past a limit is not documented: the simulator counts a
violation, then closes the connection (messages), refuses it (connections) or answers with
the observed error (`level2`). The error texts other than that one are the simulator's own.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.simkit.market import Event, SimSymbol, fmt, sim_symbols
from adapters.simkit.server import SimClient, SimServer

DEFAULT_SYMBOLS = (
    ("BTC-USD", "BTC", "USD", 65000.0, 2, 8),
    ("ETH-USD", "ETH", "USD", 3400.0, 2, 8),
    ("SOL-USD", "SOL", "USD", 150.0, 2, 8),
    ("XRP-USD", "XRP", "USD", 0.6, 4, 6),
    ("ETH-BTC", "ETH", "BTC", 0.052, 5, 8),
)
CHANNELS = ("level2", "market_trades", "ticker", "heartbeats")
MAX_MESSAGES_PER_SECOND = 8  # per IP
MAX_CONNECTIONS_PER_SECOND = 8  # per IP
MAX_L2_PER_CONNECTION = 30
TOO_MANY_L2 = "too many L2 streams requested in a single session"
L2_PERIOD = 0.05
HISTORY = 100  # trades in a market_trades snapshot


def num(units: int, decimals: int) -> str:
    """Coinbase prints decimals without trailing zeros: "1925", "0.1531"."""
    text = fmt(units, decimals)
    return text.rstrip("0").rstrip(".") if "." in text else text


def rfc3339(ns: int) -> str:
    """Like Go's RFC3339Nano: `2026-08-09T21:05:48.22856880Z` (trailing zeros trimmed)."""
    secs, frac = divmod(ns, 1_000_000_000)
    digits = f"{frac:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + (
        f".{digits}Z" if digits else "Z"
    )


@dataclass
class Tape:
    """What the ticker reports besides the best bid and offer."""

    open: int
    last: int
    low: int
    high: int
    volume: int = 0


class CoinbaseSim:
    name = "coinbase"

    def __init__(
        self,
        symbols: tuple[tuple[str, str, str, float, int, int], ...] = DEFAULT_SYMBOLS,
        *,
        seed: int = 1,
        extra_symbols: int = 0,
        enforce_limits: bool = True,
        subscribe_deadline: float = 5.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.enforce_limits = enforce_limits
        self.subscribe_deadline = subscribe_deadline
        self.symbols = sim_symbols(
            symbols, extra=extra_symbols, quote="USD", spell=lambda b, q: f"{b}-{q}"
        )
        self._order = list(self.symbols.values())
        self.tape = {s: Tape(*[sym.best_bid()] * 4) for s, sym in self.symbols.items()}
        self.trade_log: dict[str, deque[tuple[int, str, str, bool]]] = defaultdict(
            lambda: deque(maxlen=100_000)
        )
        self.history: dict[str, deque[dict[str, str]]] = defaultdict(lambda: deque(maxlen=HISTORY))
        self.pending: dict[str, dict[tuple[str, int], int]] = defaultdict(dict)
        self.last_flush = 0.0
        self.heartbeat_counter = 1
        self.heartbeat_second = 0
        self.lose_heartbeat: set[SimClient] = set()
        self.requests = 0
        self.reject = 0
        self.subscribe_requests = 0
        self.violations: dict[str, int] = defaultdict(int)
        self._messages: deque[float] = deque()
        self._connects: deque[float] = deque()
        self.server: SimServer | None = None
        self._warm_up(time.time_ns())

    def attach(self, server: SimServer) -> None:
        self.server = server

    def _warm_up(self, now_ns: int) -> None:
        """A little trading before anyone connects, so that trade snapshots are not empty."""
        for sym in self._order:
            while len(self.history[sym.venue_symbol]) < 5:
                self._record(sym, sym.step(self.rng), now_ns)
            self.pending[sym.venue_symbol].clear()

    # -- REST ---------------------------------------------------------------------------------

    def http(self, method: str, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        prefix = "/api/v3/brokerage/market/products"
        if path == prefix:
            products = [self._product(s) for s in self.symbols.values()]
            return 200, orjson.dumps({"products": products, "num_products": len(products)})
        if path.startswith(prefix + "/"):
            sym = self.symbols.get(path[len(prefix) + 1 :])
            if sym is None:
                return 404, b'{"error":"NOT_FOUND","error_details":"product not found"}'
            return 200, orjson.dumps(self._product(sym))
        return None

    def _product(self, sym: SimSymbol) -> dict[str, Any]:
        pd, sd = sym.price_decimals, sym.size_decimals
        price = num(self.tape[sym.venue_symbol].last, pd)
        return {
            "product_id": sym.venue_symbol,
            "price": price,
            "price_percentage_change_24h": "0",
            "volume_24h": num(self.tape[sym.venue_symbol].volume, sd),
            "volume_percentage_change_24h": "0",
            "base_increment": fmt(1, sd),
            "quote_increment": fmt(1, pd),
            "quote_min_size": "1",
            "quote_max_size": "150000000",
            "base_min_size": fmt(1, sd),
            "base_max_size": "3400",
            "base_name": sym.base,
            "quote_name": sym.quote,
            "status": "online",
            "cancel_only": False,
            "limit_only": False,
            "post_only": False,
            "trading_disabled": False,
            "auction_mode": False,
            "product_type": "SPOT",
            "quote_currency_id": sym.quote,
            "base_currency_id": sym.base,
            "mid_market_price": price,
            "alias": "",
            "alias_to": [],
            "base_display_symbol": sym.base,
            "quote_display_symbol": sym.quote,
            "price_increment": fmt(1, pd),
        }

    # -- WebSocket protocol -------------------------------------------------------------------

    def accepts(self, path: str) -> bool:
        if path not in ("", "/"):
            return False
        if self.enforce_limits and _over(self._connects, MAX_CONNECTIONS_PER_SECOND):
            self.violations["connections_per_second"] += 1
            return False
        return True

    def on_connect(self, client: SimClient, path: str, query: dict[str, str]) -> None:
        client.state.update(seq=0, subscribed=False, heartbeats=False)

    def on_text(self, client: SimClient, text: bytes) -> None:
        if self.enforce_limits and _over(self._messages, MAX_MESSAGES_PER_SECOND):
            self.violations["messages_per_second"] += 1
            client.close(1008)
            return
        self.requests += 1
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self._error(client, "failure to parse the message as JSON")
        if not isinstance(req, dict) or req.get("type") not in ("subscribe", "unsubscribe"):
            kind = req.get("type") if isinstance(req, dict) else None
            return self._error(client, f"unknown message type {kind!r}")
        channel, products = req.get("channel"), req.get("product_ids", [])
        if channel not in CHANNELS:
            return self._error(client, f"Failed to subscribe: unknown channel {channel!r}")
        if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
            return self._error(client, "Failed to subscribe: product_ids must be strings")
        unknown = [p for p in products if p not in self.symbols]
        if unknown and channel != "heartbeats":
            return self._error(client, f"Failed to subscribe: unknown products {unknown}")
        if req["type"] == "unsubscribe":
            self._unsubscribe(client, channel, products)
        else:
            self._subscribe(client, channel, products)

    def _subscribe(self, client: SimClient, channel: str, products: list[str]) -> None:
        if self.reject:
            self.reject -= 1
            return self._error(client, "Failed to subscribe")
        names = [f"{channel}:{p}" for p in products if f"{channel}:{p}" not in client.subs]
        if channel == "level2":
            have = sum(1 for s in client.subs if s.startswith("level2:"))
            if have + len(names) > MAX_L2_PER_CONNECTION:
                self.violations["level2_per_connection"] += 1
                return self._error(client, TOO_MANY_L2)
        self.subscribe_requests += 1
        client.state["subscribed"] = True
        if channel == "heartbeats":
            client.state["heartbeats"] = True
        client.subscribe(names)
        now = time.time_ns()
        for name in names:
            self._send_snapshot(client, channel, self.symbols[name.partition(":")[2]], now)
        self._ack(client)

    def _unsubscribe(self, client: SimClient, channel: str, products: list[str]) -> None:
        if channel == "heartbeats":
            client.state["heartbeats"] = False
        client.unsubscribe([f"{channel}:{p}" for p in products])
        self._ack(client)

    def _ack(self, client: SimClient) -> None:
        subs: dict[str, list[str]] = defaultdict(list)
        for name in sorted(client.subs):
            channel, _, product = name.partition(":")
            subs[channel].append(product)
        if client.state["heartbeats"]:
            subs["heartbeats"] = ["heartbeats"]
        events = orjson.dumps([{"subscriptions": dict(sorted(subs.items()))}])
        client.send(self._frame(client, "subscriptions", time.time_ns(), events))

    def _error(self, client: SimClient, message: str) -> None:
        client.send(orjson.dumps({"type": "error", "message": message}))

    def _frame(self, client: SimClient, channel: str, now_ns: int, events: bytes) -> bytes:
        """One frame for one client: its own next `sequence_num`."""
        seq = client.state["seq"]
        client.state["seq"] = seq + 1
        return b'{"channel":"%s","timestamp":"%s","sequence_num":%d,"events":%s}' % (
            channel.encode(),
            rfc3339(now_ns).encode(),
            seq,
            events,
        )

    def _send_snapshot(self, client: SimClient, channel: str, sym: SimSymbol, now_ns: int) -> None:
        if channel == "level2":
            event: dict[str, Any] = self._l2_event(sym, "snapshot", self._levels(sym), now_ns)
            client.send(self._frame(client, "l2_data", now_ns, orjson.dumps([event])))
        elif channel == "market_trades":
            trades = list(reversed(self.history[sym.venue_symbol]))
            event = {"type": "snapshot", "trades": trades}
            client.send(self._frame(client, "market_trades", now_ns, orjson.dumps([event])))
        elif channel == "ticker":
            event = {"type": "snapshot", "tickers": [self._ticker(sym)]}
            client.send(self._frame(client, "ticker", now_ns, orjson.dumps([event])))

    # -- market data --------------------------------------------------------------------------

    def tick(self, now_ns: int, events: int) -> None:
        for _ in range(events):
            sym = self.rng.choice(self._order)
            self._publish(sym, sym.step(self.rng), now_ns)
        now = time.monotonic()
        if now - self.last_flush >= L2_PERIOD:
            self.last_flush = now
            self._flush_l2(now_ns)
        if now_ns // 1_000_000_000 != self.heartbeat_second:
            self.heartbeat_second = now_ns // 1_000_000_000
            self._heartbeat(now_ns)
        self._enforce_deadline(now)

    def _record(self, sym: SimSymbol, ev: Event, now_ns: int) -> None:
        """Book changes wait for the next update batch; a trade goes on the tape."""
        pending = self.pending[sym.venue_symbol]
        for c in ev.changes:
            pending[(c.side, c.price)] = c.size
        if ev.trade is None:
            return
        t, tape = ev.trade, self.tape[sym.venue_symbol]
        tape.last, tape.volume = t.price, tape.volume + t.size
        tape.low, tape.high = min(tape.low, t.price), max(tape.high, t.price)
        p, q = num(t.price, sym.price_decimals), num(t.size, sym.size_decimals)
        maker = "SELL" if t.taker == "buy" else "BUY"
        self.trade_log[sym.venue_symbol].append((t.id, p, q, maker == "BUY"))
        trade = {
            "product_id": sym.venue_symbol,
            "trade_id": str(t.id),
            "price": p,
            "size": q,
            "time": rfc3339(now_ns // 1000 * 1000),
            "side": maker,
        }
        self.history[sym.venue_symbol].append(trade)

    def _publish(self, sym: SimSymbol, ev: Event, now_ns: int) -> None:
        self._record(sym, ev, now_ns)
        vs = sym.venue_symbol
        if ev.trade is not None:
            event = {"type": "update", "trades": [self.history[vs][-1]]}
            self._broadcast(f"market_trades:{vs}", "market_trades", now_ns, event)
        if ev.trade is not None or ev.top_changed:
            event = {"type": "update", "tickers": [self._ticker(sym)]}
            self._broadcast(f"ticker:{vs}", "ticker", now_ns, event)

    def _broadcast(self, stream: str, channel: str, now_ns: int, event: dict[str, Any]) -> None:
        assert self.server is not None
        events = orjson.dumps([event])
        self.server.broadcast(stream, lambda c: self._frame(c, channel, now_ns, events))

    def _flush_l2(self, now_ns: int) -> None:
        for venue_symbol, changes in self.pending.items():
            if not changes:
                continue
            sym = self.symbols[venue_symbol]
            levels = sorted(changes.items(), key=lambda kv: (kv[0][0] != "bid", kv[0][1]))
            changes.clear()
            event = self._l2_event(sym, "update", [(s, p, q) for (s, p), q in levels], now_ns)
            self._broadcast(f"level2:{venue_symbol}", "l2_data", now_ns, event)

    def _levels(self, sym: SimSymbol) -> list[tuple[str, int, int]]:
        bids, asks = sym.snapshot(len(sym.bids) + len(sym.asks))
        return [("bid", p, q) for p, q in bids] + [("ask", p, q) for p, q in asks]

    def _l2_event(
        self, sym: SimSymbol, kind: str, levels: list[tuple[str, int, int]], now_ns: int
    ) -> dict[str, Any]:
        at = rfc3339(now_ns // 1000 * 1000)
        pd, sd = sym.price_decimals, sym.size_decimals
        updates = [
            {
                "side": "bid" if side == "bid" else "offer",
                "event_time": at,
                "price_level": num(p, pd),
                "new_quantity": num(q, sd),
            }
            for side, p, q in levels
        ]
        return {"type": kind, "product_id": sym.venue_symbol, "updates": updates}

    def _ticker(self, sym: SimSymbol) -> dict[str, str]:
        tape, (b, bq, a, aq) = self.tape[sym.venue_symbol], sym.top()
        pd, sd = sym.price_decimals, sym.size_decimals
        change = (tape.last - tape.open) / tape.open * 100 if tape.open else 0.0
        return {
            "type": "ticker",
            "product_id": sym.venue_symbol,
            "price": num(tape.last, pd),
            "volume_24_h": num(tape.volume, sd),
            "low_24_h": num(tape.low, pd),
            "high_24_h": num(tape.high, pd),
            "low_52_w": num(tape.low, pd),
            "high_52_w": num(tape.high, pd),
            "price_percent_chg_24_h": repr(round(change, 14)),
            "best_bid": num(b, pd),
            "best_ask": num(a, pd),
            "best_bid_quantity": num(bq, sd),
            "best_ask_quantity": num(aq, sd),
        }

    def _heartbeat(self, now_ns: int) -> None:
        assert self.server is not None
        counter = self.heartbeat_counter
        self.heartbeat_counter += 1
        lost, self.lose_heartbeat = self.lose_heartbeat, set()
        secs, frac = divmod(now_ns, 1_000_000_000)
        current = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs))
            + f".{frac:09d} +0000 UTC m=+{counter}.{frac:09d}"
        )
        events = orjson.dumps([{"current_time": current, "heartbeat_counter": counter}])
        for client in list(self.server.clients):
            if client.state.get("heartbeats"):
                frame = self._frame(client, "heartbeats", now_ns, events)
                if client not in lost:  # else lost on the way: its number is used up all the same
                    client.send(frame)

    def _enforce_deadline(self, now: float) -> None:
        assert self.server is not None
        for client in list(self.server.clients):
            late = now - client.connected_at > self.subscribe_deadline
            if late and not client.state.get("subscribed") and not client.closing:
                self.violations["subscribe_deadline"] += 1
                client.close(1000)

    # -- faults and inspection ----------------------------------------------------------------

    def skip(self, n: int) -> None:
        """Every connection's next frame is `n` sequence numbers further than it should be."""
        assert self.server is not None
        for client in self.server.clients:
            client.state["seq"] = client.state.get("seq", 0) + n

    def malformed(self, kind: str) -> bytes:
        # No usable sequence_num: one frame goes to every client, whose numbers differ.
        head = b'{"channel":"market_trades","timestamp":"2026-08-09T21:05:48Z","sequence_num":'
        if kind == "truncated":
            return head
        if kind == "invalid_utf8":
            return head + b'"x","events":[{"type":"update","trades":"\xff\xfe"}]}'
        if kind == "oversize":
            return head + b'"x","events":[],"pad":"%s"}' % (b"x" * ((16 << 20) + 1024))
        if kind == "unknown_type":
            return b'{"channel":"mystery","timestamp":"2026-08-09T21:05:48Z","sequence_num":"x"}'
        if kind == "wrong_types":
            return head + (
                b'"x","events":[{"type":"update","trades":[{"product_id":1,"trade_id":[],'
                b'"price":{},"size":null,"time":2,"side":3}]}]}'
            )
        raise ValueError(f"unknown malformed kind {kind!r}")

    def shutdown_notice(self) -> bytes | None:
        return None  # Coinbase announces no shutdown

    def reject_next(self, count: int) -> None:
        self.reject += count

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "violations": dict(self.violations),
            "subscribe_requests": self.subscribe_requests,
            "heartbeat_counter": self.heartbeat_counter,
        }

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
        if parts == ["heartbeat"]:
            return self._heartbeat_fault(query)
        return None

    def _heartbeat_fault(self, query: dict[str, str]) -> dict[str, Any]:
        """`skip=n`: the counter jumps by n (the venue's heartbeats missed beats).
        `lose=1`: the next heartbeat is lost on the way, with its sequence_num; `oldest=1`: on
        the oldest connection only."""
        assert self.server is not None
        self.heartbeat_counter += int(query.get("skip", "0"))
        if query.get("lose") == "1":
            clients = sorted(self.server.clients, key=lambda c: c.connected_at)
            self.lose_heartbeat = set(clients[:1] if query.get("oldest") == "1" else clients)
        return {"ok": True, "heartbeat_counter": self.heartbeat_counter}

    def book(self, venue_symbol: str) -> tuple[dict[int, int], dict[int, int]]:
        sym = self.symbols[venue_symbol]
        return dict(sym.bids), dict(sym.asks)


def _over(times: deque[float], limit: int) -> bool:
    """Record one event now; True when more than `limit` fell within the last second."""
    now = time.monotonic()
    times.append(now)
    while now - times[0] >= 1.0:
        times.popleft()
    return len(times) > limit
