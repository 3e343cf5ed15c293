"""The Starlette app: routes (from the operation table, which also makes /openapi.json),
middleware, error handlers, and a lifespan that opens the API's own database pool.

    app = create_app(manager, secret=...)   # manager: a started WebSocketManager
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from api import schemas as s
from api.audit import AuditWriter
from api.auth import TokenVerifier
from api.clientip import ClientAddress, parse_networks
from api.errors import ApiError, handle_api_error, handle_http_error
from api.jsonio import json_response
from api.middleware.allowlist import AllowList
from api.middleware.authenticate import Authenticate
from api.middleware.body_limit import BodyLimit
from api.middleware.rate_limit import RateLimit
from api.middleware.responses import CountResponses
from api.openapi import ID, Op, Param, build, page_params
from api.ratelimit import RateLimiter
from api.routes import (
    allowlist,
    connections,
    dashboard,
    events,
    health,
    live,
    metrics,
    prometheus,
)
from api.routes import subscriptions as subs
from api.state import ApiState
from engine.config import ApiConfig
from engine.db.session import DatabaseConfig, create_pool
from engine.errors import ConfigError
from engine.manager import WebSocketManager

TIME = {  # what api.params.timestamp accepts
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1e11},
    ],
    "description": "RFC 3339 / ISO 8601 (without an offset: UTC) or seconds since the epoch",
}
COLL = "/api/websocket/connections"
SUBS = "/api/websocket/subscriptions"
ALLOW = "/api/websocket/ip-whitelist"


def operations(config: ApiConfig) -> list[Op]:
    page = page_params(config.max_page_size)
    conn_q = Param("connection_id", "query", {"type": "string", "format": "uuid"})
    return [
        Op(
            "GET",
            COLL,
            connections.list_connections,
            "the caller's connections, live state",
            s.ConnectionPage,
            params=page,
            tags=("connections",),
        ),
        Op(
            "POST",
            COLL,
            connections.create_connection,
            "create a connection (engine opens it)",
            s.Connection,
            status=201,
            body=s.NewConnection,
            errors=(409, 503),
            tags=("connections",),
        ),
        Op(
            "DELETE",
            COLL,
            connections.delete_connection,
            "disconnect and delete (?id=)",
            s.Deleted,
            params=(Param("id", "query", {"type": "string", "format": "uuid"}, required=True),),
            errors=(404,),
            tags=("connections",),
            op_id="delete_connection_by_query",
        ),
        Op(
            "GET",
            COLL + "/{id}",
            connections.get_connection,
            "one connection, live state",
            s.Connection,
            params=(ID,),
            errors=(404,),
            tags=("connections",),
        ),
        Op(
            "DELETE",
            COLL + "/{id}",
            connections.delete_connection,
            "disconnect and delete",
            s.Deleted,
            params=(ID,),
            errors=(404,),
            tags=("connections",),
        ),
        Op(
            "POST",
            COLL + "/{id}/connect",
            connections.connect,
            "connect (resume)",
            s.Connection,
            params=(ID,),
            errors=(404, 503),
            tags=("connections",),
        ),
        Op(
            "POST",
            COLL + "/{id}/disconnect",
            connections.disconnect,
            "disconnect, keeping subscriptions",
            s.Connection,
            params=(ID,),
            errors=(404, 503),
            tags=("connections",),
        ),
        Op(
            "POST",
            COLL + "/{id}/reconnect",
            connections.reconnect,
            "reconnect now",
            s.Connection,
            params=(ID,),
            errors=(404, 409, 503),
            tags=("connections",),
        ),
        Op(
            "GET",
            COLL + "/{id}/events",
            events.list_events,
            "state changes and errors",
            s.EventPage,
            params=(
                ID,
                Param("from", "query", TIME),
                Param("to", "query", TIME),
                Param("kind", "query", {"enum": ["state", "error"]}),
                *page,
            ),
            errors=(404,),
            tags=("connections",),
        ),
        Op(
            "GET",
            SUBS,
            subs.list_subscriptions,
            "the caller's subscriptions",
            s.SubscriptionPage,
            params=(conn_q, *page),
            tags=("subscriptions",),
        ),
        Op(
            "POST",
            SUBS,
            subs.create_subscription,
            "subscribe a connection",
            s.Subscription,
            status=201,
            body=s.NewSubscription,
            errors=(404, 503),
            tags=("subscriptions",),
        ),
        Op(
            "DELETE",
            SUBS,
            subs.delete_subscription,
            "unsubscribe (?id=)",
            s.Deleted,
            params=(Param("id", "query", {"type": "string", "format": "uuid"}, required=True),),
            errors=(404,),
            tags=("subscriptions",),
            op_id="delete_subscription_by_query",
        ),
        Op(
            "DELETE",
            SUBS + "/{id}",
            subs.delete_subscription,
            "unsubscribe",
            s.Deleted,
            params=(ID,),
            errors=(404,),
            tags=("subscriptions",),
        ),
        Op(
            "GET",
            ALLOW,
            allowlist.list_networks,
            "the caller's IP allow-list (empty: requests from anywhere)",
            s.AllowedNetworkPage,
            params=page,
            tags=("security",),
        ),
        Op(
            "POST",
            ALLOW,
            allowlist.add_network,
            "allow requests from a network (409 if it would lock out the caller's address)",
            s.AllowedNetwork,
            status=201,
            body=s.NewAllowedNetwork,
            errors=(409,),
            tags=("security",),
        ),
        Op(
            "DELETE",
            ALLOW + "/{id}",
            allowlist.delete_network,
            "remove a network (409 if the rest would lock out the caller's address)",
            s.Deleted,
            params=(ID,),
            errors=(404, 409),
            tags=("security",),
        ),
        Op(
            "GET",
            "/api/websocket/metrics",
            metrics.metric_series,
            "a connection's metrics over time",
            s.MetricSeries,
            params=(
                Param(
                    "connection_id", "query", {"type": "string", "format": "uuid"}, required=True
                ),
                Param("from", "query", TIME),
                Param("to", "query", TIME),
                Param(
                    "step",
                    "query",
                    {"type": "number", "exclusiveMinimum": 0, "maximum": 31 * 86400},
                    "seconds per point",
                ),
            ),
            errors=(404,),
            tags=("metrics",),
        ),
        Op(
            "GET",
            "/api/websocket/metrics/aggregated",
            metrics.aggregated,
            "per exchange and overall, now",
            s.Aggregated,
            tags=("metrics",),
        ),
        Op(
            "GET",
            "/api/websocket/exchanges",
            health.exchanges,
            "exchanges and channels",
            s.ExchangeList,
            tags=("metrics",),
        ),
        Op(
            "GET",
            "/api/websocket/live",
            live.live,
            "dashboard feed (Server-Sent Events)",
            media="text/event-stream",
            tags=("dashboard",),
        ),
        Op(
            "GET",
            "/metrics",
            prometheus.prometheus,
            "Prometheus metrics",
            media="text/plain",
            tags=("metrics",),
        ),
        Op("GET", "/health", health.health, "liveness", s.Health, secured=False),
        Op("GET", "/ready", health.ready, "readiness", s.Health, errors=(503,), secured=False),
    ]


def create_app(
    manager: WebSocketManager,
    *,
    secret: str,
    config: ApiConfig | None = None,
    database: DatabaseConfig | None = None,
) -> Starlette:
    """The API of a started `manager` (which must persist to Postgres)."""
    cfg = config or manager.config.api
    if len(secret) < 32:
        raise ConfigError("api.jwt_secret", "must be at least 32 characters")
    state = ApiState(
        manager=manager,
        config=cfg,
        verifier=TokenVerifier(
            secret, audience=cfg.jwt_audience, issuer=cfg.jwt_issuer, leeway=cfg.jwt_leeway
        ),
        clients=ClientAddress(parse_networks(cfg.trusted_proxies)),
        limiter=RateLimiter(cfg.rate_limit_per_second, cfg.rate_limit_burst),
        failures=RateLimiter(cfg.rate_limit_per_second, cfg.rate_limit_burst),
    )
    ops = operations(cfg)
    spec = build(ops, exchanges=state.exchanges)

    async def openapi(request: Request) -> Response:
        return json_response(spec)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = manager.database_url
        if url is None:
            raise ConfigError("database.enabled", "the API needs the engine's Postgres")
        db = database or manager.config.database
        state.pool = await create_pool(
            url,
            DatabaseConfig(
                url=url,
                min_connections=1,
                max_connections=cfg.pool_size,
                connect_timeout=db.connect_timeout,
                command_timeout=db.command_timeout,
                statement_cache_size=db.statement_cache_size,
            ),
        )
        state.audit = AuditWriter(state.pool)
        await state.audit.start()
        try:
            yield
        finally:
            state.stopping.set()
            await state.audit.close()
            await state.pool.close()

    routes: list[Route | Mount] = [Route(o.path, o.endpoint, methods=[o.method]) for o in ops]
    routes += [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/", dashboard.index, methods=["GET"]),
        Mount("/static", StaticFiles(directory=dashboard.STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(CountResponses),
            Middleware(BodyLimit, max_bytes=cfg.max_body_bytes),
            Middleware(Authenticate),
            Middleware(RateLimit),
            Middleware(AllowList),
        ],
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_error},
        lifespan=lifespan,
    )
    app.state.api = state
    return app
