-- Companies, credentials, agents, reports, the queue, deduplicated software with cached match
-- results, apps and findings (the PostgreSQL twin of migrations/sqlite/0002_foundation.sql).
--
-- Tenant tables (agents, reports, apps, findings) lead their primary key with company_id, are
-- hash-partitioned by it, and carry a row-level-security policy: a row is visible only while
-- the transaction's `zerotrace.company_id` setting names its company. Shared tables (companies,
-- credentials, queue, software, software_vulns, vulns, vuln_aliases) hold no inventory data.
-- Text that lists sort by uses the "C" collation: byte order, as in SQLite, and fast.

-- The company the current transaction works for (NULL when none is set: tenant rows are then
-- invisible). `set_config(..., true)` reverts to '' at the end of the transaction, hence nullif.
CREATE FUNCTION zt_current_company() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('zerotrace.company_id', true), '')::uuid
$$;

CREATE TABLE companies (
    company_id uuid PRIMARY KEY,
    name text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL
);

-- token hash -> who it authenticates. Shared: a token arrives before its company is known.
CREATE TABLE credentials (
    token_hash bytea PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('operator', 'user', 'agent', 'enroll')),
    company_id uuid,
    agent_id uuid,
    role text CHECK (role IS NULL OR role IN ('admin', 'viewer')),
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX credentials_company ON credentials (company_id, kind);
-- At most one live operator token, even when several servers start at once.
CREATE UNIQUE INDEX credentials_one_operator ON credentials (kind)
    WHERE kind = 'operator' AND revoked_at IS NULL;

CREATE TABLE agents (
    company_id uuid NOT NULL,
    agent_id uuid NOT NULL,
    hostname text COLLATE "C" NOT NULL,
    os_id text NOT NULL,
    os_version_id text NOT NULL,
    os_name text NOT NULL,
    arch text NOT NULL,
    agent_version text NOT NULL,
    enrolled_at timestamptz NOT NULL,
    last_seen_at timestamptz,
    -- the newest (by collected_at) inventory accepted at the door: an equal one is "unchanged"
    accepted_digest bytea,
    accepted_collected_at timestamptz,
    -- the inventory stored now
    inventory_digest bytea,
    inventory_collected_at timestamptz,
    last_report_at timestamptz,
    app_count integer NOT NULL DEFAULT 0,
    -- the stored inventory in compact form for diffing the next report (see postgres/process.rs)
    inventory bytea,
    -- open findings of this agent, recomputed in every transaction that changes its findings:
    -- the company summary is a sum over its agents
    open_critical integer NOT NULL DEFAULT 0,
    open_high integer NOT NULL DEFAULT 0,
    open_medium integer NOT NULL DEFAULT 0,
    open_low integer NOT NULL DEFAULT 0,
    open_unknown integer NOT NULL DEFAULT 0,
    open_kev integer NOT NULL DEFAULT 0,
    open_fixable integer NOT NULL DEFAULT 0,
    PRIMARY KEY (company_id, agent_id)
) PARTITION BY HASH (company_id);
CREATE INDEX agents_hostname ON agents (company_id, hostname, agent_id);
SELECT zt_create_partitions('agents');

CREATE TABLE reports (
    company_id uuid NOT NULL,
    report_id uuid NOT NULL,
    agent_id uuid NOT NULL,
    collected_at timestamptz NOT NULL,
    accepted_at timestamptz NOT NULL,
    processed_at timestamptz,
    status text NOT NULL CHECK (status IN ('queued', 'processing', 'done', 'failed')),
    outcome text,
    app_count integer NOT NULL,
    digest bytea NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    error text,
    -- the report JSON until it is processed
    body bytea,
    PRIMARY KEY (company_id, report_id)
) PARTITION BY HASH (company_id);
CREATE INDEX reports_done ON reports (company_id, processed_at) WHERE status = 'done';
SELECT zt_create_partitions('reports');

-- The work queue. Shared: workers claim across companies (FOR UPDATE SKIP LOCKED).
CREATE TABLE queue (
    queue_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id uuid NOT NULL,
    report_id uuid NOT NULL,
    agent_id uuid NOT NULL,
    app_count integer NOT NULL,
    -- when the report was collected: a claim settles a report older than the stored inventory
    collected_at timestamptz NOT NULL,
    -- higher first; a retried entry drops below fresh work
    priority smallint NOT NULL DEFAULT 0,
    state text NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    -- queued: not before (retry backoff); leased: the lease expiry
    visible_at timestamptz NOT NULL,
    lease_owner text,
    enqueued_at timestamptz NOT NULL,
    finished_at timestamptz,
    last_error text
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 1);
CREATE INDEX queue_pending ON queue (priority DESC, queue_id DESC) WHERE state IN ('queued', 'leased');
CREATE INDEX queue_finished ON queue (finished_at) WHERE state = 'done';

