"""The Kraken Spot WebSocket v2 side of the protocol, for tests, demos and benchmarks.

Speaks what a client of `wss://ws.kraken.com/v2` sees: a `status` frame on connect; `subscribe`
and `unsubscribe` with one answer per pair carrying the request's `req_id` (errors with their
`error` text, e.g. "Currency pair not supported NOPE/USD"); `ping` -> `pong`; a `heartbeat`
every second on a subscribed connection. `book` sends a snapshot of the subscribed depth (10,
25, 100, 500 or 1000) then one update per market event that changes what the subscriber sees,
as the venue does: changed and new levels, `qty: 0` for levels removed from the book, nothing
for levels that fall out of range (the client cuts its book to the depth) and the level that
comes back into range as an insert; every book message carries the CRC32 checksum of the top
10 levels computed the venue's way. `trade` sends the last 50 trades on subscribing with
`snapshot: true`, then every trade with the taker's side; `ticker` sends the best bid and offer
on every trade (`event_trigger: trades`, the default) or whenever they change (`bbo`).
Numbers are JSON numbers at the pair's full precision (`64525.0`, `0.00005100`). The REST
`/0/public/AssetPairs` lists the pairs with their REST names (`XBT/USD` as `wsname`,
`pair_decimals`, `lot_decimals`).

Faults of its own: `skip(n)` loses the next `n` book updates of every pair on the way to each
client (an update that would happen to repair the client's book is lost as well, so the loss
shows in the next checksum the client checks, unless the market itself comes back to the
client's book first: stats count those as `losses_healed`); `GET /_sim/corrupt?symbol=` sends
the next book update of a pair with one level's quantity off by one unit (the checksum is the
true book's). Kraken announces no connection cut: `shutdown_notice()` is None (its `status` frame
with `system: maintenance` concerns the whole venue). Limits are not published for public
market data: the simulator allows 200 subscriptions and 10 client messages per second per
connection (an error and a close past the message limit, as "Exceeded msg rate").
"""

from __future__ import annotations

import random
import time
import zlib
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

import orjson
from orjson import Fragment

from adapters.simkit.market import Event, SimSymbol, fmt, sim_symbols
from adapters.simkit.server import SimClient, SimServer

DEFAULT_SYMBOLS = (
    ("BTC/USD", "BTC", "USD", 65000.0, 1, 8),
    ("ETH/USD", "ETH", "USD", 3400.0, 2, 8),
    ("SOL/USD", "SOL", "USD", 150.0, 2, 8),
    ("XRP/USD", "XRP", "USD", 0.6, 5, 8),
    ("ETH/BTC", "ETH", "BTC", 0.052, 5, 8),
)
REST_NAMES = {"BTC": "XBT"}  # REST (and v1) spell Bitcoin XBT
CHANNELS = ("book", "trade", "ticker")
DEPTHS = (10, 25, 100, 500, 1000)
HISTORY = 50  # trades in a trade snapshot
MAX_SUBSCRIPTIONS = 200  # per connection
MAX_MESSAGES_PER_SECOND = 10  # per connection
CHECKSUM_LEVELS = 10

Side = dict[int, int]  # price units -> size units


def num(units: int, decimals: int) -> Fragment:
    """A JSON number at full precision: `64525.0`, `0.00005100`."""
    return Fragment(fmt(units, decimals).encode())


def signed(units: int, decimals: int) -> Fragment:
    text = fmt(abs(units), decimals)
    return Fragment((text if units >= 0 else "-" + text).encode())


