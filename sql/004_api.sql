-- The REST API's own role, for what the API writes in its own name rather than a user's:
-- audit rows (every change and every refusal, including requests that carry no valid token,
-- which have no user to act as). It may append to audit_log and nothing else; everything the
-- API does on behalf of a user runs as `authenticated` with that user's claims (003_rls.sql).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wsm_api') THEN
        BEGIN
            CREATE ROLE wsm_api NOLOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a concurrent migration on the same cluster
        END;
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, 'wsm_api', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT wsm_api TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
            RAISE NOTICE 'could not grant wsm_api to %: grant it to WSM''s login role', current_user;
        END;
    END IF;
END
$$;

-- Append only: no SELECT (it never reads audit rows back), no UPDATE, no DELETE.
GRANT INSERT ON audit_log TO wsm_api;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO wsm_api;
CREATE POLICY audit_log_api_insert ON audit_log FOR INSERT TO wsm_api WITH CHECK (true);
