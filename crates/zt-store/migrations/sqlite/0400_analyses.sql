-- Analyses (issue 13): decisions about one vulnerability in a scope, in the CycloneDX VEX
-- vocabulary, optionally until a date; host tags (usable in scopes); the audit trail.
--
-- Coverage is maintained, not evaluated per read: each finding carries the analysis that
-- covers it (`analysis_id`) and whether that one suppresses it (`suppressed`). The flags are
-- recomputed for a vulnerability's findings when one of its analyses changes or expires, and
-- for an agent's findings when new ones appear or its tags change; the agents' open-finding
-- counters leave suppressed findings out, so every count that sums them does too.

CREATE TABLE analyses (
    company_id BLOB NOT NULL,
    analysis_id BLOB NOT NULL,
    -- the vulnerability group's id, as findings carry it
    vuln_id TEXT NOT NULL,
    -- the id the analysis was created with (an alias of the group, or the id itself)
    requested_id TEXT NOT NULL,
    -- scope: every agent unless agents are listed (analysis_agents), every tag unless tags
    -- are listed (analysis_tags), every package unless a name is given
    any_agent INTEGER NOT NULL,
    any_tag INTEGER NOT NULL,
    pkg_name TEXT,
    pkg_version TEXT,
    pkg_ecosystem TEXT,
    state TEXT NOT NULL,
    justification TEXT,
    response TEXT NOT NULL, -- JSON array
    details TEXT,
    suppress INTEGER NOT NULL,
    expires_at INTEGER,
    -- where it came from: NULL (made here) or the VEX document's author/id
    source TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    withdrawn_at INTEGER,
    -- set when the expiry was applied to the findings (and its event written)
    expired_at INTEGER,
    PRIMARY KEY (company_id, analysis_id)
) WITHOUT ROWID;
CREATE INDEX analyses_vuln ON analyses (company_id, vuln_id) WHERE withdrawn_at IS NULL;
CREATE INDEX analyses_list ON analyses (company_id, created_at, analysis_id);
CREATE INDEX analyses_due ON analyses (expires_at)
    WHERE withdrawn_at IS NULL AND expired_at IS NULL AND expires_at IS NOT NULL;

CREATE TABLE analysis_agents (
    company_id BLOB NOT NULL,
    analysis_id BLOB NOT NULL,
    agent_id BLOB NOT NULL,
    PRIMARY KEY (company_id, analysis_id, agent_id)
) WITHOUT ROWID;

CREATE TABLE analysis_tags (
    company_id BLOB NOT NULL,
    analysis_id BLOB NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (company_id, analysis_id, tag)
) WITHOUT ROWID;

CREATE TABLE agent_tags (
    company_id BLOB NOT NULL,
    agent_id BLOB NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (company_id, agent_id, tag)
) WITHOUT ROWID;
CREATE INDEX agent_tags_tag ON agent_tags (company_id, tag, agent_id);

-- A group's aliases (coverage compares an analysis's id with every id of a finding's group).
CREATE INDEX vuln_aliases_group ON vuln_aliases (vuln_id, alias);

ALTER TABLE findings ADD COLUMN analysis_id BLOB;
ALTER TABLE findings ADD COLUMN suppressed INTEGER NOT NULL DEFAULT 0;

-- Every change made in a company, append-only (no statement of the store updates or deletes
-- these rows).
CREATE TABLE audit (
    audit_id INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id BLOB NOT NULL,
    at INTEGER NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_token_id TEXT,
    actor_role TEXT,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    before TEXT, -- JSON
    after TEXT, -- JSON
    comment TEXT
);
CREATE INDEX audit_company ON audit (company_id, audit_id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- A company's trail goes with the company: its purge deletes the company row first, then
-- the trail of a company that no longer exists.
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    WHEN EXISTS (SELECT 1 FROM companies WHERE company_id = OLD.company_id)
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;

-- Each company's SLA policy (DESIGN.md "SLA"); none stored: the defaults.
CREATE TABLE sla_policies (
    company_id BLOB PRIMARY KEY NOT NULL,
    critical_days INTEGER NOT NULL,
    high_days INTEGER NOT NULL,
    medium_days INTEGER NOT NULL,
    low_days INTEGER NOT NULL,
    unknown_days INTEGER NOT NULL,
    kev_uses_cisa_due_date INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
-- Time to remediate: a company's findings resolved in a period.
CREATE INDEX findings_resolved_at ON findings (company_id, resolved_at) WHERE resolved_at IS NOT NULL;
