-- Analyses (issue 13; the twin of migrations/sqlite/0400_analyses.sql): decisions about one
-- vulnerability in a scope, host tags, the audit trail. Each finding carries the analysis
-- that covers it and whether it is suppressed; the agents' counters leave suppressed
-- findings out.

CREATE TABLE analyses (
    company_id uuid NOT NULL,
    analysis_id uuid NOT NULL,
    vuln_id text COLLATE "C" NOT NULL,
    requested_id text NOT NULL,
    any_agent boolean NOT NULL,
    any_tag boolean NOT NULL,
    pkg_name text COLLATE "C",
    pkg_version text COLLATE "C",
    pkg_ecosystem text COLLATE "C",
    state text NOT NULL,
    justification text,
    response text NOT NULL, -- JSON array
    details text,
    suppress boolean NOT NULL,
    expires_at timestamptz,
    source text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    withdrawn_at timestamptz,
    expired_at timestamptz,
    PRIMARY KEY (company_id, analysis_id)
);
CREATE INDEX analyses_vuln ON analyses (company_id, vuln_id) WHERE withdrawn_at IS NULL;
CREATE INDEX analyses_list ON analyses (company_id, created_at, analysis_id);
CREATE INDEX analyses_due ON analyses (company_id, expires_at)
    WHERE withdrawn_at IS NULL AND expired_at IS NULL AND expires_at IS NOT NULL;

CREATE TABLE analysis_agents (
    company_id uuid NOT NULL,
    analysis_id uuid NOT NULL,
    agent_id uuid NOT NULL,
    PRIMARY KEY (company_id, analysis_id, agent_id)
);

CREATE TABLE analysis_tags (
    company_id uuid NOT NULL,
    analysis_id uuid NOT NULL,
    tag text COLLATE "C" NOT NULL,
    PRIMARY KEY (company_id, analysis_id, tag)
);

CREATE TABLE agent_tags (
    company_id uuid NOT NULL,
    agent_id uuid NOT NULL,
    tag text COLLATE "C" NOT NULL,
    PRIMARY KEY (company_id, agent_id, tag)
);
CREATE INDEX agent_tags_tag ON agent_tags (company_id, tag, agent_id);

-- A group's aliases (coverage compares an analysis's id with every id of a finding's group).
CREATE INDEX vuln_aliases_group ON vuln_aliases (vuln_id, alias);

ALTER TABLE findings ADD COLUMN analysis_id uuid;
ALTER TABLE findings ADD COLUMN suppressed boolean NOT NULL DEFAULT false;

CREATE TABLE audit (
    audit_id bigserial PRIMARY KEY,
    company_id uuid NOT NULL,
    at timestamptz NOT NULL,
    actor_kind text NOT NULL,
    actor_token_id text,
    actor_role text,
    action text NOT NULL,
    object text NOT NULL,
    before text,
    after text,
    comment text
);
CREATE INDEX audit_company ON audit (company_id, audit_id);
CREATE FUNCTION zt_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A company's trail goes with the company: its purge deletes the company row first,
    -- then the trail of a company that no longer exists.
    IF TG_OP = 'DELETE'
       AND NOT EXISTS (SELECT 1 FROM companies WHERE company_id = OLD.company_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only';
END
$$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION zt_audit_append_only();

-- Each company's SLA policy (DESIGN.md "SLA"); none stored: the defaults.
CREATE TABLE sla_policies (
    company_id uuid PRIMARY KEY,
    critical_days integer NOT NULL,
    high_days integer NOT NULL,
    medium_days integer NOT NULL,
    low_days integer NOT NULL,
    unknown_days integer NOT NULL,
    kev_uses_cisa_due_date boolean NOT NULL,
    updated_at timestamptz NOT NULL
);
-- (Time to remediate reads a company's resolved findings through findings_resolved.)

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['analyses', 'analysis_agents', 'analysis_tags', 'agent_tags', 'audit',
                             'sla_policies'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY company_isolation ON %I USING (company_id = zt_current_company()) '
            'WITH CHECK (company_id = zt_current_company())', t);
    END LOOP;
END
$$;
