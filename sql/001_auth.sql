-- Roles and auth.uid(): created only where missing, so that this file also applies on a
-- Supabase project, where anon, authenticated, service_role, the auth schema and auth.uid()
-- already exist and belong to Supabase.
--
-- On a plain Postgres this file defines them the way Supabase does for what WSM relies on:
-- NOLOGIN roles, and an auth.uid() that reads the per-transaction JWT claims
-- (`select set_config('request.jwt.claims', $1, true)`) and returns NULL when they are unset,
-- empty or carry no `sub`, so that every `owner = auth.uid()` policy fails closed.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role', 'wsm_engine'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a concurrent migration on the same cluster
            END;
        END IF;
    END LOOP;
END
$$;

-- The login role that runs WSM (and these migrations) switches to these roles per
-- transaction (`set_config('role', ..., true)`); it must be a member. A superuser already is;
-- on Supabase, `postgres` already is of the Supabase roles. Where granting is not allowed,
-- say so and go on: the operator grants them to WSM's login role (see sql/README.md).
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role', 'wsm_engine'] LOOP
        IF NOT pg_catalog.pg_has_role(current_user, r, 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT %I TO %I', r, current_user);
            EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
                RAISE NOTICE 'could not grant % to %: grant it to WSM''s login role', r, current_user;
            END;
        END IF;
    END LOOP;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'auth') THEN
        CREATE SCHEMA auth;
        GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role, wsm_engine;
    END IF;
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'auth' AND p.proname = 'uid'
    ) THEN
        -- SECURITY INVOKER (the default): it reads only the caller's own settings.
        CREATE FUNCTION auth.uid() RETURNS uuid
            LANGUAGE sql STABLE
            AS $fn$
                SELECT nullif(
                    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub',
                    ''
                )::uuid
            $fn$;
        COMMENT ON FUNCTION auth.uid() IS
            'The caller''s user id (JWT sub) from request.jwt.claims; NULL when unset.';
    END IF;
END
$$;
