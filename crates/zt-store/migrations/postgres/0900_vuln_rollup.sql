-- The read performance of the dashboard's vulnerability views (issue 12; the twin of
-- migrations/sqlite/0900_vuln_rollup.sql): each company's open findings rolled up per
-- vulnerability and severity (hosts, findings, KEV, fixable), maintained in the transaction
-- that moves findings (common/rollup.rs), so the vulnerabilities list and a vulnerability's
-- counts read the rollup instead of every open finding of the company.
CREATE TABLE company_vulns (
    company_id uuid NOT NULL,
    vuln_id text COLLATE "C" NOT NULL,
    severity smallint NOT NULL,
    hosts bigint NOT NULL,
    findings bigint NOT NULL,
    kev bigint NOT NULL,
    fixable bigint NOT NULL,
    PRIMARY KEY (company_id, vuln_id, severity)
) PARTITION BY HASH (company_id);
SELECT zt_create_partitions('company_vulns');

DO $$
DECLARE
    p record;
BEGIN
    ALTER TABLE company_vulns ENABLE ROW LEVEL SECURITY;
    ALTER TABLE company_vulns FORCE ROW LEVEL SECURITY;
    CREATE POLICY company_isolation ON company_vulns USING (company_id = zt_current_company())
        WITH CHECK (company_id = zt_current_company());
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'zerotrace_app') THEN
        FOR p IN
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class parent ON parent.oid = i.inhparent
            WHERE parent.relname = 'company_vulns'
              AND parent.relnamespace = 'public'::regnamespace
        LOOP
            EXECUTE format('REVOKE ALL ON %I FROM zerotrace_app', p.relname);
        END LOOP;
    END IF;
END
$$;

-- The rollup of the findings already stored. The tables' owner runs this; row-level security
-- binds it too (FORCE), so it is lifted for the copy.
ALTER TABLE findings NO FORCE ROW LEVEL SECURITY;
ALTER TABLE company_vulns NO FORCE ROW LEVEL SECURITY;
INSERT INTO company_vulns (company_id, vuln_id, severity, hosts, findings, kev, fixable)
    SELECT company_id, vuln_id, severity, count(DISTINCT agent_id), count(*),
        count(*) FILTER (WHERE kev), count(*) FILTER (WHERE fixable)
    FROM findings WHERE resolved_at IS NULL GROUP BY company_id, vuln_id, severity;
ALTER TABLE findings FORCE ROW LEVEL SECURITY;
ALTER TABLE company_vulns FORCE ROW LEVEL SECURITY;
