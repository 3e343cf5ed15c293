"""WSM's Postgres layer: where the database is, its migrations, per-transaction identities,
durable connection state (`StateStore`) and batched metrics (`MetricsWriter`).

Start-up: `url = resolve_database_url(config.url)`, `await migrate(url)`,
`pool = await create_pool(url)`, then `StateStore(pool)` and `MetricsWriter(pool)`.
"""

from engine.backoff import ReconnectPolicy
from engine.db.batch import BatchOutcome
from engine.db.embedded import EmbeddedPostgres, default_data_dir, resolve_database_url
from engine.db.metrics import MetricRow, MetricsWriter, MetricsWriterConfig, MetricsWriterStats
from engine.db.migrate import SQL_DIR, migrate
from engine.db.session import (
    ENGINE_ROLE,
    USER_ROLES,
    DatabaseConfig,
    as_user,
    create_pool,
    engine_tx,
)
from engine.db.store import (
    ConnectionEvent,
    ConnectionRow,
    DesiredConnection,
    EventRow,
    NewConnection,
    NewSubscription,
    StateStore,
    StateUpdate,
    SubscriptionRow,
)

__all__ = [
    "ENGINE_ROLE",
    "SQL_DIR",
    "USER_ROLES",
    "BatchOutcome",
    "ConnectionEvent",
    "ConnectionRow",
    "DatabaseConfig",
    "DesiredConnection",
    "EmbeddedPostgres",
    "EventRow",
    "MetricRow",
    "MetricsWriter",
    "MetricsWriterConfig",
    "MetricsWriterStats",
    "NewConnection",
    "NewSubscription",
    "ReconnectPolicy",
    "StateStore",
    "StateUpdate",
    "SubscriptionRow",
    "as_user",
    "create_pool",
    "default_data_dir",
    "engine_tx",
    "migrate",
    "resolve_database_url",
]
