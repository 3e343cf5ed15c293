"""/api/websocket/metrics: a connection's stored time series, and live aggregates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from api.errors import bad_request, not_found
from api.jsonio import json_response
from api.params import positive_float, timestamp, uuid_query
from api.schemas import Aggregate, Aggregated, MetricPoint, MetricSeries
from api.state import api_state, user_tx
from api.views import live_connections, own_connection, visible_connection_ids
from engine.coordinator import ConnectionMetrics

MAX_POINTS = 10_000
MAX_SPAN = timedelta(days=31)

_SERIES = """
WITH b AS (
    SELECT date_bin(make_interval(secs => $4), ts, $2) AS bucket,
           max(messages_in) AS mi, max(bytes_in) AS bi, max(errors) AS e, max(gaps) AS g,
           max(resyncs) AS r, max(reconnects) AS rc,
           avg(latency_p50_us) AS p50, max(latency_p99_us) AS p99
    FROM websocket_connection_metrics
    WHERE connection_id = $1 AND ts >= $2 AND ts < $3
    GROUP BY 1
)
SELECT bucket, mi, bi, e, g, r, rc, p50, p99,
       greatest(mi - lag(mi) OVER w, 0) / extract(epoch FROM bucket - lag(bucket) OVER w) AS mps,
       greatest(bi - lag(bi) OVER w, 0) / extract(epoch FROM bucket - lag(bucket) OVER w) AS bps
FROM b WINDOW w AS (ORDER BY bucket) ORDER BY bucket
"""


async def metric_series(request: Request) -> Response:
    """`connection_id`, `from`/`to` (default: the last 15 minutes), `step` seconds."""
    row_id = uuid_query(request, "connection_id")
    end = timestamp(request, "to") or datetime.now(UTC)
    start = timestamp(request, "from") or end - timedelta(minutes=15)
    if start >= end:
        raise bad_request("from must be before to", "from")
    if end - start > MAX_SPAN:
        raise bad_request(f"at most {MAX_SPAN.days} days at once", "from")
    span = (end - start).total_seconds()
    step = positive_float(request, "step", low=0.001, high=MAX_SPAN.total_seconds())
    if step is None:
        step = max(1.0, span / 300)
    if span / step > MAX_POINTS:
        raise bad_request(f"at most {MAX_POINTS} points: choose a larger step", "step")
    async with user_tx(request) as conn:
        if await own_connection(conn, row_id) is None:  # type: ignore[arg-type]
            raise not_found("connection", row_id)
        rows = await conn.fetch(_SERIES, row_id, start, end, step)
    points = [
        MetricPoint(
            ts=r["bucket"],
            messages_in=r["mi"],
            bytes_in=r["bi"],
            errors=r["e"],
            gaps=r["g"],
            resyncs=r["r"],
            reconnects=r["rc"],
            messages_per_s=None if r["mps"] is None else float(r["mps"]),
            bytes_per_s=None if r["bps"] is None else float(r["bps"]),
            latency_p50_us=r["p50"],
            latency_p99_us=r["p99"],
        )
        for r in rows
    ]
    series = MetricSeries(connection_id=str(row_id), start=start, end=end, step=step, points=points)
    return json_response(series)


def aggregate(name: str, metrics: list[ConnectionMetrics]) -> Aggregate:
    rate = sum(m.messages_per_s for m in metrics)
    with_p50 = [m for m in metrics if m.latency_p50_us is not None]
    weight = sum(m.messages_per_s for m in with_p50)
    p50s = [(m.latency_p50_us or 0.0, m.messages_per_s) for m in with_p50]
    p50 = None
    if p50s:
        if weight > 0:
            p50 = sum(v * w for v, w in p50s) / weight
        else:
            p50 = sum(v for v, _ in p50s) / len(p50s)
    p99s = [m.latency_p99_us for m in metrics if m.latency_p99_us is not None]
    live = [m for m in metrics if m.state == "live"]
    return Aggregate(
        exchange=name,
        connections=len(metrics),
        live=len(live),
        messages_per_s=rate,
        bytes_per_s=sum(m.bytes_per_s for m in metrics),
        messages_in=sum(m.messages_in for m in metrics),
        errors=sum(sum(m.parse_errors.values()) for m in metrics),
        gaps=sum(m.gaps for m in metrics),
        resyncs=sum(m.resyncs for m in metrics),
        reconnects=sum(m.reconnects for m in metrics),
        latency_p50_us=p50,
        latency_p99_us=max(p99s) if p99s else None,
        uptime_s=sum(m.uptime_s or 0.0 for m in live),
        live_ratio=len(live) / len(metrics) if metrics else 1.0,
    )


def caller_metrics(request: Request, visible: set[str]) -> list[ConnectionMetrics]:
    api = api_state(request)
    live = live_connections(api.manager)
    return [api.manager.metrics(live[r].id) for r in sorted(visible) if r in live]


async def aggregated(request: Request) -> Response:
    """Per exchange and overall, over the caller's connections, as the engine sees them now."""
    async with user_tx(request) as conn:
        visible = await visible_connection_ids(conn)
    metrics = caller_metrics(request, visible)
    by_exchange: dict[str, list[ConnectionMetrics]] = {}
    for m in metrics:
        by_exchange.setdefault(m.exchange, []).append(m)
    body = Aggregated(
        at=datetime.now(UTC),
        exchanges=[aggregate(ex, ms) for ex, ms in sorted(by_exchange.items())],
        overall=aggregate("*", metrics),
    )
    return json_response(body)
