"""WSM's Postgres layer: where the database is, its migrations, and per-transaction identities.

Start-up: `url = resolve_database_url(config.url)`, `await migrate(url)`,
`pool = await create_pool(url)`.
"""

from engine.db.embedded import EmbeddedPostgres, default_data_dir, resolve_database_url
from engine.db.migrate import SQL_DIR, migrate
from engine.db.session import (
    ENGINE_ROLE,
    USER_ROLES,
    DatabaseConfig,
    as_user,
    create_pool,
    engine_tx,
)

__all__ = [
    "ENGINE_ROLE",
    "SQL_DIR",
    "USER_ROLES",
    "DatabaseConfig",
    "EmbeddedPostgres",
    "as_user",
    "create_pool",
    "default_data_dir",
    "engine_tx",
    "migrate",
    "resolve_database_url",
]
