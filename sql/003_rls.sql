-- Privileges and row-level security for every WSM table.
--
-- Every table has RLS ENABLED and FORCED (so that even its owner, unless superuser or
-- BYPASSRLS, goes through the policies). Privileges are first revoked from every application
-- role and then granted exactly as below, because Supabase's default privileges hand anon and
-- authenticated ALL (TRUNCATE included, which RLS does not cover) on new tables in public.
--
-- Who may do what (rows: R = all rows, O = own rows only, i.e. owner = auth.uid()):
--
--   table                         anon  authenticated (a user)         service_role  wsm_engine
--   websocket_connections         -     S I U D  O   (U: columns *)   S I U D  R    S I U D  R
--   websocket_subscriptions       -     S I U D  O   (U: columns **)  S I U D  R    S I U D  R
--   websocket_connection_metrics  -     S        O                    S I U D  R    S I      R
--   websocket_connection_events   -     S        O                    S I U D  R    S I      R
--   ip_whitelist                  -     S I U D  O   (U: cidr, label) S I U D  R    S        R
--   api_key_versions              -     S        O   (no secret cols) S I U D  R    S I U(state, rotated_at, expires_at)  R
--   audit_log                     -     S        O   (actor = uid)    S I      R    S I      R
--
--   *  exchange, name, url, reconnect, desired_state (never owner, current_state, last_error)
--   ** symbols, kinds (never owner, connection_id, state)
--   A user inserts only the columns they own the meaning of; WITH CHECK owner = auth.uid()
--   refuses a row carrying another user's id.
--
-- wsm_engine is the engine's own writer: a NOLOGIN role that WSM's login role switches to
-- inside each transaction (`set_config('role', 'wsm_engine', true)`, see engine/db/session.py).
-- Its policies (`*_service`, `USING (true) WITH CHECK (true)`) let it see and write all rows,
-- because the engine serves every user; the grants above limit the verbs. It never updates or
-- deletes metrics, events or audit rows, and it cannot TRUNCATE anything.
-- service_role mirrors Supabase's service key (there it also has BYPASSRLS; here the same
-- `*_service` policies give it the same view, so both platforms behave alike).
-- audit_log is append-only for every application role: INSERT and SELECT, nothing else.
-- Policies for users compare with `(SELECT auth.uid())`, evaluated once per statement.

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'websocket_connections', 'websocket_subscriptions', 'websocket_connection_metrics',
        'websocket_connection_events', 'ip_whitelist', 'api_key_versions', 'audit_log'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('REVOKE ALL ON TABLE %I FROM PUBLIC, anon, authenticated, service_role, wsm_engine', t);
    END LOOP;
END
$$;

REVOKE ALL ON SEQUENCE websocket_connection_events_id_seq, audit_log_id_seq
    FROM PUBLIC, anon, authenticated, service_role, wsm_engine;
GRANT USAGE ON SEQUENCE websocket_connection_events_id_seq, audit_log_id_seq
    TO service_role, wsm_engine;
REVOKE ALL ON FUNCTION wsm_touch_updated_at() FROM PUBLIC, anon, authenticated;
-- wsm_reconnect_valid(jsonb) stays executable: it is pure and evaluated in every row check.

-- websocket_connections
GRANT SELECT, DELETE ON websocket_connections TO authenticated;
GRANT INSERT (owner, exchange, name, url, reconnect, desired_state) ON websocket_connections
    TO authenticated;
GRANT UPDATE (exchange, name, url, reconnect, desired_state) ON websocket_connections
    TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON websocket_connections TO service_role, wsm_engine;

CREATE POLICY websocket_connections_user_select ON websocket_connections
    FOR SELECT TO authenticated USING (owner = (SELECT auth.uid()));
CREATE POLICY websocket_connections_user_insert ON websocket_connections
    FOR INSERT TO authenticated WITH CHECK (owner = (SELECT auth.uid()));
CREATE POLICY websocket_connections_user_update ON websocket_connections
    FOR UPDATE TO authenticated
    USING (owner = (SELECT auth.uid())) WITH CHECK (owner = (SELECT auth.uid()));
CREATE POLICY websocket_connections_user_delete ON websocket_connections
    FOR DELETE TO authenticated USING (owner = (SELECT auth.uid()));
CREATE POLICY websocket_connections_service ON websocket_connections
    FOR ALL TO service_role, wsm_engine USING (true) WITH CHECK (true);

-- websocket_subscriptions
GRANT SELECT, DELETE ON websocket_subscriptions TO authenticated;
GRANT INSERT (owner, connection_id, channel, symbols, kinds) ON websocket_subscriptions
    TO authenticated;