def rfc3339(ns: int) -> str:
    """`2026-07-19T17:54:39.753424Z`: microseconds, as the venue writes them."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac // 1000:06d}Z"


def top(sym: SimSymbol, depth: int) -> tuple[Side, Side]:
    bids, asks = sym.snapshot(depth)
    return dict(bids), dict(asks)


def checksum(bids: Side, asks: Side) -> int:
    """The venue's CRC32: top 10 asks low to high, then top 10 bids high to low, each price
    then quantity text without `.` and leading zeros, which is the value in units."""
    text = "".join(f"{p}{asks[p]}" for p in sorted(asks)[:CHECKSUM_LEVELS])
    text += "".join(f"{p}{bids[p]}" for p in sorted(bids, reverse=True)[:CHECKSUM_LEVELS])
    return zlib.crc32(text.encode())


Levels = tuple[list[tuple[int, int]], list[tuple[int, int]]]


def apply(view: tuple[Side, Side], levels: Levels, depth: int) -> tuple[Side, Side]:
    """What a client's book becomes after an update: every level, then cut to the depth."""
    bids, asks = dict(view[0]), dict(view[1])
    for side, changes in ((bids, levels[0]), (asks, levels[1])):
        for p, q in changes:
            if q:
                side[p] = q
            else:
                side.pop(p, None)
    return (
        dict(sorted(bids.items(), reverse=True)[:depth]),
        dict(sorted(asks.items())[:depth]),
    )


@dataclass
class Tape:
    """What the ticker reports besides the best bid and offer."""

    open: int
    last: int
    low: int
    high: int
    volume: int = 0
    notional: int = 0  # sum of price * size units, for the vwap
    trades: int = 0


