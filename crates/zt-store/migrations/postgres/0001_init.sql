-- Schema bookkeeping, the hash-partitioning helper and the role the server's queries run as.
--
-- The partition count of the tenant tables is fixed when the schema is created: the store sets
-- the session setting `zerotrace.partitions` (from `--partitions`, default 16) before it runs
-- the migrations, and this migration records it in zt_meta for every later migration.
CREATE TABLE zt_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

INSERT INTO zt_meta (key, value)
VALUES ('partitions', coalesce(nullif(current_setting('zerotrace.partitions', true), ''), '16'));

-- Creates the hash partitions of a table partitioned by company_id (`<table>_p<i>`).
CREATE FUNCTION zt_create_partitions(parent text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n integer := (SELECT value::integer FROM zt_meta WHERE key = 'partitions');
BEGIN
    IF n IS NULL OR n < 1 THEN
        RAISE EXCEPTION 'invalid partition count %', n;
    END IF;
    FOR i IN 0 .. n - 1 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
            parent || '_p' || i, parent, n, i);
    END LOOP;
END
$$;

-- Row-level security is enforced on the role the server's connections switch to: it is not a
-- superuser, has no BYPASSRLS and owns no table. Creating it needs CREATEROLE; without that the
-- schema still works (tables use FORCE ROW LEVEL SECURITY, so their owner is bound too).
-- Roles are cluster-wide: databases created side by side may race to create it, hence the
-- exception handlers.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'zerotrace_app') THEN
        BEGIN
            CREATE ROLE zerotrace_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
                NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation OR insufficient_privilege THEN
            NULL;
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'zerotrace_app') THEN
        IF NOT pg_has_role(current_user, 'zerotrace_app', 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT zerotrace_app TO %I', current_user);
            EXCEPTION WHEN OTHERS THEN
                -- concurrent grant from another database ("tuple concurrently updated"), or
                -- no ADMIN OPTION: the store then stays on the login role
                NULL;
            END;
        END IF;
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO zerotrace_app', current_database());
        GRANT USAGE ON SCHEMA public TO zerotrace_app;
        ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO zerotrace_app;
        ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO zerotrace_app;
        ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO zerotrace_app;
        GRANT SELECT ON zt_meta TO zerotrace_app;
        GRANT INSERT, UPDATE ON zt_meta TO zerotrace_app;
    END IF;
END
$$;
