-- Per-company sums of the agents' counters (agents, apps, open findings by severity, KEV,
-- fixable), so that the company summary and the operator's overview read a few rows per
-- company instead of every agent row (issue 12: the overview summed 100,000 agent rows at
-- 10 M app records, 220 / 324 ms p50 / p95 with four readers; the scan alone 53-110 ms idle,
-- and it grows with the fleet).
--
-- The sums are kept as *delta rows*: every statement that inserts or updates agents adds one
-- row per company it changed (a statement-level trigger over its transition tables, so no
-- writer of `agents` can forget it), and a company's figure is the sum of its rows. Inserting
-- instead of updating one row per company keeps concurrent writers of one company from
-- queueing on that row until they commit. The store folds a company's rows into one when they
-- pile up (postgres/totals.rs, from the periodic upkeep).
--
-- Agents are never deleted but with their company (which deletes these rows too), so there is
-- no DELETE trigger. On Citus the trigger is not created (statement triggers with transition
-- tables do not run on distributed tables): there the reads sum the agents, spread over the
-- workers.
CREATE TABLE company_agent_totals (
    company_id uuid NOT NULL,
    agents bigint NOT NULL,
    apps bigint NOT NULL,
    open_critical bigint NOT NULL,
    open_high bigint NOT NULL,
    open_medium bigint NOT NULL,
    open_low bigint NOT NULL,
    open_unknown bigint NOT NULL,
    open_kev bigint NOT NULL,
    open_fixable bigint NOT NULL
);
CREATE INDEX company_agent_totals_company ON company_agent_totals (company_id);
ALTER TABLE company_agent_totals ENABLE ROW LEVEL SECURITY;
ALTER TABLE company_agent_totals FORCE ROW LEVEL SECURITY;
CREATE POLICY company_isolation ON company_agent_totals USING (company_id = zt_current_company())
    WITH CHECK (company_id = zt_current_company());
-- The operator's overview reads every company's rows in one statement (as `agents`, 0950).
CREATE POLICY all_companies_read ON company_agent_totals FOR SELECT
    USING (current_setting('zerotrace.all_companies', true) = 'on');

-- One delta row per company of the statement's changed agents (new values minus old ones);
-- none for a company whose sums did not move (most updates only say the agent was seen).
CREATE FUNCTION zt_agent_totals_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO company_agent_totals
        SELECT n.company_id, count(*) FILTER (WHERE n.decommissioned_at IS NULL),
            sum(n.app_count), sum(n.open_critical), sum(n.open_high), sum(n.open_medium),
            sum(n.open_low), sum(n.open_unknown), sum(n.open_kev), sum(n.open_fixable)
        FROM zt_new_agents n GROUP BY n.company_id;
    ELSE
        INSERT INTO company_agent_totals
        SELECT d.company_id, sum(d.agents), sum(d.apps), sum(d.c), sum(d.h), sum(d.m),
            sum(d.l), sum(d.u), sum(d.k), sum(d.x)
        FROM (
            SELECT n.company_id, (n.decommissioned_at IS NULL)::int AS agents,
                n.app_count AS apps, n.open_critical AS c, n.open_high AS h,
                n.open_medium AS m, n.open_low AS l, n.open_unknown AS u, n.open_kev AS k,
                n.open_fixable AS x
            FROM zt_new_agents n
            UNION ALL
            SELECT o.company_id, -(o.decommissioned_at IS NULL)::int, -o.app_count,
                -o.open_critical, -o.open_high, -o.open_medium, -o.open_low, -o.open_unknown,
                -o.open_kev, -o.open_fixable
            FROM zt_old_agents o
        ) d
        GROUP BY d.company_id
        HAVING sum(d.agents) <> 0 OR sum(d.apps) <> 0 OR sum(d.c) <> 0 OR sum(d.h) <> 0
            OR sum(d.m) <> 0 OR sum(d.l) <> 0 OR sum(d.u) <> 0 OR sum(d.k) <> 0
            OR sum(d.x) <> 0;
    END IF;
    RETURN NULL;
END
$$;

-- The triggers, and the sums of the agents already stored. The tables' owner runs this;
-- row-level security binds it too (FORCE), so it is lifted for the copy.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        CREATE TRIGGER agents_totals_insert AFTER INSERT ON agents
            REFERENCING NEW TABLE AS zt_new_agents
            FOR EACH STATEMENT EXECUTE FUNCTION zt_agent_totals_delta();
        CREATE TRIGGER agents_totals_update AFTER UPDATE ON agents
            REFERENCING OLD TABLE AS zt_old_agents NEW TABLE AS zt_new_agents
            FOR EACH STATEMENT EXECUTE FUNCTION zt_agent_totals_delta();
        ALTER TABLE agents NO FORCE ROW LEVEL SECURITY;
        ALTER TABLE company_agent_totals NO FORCE ROW LEVEL SECURITY;
        INSERT INTO company_agent_totals
            SELECT company_id, count(*) FILTER (WHERE decommissioned_at IS NULL),
                sum(app_count), sum(open_critical), sum(open_high), sum(open_medium),
                sum(open_low), sum(open_unknown), sum(open_kev), sum(open_fixable)
            FROM agents GROUP BY company_id;
        ALTER TABLE agents FORCE ROW LEVEL SECURITY;
        ALTER TABLE company_agent_totals FORCE ROW LEVEL SECURITY;
    END IF;
END
$$;