GRANT UPDATE (symbols, kinds) ON websocket_subscriptions TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON websocket_subscriptions TO service_role, wsm_engine;

CREATE POLICY websocket_subscriptions_user_select ON websocket_subscriptions
    FOR SELECT TO authenticated USING (owner = (SELECT auth.uid()));
CREATE POLICY websocket_subscriptions_user_insert ON websocket_subscriptions
    FOR INSERT TO authenticated WITH CHECK (owner = (SELECT auth.uid()));
CREATE POLICY websocket_subscriptions_user_update ON websocket_subscriptions
    FOR UPDATE TO authenticated
    USING (owner = (SELECT auth.uid())) WITH CHECK (owner = (SELECT auth.uid()));
CREATE POLICY websocket_subscriptions_user_delete ON websocket_subscriptions
    FOR DELETE TO authenticated USING (owner = (SELECT auth.uid()));
CREATE POLICY websocket_subscriptions_service ON websocket_subscriptions
    FOR ALL TO service_role, wsm_engine USING (true) WITH CHECK (true);

-- websocket_connection_metrics
GRANT SELECT ON websocket_connection_metrics TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON websocket_connection_metrics TO service_role;
GRANT SELECT, INSERT ON websocket_connection_metrics TO wsm_engine;

CREATE POLICY websocket_connection_metrics_user_select ON websocket_connection_metrics
    FOR SELECT TO authenticated USING (owner = (SELECT auth.uid()));
CREATE POLICY websocket_connection_metrics_service ON websocket_connection_metrics
    FOR ALL TO service_role, wsm_engine USING (true) WITH CHECK (true);

-- websocket_connection_events
GRANT SELECT ON websocket_connection_events TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON websocket_connection_events TO service_role;
GRANT SELECT, INSERT ON websocket_connection_events TO wsm_engine;

CREATE POLICY websocket_connection_events_user_select ON websocket_connection_events
    FOR SELECT TO authenticated USING (owner = (SELECT auth.uid()));
CREATE POLICY websocket_connection_events_service ON websocket_connection_events
    FOR ALL TO service_role, wsm_engine USING (true) WITH CHECK (true);

-- ip_whitelist
GRANT SELECT, DELETE ON ip_whitelist TO authenticated;
GRANT INSERT (owner, cidr, label) ON ip_whitelist TO authenticated;
GRANT UPDATE (cidr, label) ON ip_whitelist TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON ip_whitelist TO service_role;
GRANT SELECT ON ip_whitelist TO wsm_engine;

CREATE POLICY ip_whitelist_user_select ON ip_whitelist
    FOR SELECT TO authenticated USING (owner = (SELECT auth.uid()));
CREATE POLICY ip_whitelist_user_insert ON ip_whitelist
    FOR INSERT TO authenticated WITH CHECK (owner = (SELECT auth.uid()));
CREATE POLICY ip_whitelist_user_update ON ip_whitelist
    FOR UPDATE TO authenticated
    USING (owner = (SELECT auth.uid())) WITH CHECK (owner = (SELECT auth.uid()));
CREATE POLICY ip_whitelist_user_delete ON ip_whitelist
    FOR DELETE TO authenticated USING (owner = (SELECT auth.uid()));
CREATE POLICY ip_whitelist_service ON ip_whitelist
    FOR ALL TO service_role, wsm_engine USING (true) WITH CHECK (true);

-- api_key_versions: a user sees the metadata of their own keys, never the ciphertext.
GRANT SELECT (id, owner, exchange, version, key_id, state, created_at, rotated_at, expires_at)
    ON api_key_versions TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON api_key_versions TO service_role;
GRANT SELECT, INSERT ON api_key_versions TO wsm_engine;
GRANT UPDATE (state, rotated_at, expires_at) ON api_key_versions TO wsm_engine;

CREATE POLICY api_key_versions_user_select ON api_key_versions
    FOR SELECT TO authenticated USING (owner = (SELECT auth.uid()));
CREATE POLICY api_key_versions_service ON api_key_versions
    FOR ALL TO service_role, wsm_engine USING (true) WITH CHECK (true);

-- audit_log: append-only. No UPDATE or DELETE grant and no policy for them.
GRANT SELECT ON audit_log TO authenticated;
GRANT SELECT, INSERT ON audit_log TO service_role, wsm_engine;

CREATE POLICY audit_log_user_select ON audit_log
    FOR SELECT TO authenticated USING (actor = (SELECT auth.uid()));
CREATE POLICY audit_log_service_select ON audit_log
    FOR SELECT TO service_role, wsm_engine USING (true);
CREATE POLICY audit_log_service_insert ON audit_log
    FOR INSERT TO service_role, wsm_engine WITH CHECK (true);