class KrakenSim:
    name = "kraken"

    def __init__(
        self,
        symbols: tuple[tuple[str, str, str, float, int, int], ...] = DEFAULT_SYMBOLS,
        *,
        seed: int = 1,
        extra_symbols: int = 0,
        enforce_limits: bool = True,
    ) -> None:
        self.rng = random.Random(seed)
        self.enforce_limits = enforce_limits
        self.symbols = sim_symbols(
            symbols, extra=extra_symbols, quote="USD", spell=lambda b, q: f"{b}/{q}"
        )
        self._order = list(self.symbols.values())
        self.tape = {s: Tape(*[sym.best_bid()] * 4) for s, sym in self.symbols.items()}
        self.trade_log: dict[str, deque[tuple[int, str, str, bool]]] = defaultdict(
            lambda: deque(maxlen=100_000)
        )
        self.history: dict[str, deque[dict[str, Any]]] = defaultdict(lambda: deque(maxlen=HISTORY))
        self.views: dict[tuple[str, int], tuple[Side, Side]] = {}  # what subscribers have
        self.corrupt: set[str] = set()
        self.corrupted = 0
        self.dropped_updates = 0
        self.losses_healed = 0  # skips the market undid before any checksum could show them
        self.heartbeat_second = 0
        self.requests = 0
        self.reject = 0
        self.subscribe_requests = 0
        self.violations: dict[str, int] = defaultdict(int)
        self.server: SimServer | None = None
        self._warm_up(time.time_ns())

    def attach(self, server: SimServer) -> None:
        self.server = server

    def _warm_up(self, now_ns: int) -> None:
        """A little trading before anyone connects, so that trade snapshots are not empty."""
        for sym in self._order:
            while len(self.history[sym.venue_symbol]) < 5:
                self._record(sym, sym.step(self.rng), now_ns)

    # -- REST ---------------------------------------------------------------------------------

    def http(self, method: str, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        if path != "/0/public/AssetPairs":
            return None
        result = {}
        for sym in self.symbols.values():
            base, quote = (REST_NAMES.get(a, a) for a in (sym.base, sym.quote))
            result[f"{base}{quote}"] = {
                "altname": f"{base}{quote}",
                "wsname": f"{base}/{quote}",
                "aclass_base": "currency",
                "base": base,
                "aclass_quote": "currency",
                "quote": quote,
                "lot": "unit",
                "cost_decimals": sym.price_decimals,
                "pair_decimals": sym.price_decimals,
                "lot_decimals": sym.size_decimals,
                "lot_multiplier": 1,
                "ordermin": fmt(1, sym.size_decimals),
                "tick_size": fmt(1, sym.price_decimals),
                "status": "online",
            }
        return 200, orjson.dumps({"error": [], "result": result})

    # -- WebSocket protocol -------------------------------------------------------------------

    def accepts(self, path: str) -> bool:
        return path in ("", "/", "/v2")

    def on_connect(self, client: SimClient, path: str, query: dict[str, str]) -> None:
        client.state.update(depth={}, trigger={}, drop={}, lag={}, times=deque())
        status = {
            "channel": "status",
            "type": "update",
            "data": [
                {
                    "version": "2.0.10",
                    "system": "online",
                    "api_version": "v2",
                    "connection_id": self.rng.getrandbits(64),
                }
            ],
        }
        client.send(orjson.dumps(status))

    def on_text(self, client: SimClient, text: bytes) -> None:
        self.requests += 1
        if self.enforce_limits and _over(client.state["times"], MAX_MESSAGES_PER_SECOND):
            self.violations["messages_per_second"] += 1
            client.send(orjson.dumps({"error": "Exceeded msg rate"}))
            client.close(1008)
            return
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self._error(client, None, None, None, "Malformed request")
        if not isinstance(req, dict):
            return self._error(client, None, None, None, "Malformed request")
        method, rid = req.get("method"), req.get("req_id")
        if method == "ping":
            now = rfc3339(time.time_ns())
            answer: dict[str, Any] = {"method": "pong"}
            if rid is not None:
                answer["req_id"] = rid
            client.send(orjson.dumps(answer | {"time_in": now, "time_out": now}))
            return None
        if method not in ("subscribe", "unsubscribe"):
            return self._error(client, method, rid, None, f"Method not supported: {method}")
        params = req.get("params")
        if not isinstance(params, dict):
            return self._error(client, method, rid, None, "Missing params")
        channel, symbols = params.get("channel"), params.get("symbol")
        if channel not in CHANNELS:
            return self._error(client, method, rid, None, f"Channel not supported: {channel}")
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            return self._error(client, method, rid, None, "Missing field: symbol")
        depth = params.get("depth", 10)
        if channel == "book" and depth not in DEPTHS:
            return self._error(client, method, rid, None, f"Invalid depth: {depth}")
        for symbol in symbols:
            if method == "subscribe":
                self._subscribe(client, channel, symbol, params, rid)
            else:
                self._unsubscribe(client, channel, symbol, depth, rid)
        return None

    def _subscribe(
        self, client: SimClient, channel: str, symbol: str, params: dict[str, Any], rid: Any
    ) -> None:
        sym = self.symbols.get(symbol)
        if self.reject or sym is None:
            self.reject = max(0, self.reject - 1)
            return self._error(
                client, "subscribe", rid, symbol, f"Currency pair not supported {symbol}"
            )
        name = f"{channel}:{symbol}"
        if name in client.subs:
            return self._error(client, "subscribe", rid, symbol, "Already subscribed")
        if len(client.subs) >= MAX_SUBSCRIPTIONS:
            self.violations["subscriptions_per_connection"] += 1
            return self._error(client, "subscribe", rid, symbol, "Exceeded subscription limit")
        self.subscribe_requests += 1
        snapshot = params.get("snapshot", channel != "trade")  # trades: false by default
        result: dict[str, Any] = {"channel": channel}
        if channel == "book":
            depth = int(params.get("depth", 10))
            client.state["depth"][symbol] = depth
            client.state["drop"].pop(symbol, None)
            client.state["lag"].pop(symbol, None)
            result["depth"] = depth
        elif channel == "ticker":
            trigger = params.get("event_trigger", "trades")
            if trigger not in ("trades", "bbo"):
                return self._error(client, "subscribe", rid, symbol, "Invalid event_trigger")
            client.state["trigger"][symbol] = trigger
            result["event_trigger"] = trigger
        result |= {"snapshot": bool(snapshot), "symbol": symbol}
        client.subscribe([name])
        self._answer(client, "subscribe", rid, result)
        if snapshot:
            self._send_snapshot(client, channel, sym, time.time_ns())

    def _unsubscribe(
        self, client: SimClient, channel: str, symbol: str, depth: Any, rid: Any
    ) -> None:
        name = f"{channel}:{symbol}"
        if name not in client.subs:
            return self._error(client, "unsubscribe", rid, symbol, "Subscription Not Found")
        client.unsubscribe([name])
        result: dict[str, Any] = {"channel": channel}
        if channel == "book":
            result["depth"] = client.state["depth"].pop(symbol, depth)
        self._answer(client, "unsubscribe", rid, result | {"symbol": symbol})

    def _answer(self, client: SimClient, method: str, rid: Any, result: dict[str, Any]) -> None:
        now = rfc3339(time.time_ns())
        answer = {
            "method": method,
            "result": result,
            "success": True,
            "time_in": now,
            "time_out": now,
        }
        if rid is not None:
            answer["req_id"] = rid
        client.send(orjson.dumps(answer))

    def _error(
        self, client: SimClient, method: Any, rid: Any, symbol: str | None, text: str
    ) -> None:
        now = rfc3339(time.time_ns())
        answer: dict[str, Any] = {"error": text, "method": method, "success": False}
        if symbol is not None:
            answer["symbol"] = symbol
        answer |= {"time_in": now, "time_out": now}
        if rid is not None:
            answer["req_id"] = rid
        client.send(orjson.dumps(answer))

    def _send_snapshot(self, client: SimClient, channel: str, sym: SimSymbol, now_ns: int) -> None:
        vs = sym.venue_symbol
        if channel == "book":
            depth = client.state["depth"][vs]
            view = self.views[(vs, depth)] = top(sym, depth)  # the same as every subscriber's
            bids = sorted(view[0].items(), reverse=True)
            asks = sorted(view[1].items())
            frame = self._book_frame(sym, "snapshot", bids, asks, checksum(*view), now_ns)
            client.send(frame)
        elif channel == "trade":
            data = list(self.history[vs])
            client.send(orjson.dumps({"channel": "trade", "type": "snapshot", "data": data}))
        elif channel == "ticker":
            data = [self._ticker(sym, now_ns)]
            client.send(orjson.dumps({"channel": "ticker", "type": "snapshot", "data": data}))

    def _book_frame(
        self,
        sym: SimSymbol,
        kind: str,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
        crc: int,
        now_ns: int,
    ) -> bytes:
        pd, sd = sym.price_decimals, sym.size_decimals
        data = {
            "symbol": sym.venue_symbol,
            "bids": [{"price": num(p, pd), "qty": num(q, sd)} for p, q in bids],
            "asks": [{"price": num(p, pd), "qty": num(q, sd)} for p, q in asks],
            "checksum": crc,
            "timestamp": rfc3339(now_ns),
        }
        return orjson.dumps({"channel": "book", "type": kind, "data": [data]})

    # -- market data --------------------------------------------------------------------------

    def tick(self, now_ns: int, events: int) -> None:
        for _ in range(events):
            sym = self.rng.choice(self._order)
            self._publish(sym, sym.step(self.rng), now_ns)
        if now_ns // 1_000_000_000 != self.heartbeat_second:
            self.heartbeat_second = now_ns // 1_000_000_000
            self._heartbeat()

    def _heartbeat(self) -> None:
        assert self.server is not None
        for client in list(self.server.clients):
            if client.subs:
                client.send(b'{"channel":"heartbeat"}')

    def _record(self, sym: SimSymbol, ev: Event, now_ns: int) -> None:
        if ev.trade is None:
            return
        t, tape = ev.trade, self.tape[sym.venue_symbol]
        tape.last, tape.volume = t.price, tape.volume + t.size
        tape.notional += t.price * t.size
        tape.trades += 1
        tape.low, tape.high = min(tape.low, t.price), max(tape.high, t.price)
        pd, sd = sym.price_decimals, sym.size_decimals
        self.trade_log[sym.venue_symbol].append(
            (t.id, fmt(t.price, pd), fmt(t.size, sd), t.taker == "sell")
        )
        self.history[sym.venue_symbol].append(
            {
                "symbol": sym.venue_symbol,
                "side": t.taker,
                "price": num(t.price, pd),
                "qty": num(t.size, sd),
                "ord_type": "market" if self.rng.random() < 0.5 else "limit",
                "trade_id": t.id,
                "timestamp": rfc3339(now_ns),
            }
        )

    def _publish(self, sym: SimSymbol, ev: Event, now_ns: int) -> None:
        assert self.server is not None
        self._record(sym, ev, now_ns)
        vs = sym.venue_symbol
        if ev.trade is not None:
            frame = orjson.dumps(
                {"channel": "trade", "type": "update", "data": [self.history[vs][-1]]}
            )
            self.server.broadcast(f"trade:{vs}", lambda _c: frame)
        if ev.trade is not None or ev.top_changed:
            self._publish_ticker(sym, ev, now_ns)
        self._publish_book(sym, now_ns)

    def _publish_ticker(self, sym: SimSymbol, ev: Event, now_ns: int) -> None:
        """To subscribers with `event_trigger: trades` on a trade, with `bbo` when the best
        bid or offer changed."""
        assert self.server is not None
        vs = sym.venue_symbol
        frame = b""
        for client in self.server.index.get(f"ticker:{vs}", ()):
            bbo = client.state["trigger"].get(vs) == "bbo"
            if ev.top_changed if bbo else ev.trade is not None:
                if not frame:
                    data = [self._ticker(sym, now_ns)]
                    frame = orjson.dumps({"channel": "ticker", "type": "update", "data": data})
                client.send(frame)

    def _publish_book(self, sym: SimSymbol, now_ns: int) -> None:
        assert self.server is not None
        vs = sym.venue_symbol
        subscribers = self.server.index.get(f"book:{vs}")
        if not subscribers:
            return
        by_depth: dict[int, list[SimClient]] = defaultdict(list)
        for client in subscribers:
            by_depth[client.state["depth"].get(vs, 10)].append(client)
        for depth, clients in by_depth.items():
            old = self.views.get((vs, depth)) or top(sym, depth)
            new = self.views[(vs, depth)] = top(sym, depth)
            levels = (_diff(old[0], new[0], sym.bids), _diff(old[1], new[1], sym.asks))
            if not levels[0] and not levels[1]:
                continue
            crc = checksum(*new)
            frame = self._book_frame(sym, "update", levels[0], levels[1], crc, now_ns)
            if vs in self.corrupt:
                bad = self._corrupted(sym, levels, crc, now_ns)
                if bad is not None:
                    frame = bad
            for client in clients:
                self._send_update(client, vs, depth, old, new, levels, frame)

    def _corrupted(
        self,
        sym: SimSymbol,
        levels: Levels,
        crc: int,
        now_ns: int,
    ) -> bytes | None:
        """The update with the first level it sets one unit off (None: it only removes)."""
        bids, asks = list(levels[0]), list(levels[1])
        for side in (bids, asks):
            for i, (p, q) in enumerate(side):
                if q:
                    side[i] = (p, q + 1)
                    self.corrupt.discard(sym.venue_symbol)
                    self.corrupted += 1
                    return self._book_frame(sym, "update", bids, asks, crc, now_ns)
        return None

    def _send_update(
        self,
        client: SimClient,
        vs: str,
        depth: int,
        old: tuple[Side, Side],
        new: tuple[Side, Side],
        levels: Levels,
        frame: bytes,
    ) -> None:
        """Send an update, unless the client is to lose it (`skip`)."""
        drops, lag = client.state["drop"], client.state["lag"]
        if vs in drops or vs in lag:
            have = lag.get(vs, old)  # the client's book: as it was before the first loss
            if drops.get(vs, 0) > 0:
                drops[vs] -= 1
                if not drops[vs]:
                    del drops[vs]
                lag[vs] = have
                self.dropped_updates += 1
                return
            if have == new:
                del lag[vs]  # the market came back to what the client has: nothing lost
                self.losses_healed += 1
            elif apply(have, levels, depth) == new:
                self.dropped_updates += 1
                return  # it would repair the client's book: lost as well, the loss stays
            else:
                del lag[vs]  # the client's checksum shows the loss now
        client.send(frame)

    def _ticker(self, sym: SimSymbol, now_ns: int) -> dict[str, Any]:
        tape, (b, bq, a, aq) = self.tape[sym.venue_symbol], sym.top()
        pd, sd = sym.price_decimals, sym.size_decimals
        vwap = round(tape.notional / tape.volume) if tape.volume else tape.last
        change = tape.last - tape.open
        pct = round(change / tape.open * 100, 2) if tape.open else 0.0
        return {
            "symbol": sym.venue_symbol,
            "bid": num(b, pd),
            "bid_qty": num(bq, sd),
            "ask": num(a, pd),
            "ask_qty": num(aq, sd),
            "last": num(tape.last, pd),
            "volume": num(tape.volume, sd),
            "vwap": num(vwap, pd),
            "low": num(tape.low, pd),
            "high": num(tape.high, pd),
            "change": signed(change, pd),
            "change_pct": pct,
            "trades": tape.trades,
            "timestamp": rfc3339(now_ns),
        }

    # -- faults and inspection ----------------------------------------------------------------

    def skip(self, n: int) -> None:
        """Every client loses the next `n` book updates of each pair it follows."""
        assert self.server is not None
        for client in self.server.clients:
            for name in client.subs:
                channel, _, vs = name.partition(":")
                if channel == "book":
                    client.state["drop"][vs] = client.state["drop"].get(vs, 0) + n

    def malformed(self, kind: str) -> bytes:
        head = b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD"'
        if kind == "truncated":
            return head
        if kind == "invalid_utf8":
            return b'{"channel":"trade","type":"update","data":[{"symbol":"\xff\xfe"}]}'
        if kind == "oversize":
            return b'{"channel":"heartbeat","pad":"%s"}' % (b"x" * ((1 << 20) + 1024))
        if kind == "unknown_type":
            return b'{"channel":"mystery","type":"update","data":[]}'
        if kind == "wrong_types":
            return (
                b'{"channel":"trade","type":"update","data":[{"symbol":1,"side":[],"price":{},'
                b'"qty":null,"ord_type":2,"trade_id":"x","timestamp":3}]}'
            )
        raise ValueError(f"unknown malformed kind {kind!r}")

    def shutdown_notice(self) -> bytes | None:
        return None  # Kraken announces no connection cut

    def reject_next(self, count: int) -> None:
        self.reject += count

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "violations": dict(self.violations),
            "subscribe_requests": self.subscribe_requests,
            "corrupted": self.corrupted,
            "dropped_updates": self.dropped_updates,
            "losses_healed": self.losses_healed,
        }

    def control(self, parts: list[str], query: dict[str, str]) -> Any:
        sym = self.symbols.get(query.get("symbol", ""))
        if parts == ["book"] and sym is not None:
            bids, asks = top(sym, int(query.get("depth", "10")))
            pd, sd = sym.price_decimals, sym.size_decimals
            return {
                "update_id": sym.update_id,
                "bids": [[fmt(p, pd), fmt(q, sd)] for p, q in sorted(bids.items())],
                "asks": [[fmt(p, pd), fmt(q, sd)] for p, q in sorted(asks.items())],
            }
        if parts == ["trades"] and sym is not None:
            return [list(t) for t in self.trade_log[sym.venue_symbol]]
        if parts == ["corrupt"] and sym is not None:
            self.corrupt.add(sym.venue_symbol)
            return {"ok": True, "corrupted": self.corrupted}
        return None


def _diff(old: Side, new: Side, book: Side) -> list[tuple[int, int]]:
    """The levels of an update: what changed or came into range, and `0` for what left the
    book (a level still in the book that fell out of range is not sent)."""
    out = [(p, q) for p, q in new.items() if old.get(p) != q]
    out.extend((p, 0) for p in old if p not in new and p not in book)
    out.sort()
    return out


def _over(times: deque[float], limit: int) -> bool:
    """Record one event now; True when more than `limit` fell within the last second."""
    now = time.monotonic()
    times.append(now)
    while now - times[0] >= 1.0:
        times.popleft()
    return len(times) > limit
