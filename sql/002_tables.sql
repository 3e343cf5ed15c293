-- WSM's tables. Names are a contract with the platform. Every row carries its owner (the
-- platform user's id, auth.uid()); rows that belong to a connection reference it through
-- (connection_id, owner), so a row can never point at another user's connection.

-- The reconnect policy drives the engine, so its known keys must have the right types here,
-- whoever writes the row; unknown keys pass (a newer WSM may add some).
CREATE FUNCTION wsm_reconnect_valid(r jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT CASE WHEN jsonb_typeof(r) <> 'object' THEN false ELSE NOT EXISTS (
            SELECT FROM jsonb_each(r) AS e(k, v)
            WHERE CASE
                WHEN k IN ('auto', 'exponential_backoff') THEN jsonb_typeof(v) <> 'boolean'
                WHEN k NOT IN ('max_attempts', 'delay', 'max_delay', 'reset_after') THEN false
                WHEN jsonb_typeof(v) <> 'number' THEN true
                WHEN k = 'max_attempts'
                    THEN v::text::numeric NOT BETWEEN 0 AND 2147483647
                      OR v::text::numeric <> trunc(v::text::numeric)
                ELSE v::text::numeric < 0
            END
        ) END
    $$;

CREATE TABLE websocket_connections (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner             uuid NOT NULL,
    exchange          text NOT NULL CHECK (exchange <> ''),
    -- the user-facing connection id
    name              text NOT NULL CHECK (name <> ''),
    url               text,
    -- {auto, max_attempts, delay, max_delay, exponential_backoff, reset_after}
    reconnect         jsonb NOT NULL DEFAULT '{}' CHECK (wsm_reconnect_valid(reconnect)),
    desired_state     text NOT NULL DEFAULT 'disconnected'
                      CHECK (desired_state IN ('connected', 'disconnected')),
    -- what the engine last reported (its state machine's names); descriptive, not checked
    current_state     text NOT NULL DEFAULT 'disconnected',
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    last_connected_at timestamptz,
    UNIQUE (owner, name),
    UNIQUE (id, owner)
);

CREATE TABLE websocket_subscriptions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner         uuid NOT NULL,
    connection_id uuid NOT NULL,
    channel       text NOT NULL CHECK (channel <> ''),
    symbols       text[] NOT NULL CHECK (cardinality(symbols) > 0),
    kinds         text[],
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'active', 'rejected', 'removed')),
    reason        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (connection_id, owner)
        REFERENCES websocket_connections (id, owner) ON DELETE CASCADE
);
CREATE INDEX websocket_subscriptions_connection ON websocket_subscriptions (connection_id);

-- One row per connection per stats tick. The primary key is the natural key that makes a
-- retried batch idempotent (INSERT ... ON CONFLICT DO NOTHING); it is also the index for
-- time-range queries per connection (connection_id = $1 AND ts BETWEEN $2 AND $3).
CREATE TABLE websocket_connection_metrics (
    connection_id  uuid NOT NULL,
    owner          uuid NOT NULL,
    ts             timestamptz NOT NULL,
    messages_in    bigint NOT NULL DEFAULT 0 CHECK (messages_in >= 0),
    bytes_in       bigint NOT NULL DEFAULT 0 CHECK (bytes_in >= 0),
    messages_out   bigint NOT NULL DEFAULT 0 CHECK (messages_out >= 0),
    bytes_out      bigint NOT NULL DEFAULT 0 CHECK (bytes_out >= 0),
    errors         bigint NOT NULL DEFAULT 0 CHECK (errors >= 0),
    gaps           bigint NOT NULL DEFAULT 0 CHECK (gaps >= 0),
    resyncs        bigint NOT NULL DEFAULT 0 CHECK (resyncs >= 0),
    reconnects     bigint NOT NULL DEFAULT 0 CHECK (reconnects >= 0),
    latency_p50_us double precision,
    latency_p99_us double precision,
    PRIMARY KEY (connection_id, ts),
    FOREIGN KEY (connection_id, owner)
        REFERENCES websocket_connections (id, owner) ON DELETE CASCADE
);

-- One metrics row as the engine sends a batch of them: an array of this type, unnested by
-- INSERT ... SELECT (engine/db/metrics.py). Its own type, not the table's row type, so that
-- the table can grow without breaking running writers.
CREATE TYPE wsm_metric_row AS (
    connection_id  uuid,
    owner          uuid,
    ts             timestamptz,
    messages_in    bigint,
    bytes_in       bigint,
    messages_out   bigint,
    bytes_out      bigint,
    errors         bigint,
    gaps           bigint,
    resyncs        bigint,
    reconnects     bigint,
    latency_p50_us double precision,
    latency_p99_us double precision
);

-- Every state change and every error of a connection, one row each.
CREATE TABLE websocket_connection_events (
    id            bigserial PRIMARY KEY,
    connection_id uuid NOT NULL,
    owner         uuid NOT NULL,
    ts            timestamptz NOT NULL DEFAULT now(),
    kind          text NOT NULL CHECK (kind IN ('state', 'error')),
    state         text,
    code          text,  -- the venue's own code, as the venue sent it
    reason        text,
    details       jsonb NOT NULL DEFAULT '{}',
    FOREIGN KEY (connection_id, owner)
        REFERENCES websocket_connections (id, owner) ON DELETE CASCADE
);
CREATE INDEX websocket_connection_events_connection_ts
    ON websocket_connection_events (connection_id, ts);

CREATE TABLE ip_whitelist (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner      uuid NOT NULL,
    cidr       cidr NOT NULL,
    label      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner, cidr)
);

-- Exchange API keys: the secret is AES-256-GCM ciphertext (engine/keys.py); the master key
-- never reaches the database.
CREATE TABLE api_key_versions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner             uuid NOT NULL,
    exchange          text NOT NULL CHECK (exchange <> ''),
    version           integer NOT NULL CHECK (version > 0),
    key_id            text NOT NULL,
    secret_ciphertext bytea NOT NULL,
    nonce             bytea NOT NULL CHECK (octet_length(nonce) = 12),
    state             text NOT NULL DEFAULT 'active'
                      CHECK (state IN ('active', 'rotating', 'revoked')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    rotated_at        timestamptz,
    expires_at        timestamptz,
    UNIQUE (owner, exchange, version),
    CHECK (state <> 'rotating' OR expires_at IS NOT NULL)
);
-- at most one active version per owner and exchange
CREATE UNIQUE INDEX api_key_versions_one_active
    ON api_key_versions (owner, exchange) WHERE state = 'active';

CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    ts        timestamptz NOT NULL DEFAULT now(),
    actor     uuid,
    action    text NOT NULL,
    target    text NOT NULL,
    source_ip inet,
    outcome   text NOT NULL,
    details   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_actor_ts ON audit_log (actor, ts);
CREATE INDEX audit_log_ts ON audit_log (ts);

-- updated_at follows changes of what a user or the engine asked for (not current_state
-- reports, which are frequent and have their own events).
CREATE FUNCTION wsm_touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER websocket_connections_touch
    BEFORE UPDATE OF exchange, name, url, reconnect, desired_state ON websocket_connections
    FOR EACH ROW EXECUTE FUNCTION wsm_touch_updated_at();
CREATE TRIGGER websocket_subscriptions_touch
    BEFORE UPDATE OF channel, symbols, kinds, state, reason ON websocket_subscriptions
    FOR EACH ROW EXECUTE FUNCTION wsm_touch_updated_at();
