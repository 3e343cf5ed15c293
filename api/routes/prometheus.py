"""/metrics in Prometheus' text format: per connection (state, messages and bytes, rates,
parse errors, gaps, resyncs, reconnects, latency histogram, last message age), per exchange
(ring writes, worker restarts), ring readers of this process, the metrics writer and the
API itself. A user's token sees their own connections; the scrape token sees all."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

from api.state import api_state, user_tx
from api.views import visible_connection_ids
from engine.coordinator import ConnectionInfo

STATES = ("connecting", "subscribing", "live", "stale", "closed", "backoff", "failed", "stopped")


def _label(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _labels(**labels: object) -> str:
    return "{" + ",".join(f"{k}={_label(v)}" for k, v in labels.items()) + "}"


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._declared: set[str] = set()

    def metric(
        self, name: str, kind: str, help_: str, samples: Iterable[tuple[str, float]]
    ) -> None:
        if name not in self._declared:
            self._declared.add(name)
            self.lines.append(f"# HELP {name} {help_}")
            self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{labels} {_number(value)}")

    def render(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    return repr(float(value)) if isinstance(value, float) else str(value)


async def prometheus(request: Request) -> Response:
    api = api_state(request)
    manager = api.manager
    conns = manager.connections()
    if not getattr(request.state, "scraper", False):
        async with user_tx(request) as conn:
            visible = await visible_connection_ids(conn)
        conns = [c for c in conns if c.row_id in visible]
    out = _Text()
    _connections(out, manager, conns)
    _engine(out, request)
    return Response(out.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _connections(out: _Text, manager: object, conns: list[ConnectionInfo]) -> None:
    from engine.manager import WebSocketManager

    assert isinstance(manager, WebSocketManager)
    coord = manager.coordinator
    rows = []
    for c in conns:
        labels = {"exchange": c.exchange, "connection": c.row_id or c.id}
        rows.append((labels, manager.metrics(c.id), coord.latency(c.id)))
    out.metric(
        "wsm_connection_state",
        "gauge",
        "1 for the connection's current state",
        ((_labels(**lb, state=s), 1 if m.state == s else 0) for lb, m, _ in rows for s in STATES),
    )
    counters = (
        ("wsm_connection_messages_received_total", "messages received", "messages_in"),
        ("wsm_connection_bytes_received_total", "payload bytes received", "bytes_in"),
        ("wsm_connection_messages_sent_total", "messages sent", "messages_out"),
        ("wsm_connection_gaps_total", "sequence gaps detected", "gaps"),
        ("wsm_connection_resyncs_total", "book resynchronisations", "resyncs"),
        ("wsm_connection_reconnects_total", "reconnects", "reconnects"),
        ("wsm_connection_rollovers_total", "scheduled make-before-break rollovers", "rollovers"),
    )
    for name, help_, attr in counters:
        out.metric(name, "counter", help_, ((_labels(**lb), getattr(m, attr)) for lb, m, _ in rows))
    out.metric(
        "wsm_connection_parse_errors_total",
        "counter",
        "frames that could not be parsed, by channel",
        (
            (_labels(**lb, channel=ch), n)
            for lb, m, _ in rows
            for ch, n in sorted(m.parse_errors.items())
        ),
    )
    out.metric(
        "wsm_connection_messages_per_second",
        "gauge",
        "message rate over the last stats interval",
        ((_labels(**lb), m.messages_per_s) for lb, m, _ in rows),
    )
    out.metric(
        "wsm_connection_bytes_per_second",
        "gauge",
        "byte rate over the last stats interval",
        ((_labels(**lb), m.bytes_per_s) for lb, m, _ in rows),
    )
    out.metric(
        "wsm_connection_last_message_age_seconds",
        "gauge",
        "seconds since the last frame",
        ((_labels(**lb), m.last_message_age_s) for lb, m, _ in rows if m.last_message_age_s),
    )
    samples: list[tuple[str, float]] = []
    for lb, _, h in rows:
        total = 0
        for bound, n in zip(h.bounds_us, h.counts, strict=False):
            total += n
            samples.append((_labels(**lb, le=f"{bound / 1e6:g}"), total))
        samples.append((_labels(**lb, le="+Inf"), h.count))
    out.metric(
        "wsm_connection_latency_seconds_bucket",
        "counter",
        "exchange event to local receive, sampled messages (histogram buckets)",
        samples,
    )
    out.metric(
        "wsm_connection_latency_seconds_sum",
        "counter",
        "sum of sampled latencies",
        ((_labels(**lb), h.sum_us / 1e6) for lb, _, h in rows),
    )
    out.metric(
        "wsm_connection_latency_seconds_count",
        "counter",
        "number of sampled latencies",
        ((_labels(**lb), h.count) for lb, _, h in rows),
    )


def _engine(out: _Text, request: Request) -> None:
    api = api_state(request)
    manager = api.manager
    ex_stats = manager.coordinator.exchange_stats()
    out.metric(
        "wsm_ring_records_written_total",
        "counter",
        "records written into the exchange's ring",
        ((_labels(exchange=e.exchange), e.ring_records) for e in ex_stats),
    )
    out.metric(
        "wsm_ring_capacity_records",
        "gauge",
        "ring capacity",
        ((_labels(exchange=e.exchange), e.ring_capacity) for e in ex_stats),
    )
    out.metric(
        "wsm_worker_restarts_total",
        "counter",
        "worker process restarts",
        ((_labels(exchange=e.exchange), e.worker_restarts) for e in ex_stats),
    )
    out.metric(
        "wsm_unrouted_frames_total",
        "counter",
        "frames of streams nobody wants",
        ((_labels(exchange=e.exchange), e.unrouted) for e in ex_stats),
    )
    readers = manager.readers()
    out.metric(
        "wsm_reader_lag_records",
        "gauge",
        "records published but not yet read, per ring reader of this process",
        ((_labels(exchange=r.exchange, reader=i), r.lag) for i, r in enumerate(readers)),
    )
    out.metric(
        "wsm_reader_lost_records_total",
        "counter",
        "records a reader was lapped out of",
        ((_labels(exchange=r.exchange, reader=i), r.lost) for i, r in enumerate(readers)),
    )
    persist = manager.coordinator.persist
    if persist is not None:
        st = persist.stats()
        m = st["metrics"]
        for name, kind, help_, value in (
            ("wsm_metrics_writer_buffered_rows", "gauge", "rows waiting", m["buffered"]),
            ("wsm_metrics_writer_written_rows_total", "counter", "rows written", m["written"]),
            ("wsm_metrics_writer_dropped_rows_total", "counter", "rows dropped", m["dropped"]),
            ("wsm_metrics_writer_rejected_rows_total", "counter", "rows refused", m["rejected"]),
            (
                "wsm_metrics_writer_failed_flushes_total",
                "counter",
                "failed batches",
                m["failed_flushes"],
            ),
            (
                "wsm_state_writer_pending",
                "gauge",
                "state updates and events waiting",
                st["pending_updates"] + st["pending_events"],
            ),
            ("wsm_state_writer_dropped_total", "counter", "state updates dropped", st["dropped"]),
        ):
            out.metric(name, kind, help_, [("", value)])
    audit = api.audit
    for name, kind, help_, value in (
        ("wsm_api_audit_queued_rows", "gauge", "refusal audit rows waiting", audit.queued),
        ("wsm_api_audit_dropped_rows_total", "counter", "audit rows dropped", audit.dropped),
        (
            "wsm_api_rate_limited_total",
            "counter",
            "requests refused by the rate limit",
            api.limiter.refused,
        ),
    ):
        out.metric(name, kind, help_, [("", value)])
    out.metric(
        "wsm_api_responses_total",
        "counter",
        "responses by status",
        ((_labels(status=s), n) for s, n in sorted(api.requests.items())),
    )
