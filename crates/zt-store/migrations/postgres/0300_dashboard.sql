-- The dashboard's reads (issue 12; the twin of migrations/sqlite/0300_dashboard.sql): every
-- view answers from maintained counts and indexes, never from a pass over a company's
-- findings or apps.

-- When the agent was last heard of (its last accepted report, or its enrollment), and the
-- "risk" order of hosts as one integer: KEV findings, then critical, high, medium, low, each
-- clamped to 12 bits (lexicographic for counts below 4096).
ALTER TABLE agents ADD COLUMN seen_at timestamptz
    GENERATED ALWAYS AS (coalesce(last_seen_at, enrolled_at)) STORED;
ALTER TABLE agents ADD COLUMN risk bigint GENERATED ALWAYS AS (
    least(open_kev, 4095)::bigint * 281474976710656 + least(open_critical, 4095)::bigint * 68719476736
    + least(open_high, 4095)::bigint * 16777216 + least(open_medium, 4095)::bigint * 4096
    + least(open_low, 4095)::bigint) STORED;
-- Byte order, as hostnames (and as SQLite sorts): the hosts list sorts by OS name.
ALTER TABLE agents ALTER COLUMN os_name TYPE text COLLATE "C";

CREATE INDEX agents_risk ON agents (company_id, risk, agent_id);
CREATE INDEX agents_seen ON agents (company_id, seen_at, agent_id);
CREATE INDEX agents_os ON agents (company_id, os_name, hostname, agent_id);

-- Each distinct software version installed in a company and on how many of its hosts,
-- maintained as apps come and go (an agent counts once per version, whatever the arch).
-- Batches update it last before their events, keys in order, so concurrent batches wait
-- briefly instead of deadlocking.
CREATE TABLE company_software (
    company_id uuid NOT NULL,
    software_key uuid NOT NULL,
    hosts bigint NOT NULL,
    PRIMARY KEY (company_id, software_key)
) PARTITION BY HASH (company_id);
SELECT zt_create_partitions('company_software');

-- One point per company and UTC day for trends, written by the janitor from the agents'
-- counters and kept 400 days (a few hundred rows per company: not partitioned).
CREATE TABLE company_daily (
    company_id uuid NOT NULL,
    day date NOT NULL,
    critical bigint NOT NULL,
    high bigint NOT NULL,
    medium bigint NOT NULL,
    low bigint NOT NULL,
    unknown bigint NOT NULL,
    kev bigint NOT NULL,
    fixable bigint NOT NULL,
    overdue bigint NOT NULL DEFAULT 0,
    suppressed bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (company_id, day)
);

DO $$
DECLARE
    t text;
    p record;
BEGIN
    FOREACH t IN ARRAY ARRAY['company_software', 'company_daily'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY company_isolation ON %I USING (company_id = zt_current_company()) '
            'WITH CHECK (company_id = zt_current_company())', t);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'zerotrace_app') THEN
        FOR p IN
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class parent ON parent.oid = i.inhparent
            WHERE parent.relname = 'company_software'
              AND parent.relnamespace = 'public'::regnamespace
        LOOP
            EXECUTE format('REVOKE ALL ON %I FROM zerotrace_app', p.relname);
        END LOOP;
    END IF;
END
$$;

-- The counts of the software already stored. The tables' owner runs this; row-level
-- security binds it too (FORCE), so it is lifted for the copy.
ALTER TABLE apps NO FORCE ROW LEVEL SECURITY;
ALTER TABLE company_software NO FORCE ROW LEVEL SECURITY;
INSERT INTO company_software (company_id, software_key, hosts)
    SELECT company_id, software_key, count(DISTINCT agent_id) FROM apps
    WHERE removed_at IS NULL GROUP BY company_id, software_key;
ALTER TABLE apps FORCE ROW LEVEL SECURITY;
ALTER TABLE company_software FORCE ROW LEVEL SECURITY;

-- A host's reports, newest first.
CREATE INDEX reports_agent ON reports (company_id, agent_id, accepted_at, report_id);

-- Findings newest first.
CREATE INDEX findings_first_seen ON findings (company_id, first_seen, agent_id, software_key, vuln_id)
    WHERE resolved_at IS NULL;

-- The findings and vulnerabilities lists by EPSS or CVSS: vulnerabilities in that order,
-- each with its findings.
CREATE INDEX vulns_epss ON vulns ((coalesce(epss, -1.0)), vuln_id);
CREATE INDEX vulns_cvss ON vulns ((coalesce(cvss_score, -1.0)), vuln_id);

-- Claims take the reports that waited too long first, oldest first (issue 12: under a burst,
-- newest-first claiming alone starved the oldest).
CREATE INDEX queue_waiting ON queue (enqueued_at, queue_id) WHERE state IN ('queued', 'leased');