-- One row per distinct (ecosystem, name, version, ...) ever reported, by zt_inventory::SoftwareKey
-- (its 16 bytes stored as a uuid: fixed width, compact in every index that holds it).
CREATE TABLE software (
    software_key uuid PRIMARY KEY,
    ecosystem text NOT NULL,
    name text COLLATE "C" NOT NULL,
    version text COLLATE "C" NOT NULL,
    source text NOT NULL,
    source_name text,
    source_version text,
    vendor text,
    purl text,
    cpe text,
    matched_revision bigint NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX software_revision ON software (matched_revision, software_key);

-- Cached match results: which vulnerability (advisory group) hits which software version.
CREATE TABLE software_vulns (
    software_key uuid NOT NULL,
    vuln_id text COLLATE "C" NOT NULL,
    fixed_versions text[] NOT NULL,
    severity smallint NOT NULL,
    kev boolean NOT NULL,
    fixable boolean NOT NULL,
    method text NOT NULL,
    confidence text NOT NULL,
    PRIMARY KEY (software_key, vuln_id)
);

-- What the findings show of a vulnerability, as of the revision that last matched it.
CREATE TABLE vulns (
    vuln_id text COLLATE "C" PRIMARY KEY,
    aliases text[] NOT NULL,
    summary text NOT NULL,
    severity smallint NOT NULL, -- 0 unknown, 1 none, 2 low, 3 medium, 4 high, 5 critical
    cvss_version text,
    cvss_vector text,
    cvss_score double precision,
    kev boolean NOT NULL,
    kev_due_date text,
    epss double precision,
    epss_percentile double precision,
    informational boolean NOT NULL,
    revision bigint NOT NULL
);

CREATE TABLE vuln_aliases (
    alias text COLLATE "C" NOT NULL,
    vuln_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (alias, vuln_id)
);

-- The apps installed on each agent, and for 90 days those removed (removed_at set).
CREATE TABLE apps (
    company_id uuid NOT NULL,
    agent_id uuid NOT NULL,
    software_key uuid NOT NULL,
    arch text COLLATE "C" NOT NULL,
    first_seen timestamptz NOT NULL,
    removed_at timestamptz,
    PRIMARY KEY (company_id, agent_id, software_key, arch)
) PARTITION BY HASH (company_id);
CREATE INDEX apps_removed ON apps (company_id, removed_at) WHERE removed_at IS NOT NULL;
SELECT zt_create_partitions('apps');

-- One finding per (company, agent, software version, vulnerability); resolved_at is set when
-- the software version leaves the agent or stops being affected, `resolution` says which way.
CREATE TABLE findings (
    company_id uuid NOT NULL,
    agent_id uuid NOT NULL,
    software_key uuid NOT NULL,
    vuln_id text COLLATE "C" NOT NULL,
    severity smallint NOT NULL,
    kev boolean NOT NULL,
    fixable boolean NOT NULL,
    first_seen timestamptz NOT NULL,
    resolved_at timestamptz,
    resolution text,
    PRIMARY KEY (company_id, agent_id, software_key, vuln_id)
) PARTITION BY HASH (company_id);
-- the findings list: most severe first, then by vulnerability, host, software
CREATE INDEX findings_open ON findings (company_id, severity DESC, vuln_id, agent_id, software_key)
    WHERE resolved_at IS NULL;
-- one vulnerability's hosts
CREATE INDEX findings_vuln ON findings (company_id, vuln_id);
-- retention of resolved findings
CREATE INDEX findings_resolved ON findings (company_id, resolved_at) WHERE resolved_at IS NOT NULL;
SELECT zt_create_partitions('findings');

-- Row-level security on every tenant table, FORCEd so that the table owner is bound too.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['agents', 'reports', 'apps', 'findings'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY company_isolation ON %I USING (company_id = zt_current_company()) '
            'WITH CHECK (company_id = zt_current_company())', t);
    END LOOP;
END
$$;

-- The partitions themselves are reachable only through their parent (whose policy applies):
-- the server's role gets no privileges on them.
DO $$
DECLARE
    p record;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'zerotrace_app') THEN
        FOR p IN
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class parent ON parent.oid = i.inhparent
            WHERE parent.relname IN ('agents', 'reports', 'apps', 'findings')
              AND parent.relnamespace = 'public'::regnamespace
        LOOP
            EXECUTE format('REVOKE ALL ON %I FROM zerotrace_app', p.relname);
        END LOOP;
    END IF;
END
$$;
